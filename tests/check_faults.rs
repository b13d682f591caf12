//! `check` on the lab: the healthy lab has no findings; every fault gives
//! exactly its finding on the expected node, live and from a bundle
//! collected from the broken lab.

mod common;
use common::*;
use std::collections::BTreeSet;

fn findings(args: &[&str]) -> (Option<i32>, BTreeSet<(String, String)>) {
    let (code, f) = check_findings(args);
    (code, f.into_iter().collect())
}

#[test]
fn every_fault_gives_exactly_its_finding_live_and_offline() {
    let lab = Lab::up("check", &[]);
    let (code, healthy) = findings(&["check", "--lab", "check", "-o", "json"]);
    assert_eq!(
        (code, healthy.len()),
        (Some(0), 0),
        "healthy lab: {healthy:?}"
    );

    let n12 = "k8s-node-12";
    let cases: &[(&str, &[&str], &str, &str)] = &[
        ("route-missing", &[], "route-missing", n12),
        ("route-wrong-gw", &[], "route-wrong", n12),
        ("neigh-missing", &[], "neigh-missing", n12),
        ("neigh-wrong-mac", &[], "neigh-wrong-mac", n12),
        ("fdb-missing", &[], "fdb-missing", n12),
        ("fdb-stale-dst", &[], "fdb-wrong-dst", n12),
        (
            "vtep-down",
            &["--node", "k8s-node-11"],
            "vtep-down",
            "k8s-node-11",
        ),
        ("vtep-mtu", &[], "vtep-mtu-wrong", n12),
        ("cni0-addr-wrong", &[], "cni0-addr-wrong", n12),
        (
            "ip-forward-off",
            &["--node", "k8s-master-10"],
            "ip-forward-off",
            "k8s-master-10",
        ),
        ("forward-drop", &[], "forward-drop", n12),
        ("pod-veth-down", &[], "pod-veth-down", n12),
        (
            "svc-chain-missing",
            &[],
            "kube-proxy-svc-chain-missing",
            n12,
        ),
        ("sep-stale", &[], "kube-proxy-endpoints-mismatch", n12),
        ("nodeport-missing", &[], "kube-proxy-nodeport-missing", n12),
        ("masq-missing", &[], "flannel-masq-missing", n12),
        ("dns-down", &[], "kube-dns-no-endpoints", "cluster"),
        (
            "ingress-backend-port",
            &[],
            "ingress-backend-port-missing",
            "cluster",
        ),
    ];
    let tmp = std::env::temp_dir().join(format!("knetdoctor-bundles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    for (fault, extra, id, node) in cases {
        let mut args = vec!["lab", "break", fault];
        args.extend_from_slice(extra);
        lab.kd(&args);
        let want: BTreeSet<(String, String)> = [(id.to_string(), node.to_string())].into();
        let (code, live) = findings(&["check", "--lab", "check", "-o", "json"]);
        if live != want || code != Some(1) {
            failures.push(format!(
                "{fault}: live check gave {live:?} (exit {code:?}), want {want:?}"
            ));
        }
        let bundle = tmp.join(fault);
        kd_ok(&["collect", "--lab", "check", "-o", bundle.to_str().unwrap()]);
        let (code, offline) =
            findings(&["check", "--bundle", bundle.to_str().unwrap(), "-o", "json"]);
        if offline != want || code != Some(1) {
            failures.push(format!(
                "{fault}: bundle check gave {offline:?}, want {want:?}"
            ));
        }
        lab.kd(&["lab", "heal"]);
    }
    // A gzipped tarball bundle reads the same as a directory.
    lab.kd(&["lab", "break", "fdb-stale-dst"]);
    let tarball = tmp.join("broken.tar.gz");
    kd_ok(&["collect", "--lab", "check", "-o", tarball.to_str().unwrap()]);
    lab.kd(&["lab", "heal"]);
    let (code, from_tar) =
        findings(&["check", "--bundle", tarball.to_str().unwrap(), "-o", "json"]);
    assert_eq!(
        (code, from_tar),
        (
            Some(1),
            [("fdb-wrong-dst".to_string(), "k8s-node-12".to_string())].into()
        )
    );
    let again = kd(&["collect", "--lab", "check", "-o", tarball.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "collect never overwrites");
    // --node limits the dataplane part to one node.
    lab.kd(&["lab", "break", "route-missing"]);
    let (_, only11) = findings(&[
        "check",
        "--lab",
        "check",
        "--node",
        "k8s-node-11",
        "-o",
        "json",
    ]);
    assert!(only11.is_empty(), "{only11:?}");
    lab.kd(&["lab", "heal"]);
    let (code, healed) = findings(&["check", "--lab", "check", "-o", "json"]);
    assert_eq!((code, healed.len()), (Some(0), 0), "after heal: {healed:?}");
    // The bundle carries the raw iptables-save text too, and no Secrets.
    let raw =
        std::fs::read_to_string(tmp.join("svc-chain-missing/nodes/k8s-node-12/iptables-nft.save"))
            .unwrap();
    assert!(raw.contains("*nat") && raw.contains("KUBE-SERVICES"));
    assert!(!tmp.join("svc-chain-missing/cluster/secrets.json").exists());
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn check_names_bad_input() {
    require_root();
    let out = kd(&["check", "--bundle", "/nonexistent-bundle"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kd(&["check", "--lab", "nolab"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bundle"));
}

/// kube-proxy and flannel in their nftables modes (`lab up
/// --kube-proxy-mode nftables --flannel-nftables`): the same faults give
/// the nftables findings, live and from a bundle, and trace's verdict on
/// the broken path is what curl and ping see.
#[test]
fn nftables_modes_give_their_findings_and_traces_live_and_offline() {
    let name = "checknft";
    let lab = Lab::up(
        name,
        &["--kube-proxy-mode", "nftables", "--flannel-nftables"],
    );
    let (code, healthy) = findings(&["check", "--lab", name, "-o", "json"]);
    assert_eq!((code, healthy.len()), (Some(0), 0), "{healthy:?}");
    let bb = lab.pod("busybox-deployment-5db9ff768-zrlxw");
    let pod = "test-net/busybox-deployment-5db9ff768-zrlxw";
    let n12 = "k8s-node-12";
    // sep-stale breaks one endpoint of three at random: 6 tries all miss
    // it 9 % of the time ((2/3)^6), 20 tries 0.03 %.
    let clusterip = || (0..20).all(|_| curl(&bb, "http://10.1.59.153/", None).is_some());
    let outside = || ping(&bb, "192.168.56.254");
    type Works<'a> = &'a dyn Fn() -> bool;
    // fault, finding, the trace's destination, the real path's check.
    let cases: &[(&str, &str, &str, Works)] = &[
        (
            "svc-chain-missing",
            "kube-proxy-nftables-service-missing",
            "test-svc-ns/linux0224-nginx",
            &clusterip,
        ),
        (
            "sep-stale",
            "kube-proxy-nftables-endpoints-mismatch",
            "test-svc-ns/linux0224-nginx",
            &clusterip,
        ),
        (
            "nodeport-missing",
            "kube-proxy-nftables-service-missing",
            "",
            &|| true,
        ),
        (
            "masq-missing",
            "flannel-nftables-chain-wrong",
            "192.168.56.254",
            &outside,
        ),
        ("route-missing", "route-missing", "", &|| true),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (fault, id, dst, works) in cases {
        // The healthy path first, as trace and the real tools see it.
        if !dst.is_empty() {
            let ok = kd(&["trace", pod, dst, "--lab", name]).status.code() == Some(0);
            if !ok || !works() {
                failures.push(format!("{fault}: healthy {dst} trace ok {ok}"));
            }
        }
        lab.kd(&["lab", "break", fault]);
        let want: BTreeSet<(String, String)> = [(id.to_string(), n12.to_string())].into();
        let (code, live) = findings(&["check", "--lab", name, "-o", "json"]);
        if live != want || code != Some(1) {
            failures.push(format!(
                "{fault}: live {live:?} (exit {code:?}), want {want:?}"
            ));
        }
        let bundle = tmp.path().join(fault);
        kd_ok(&["collect", "--lab", name, "-o", bundle.to_str().unwrap()]);
        let (_, offline) = findings(&["check", "--bundle", bundle.to_str().unwrap(), "-o", "json"]);
        if offline != want {
            failures.push(format!("{fault}: bundle {offline:?}, want {want:?}"));
        }
        if !dst.is_empty() {
            let t = kd(&["trace", pod, dst, "--lab", name]);
            let text = String::from_utf8_lossy(&t.stdout).to_string();
            // sep-stale breaks one endpoint in three: trace says so
            // (exit 1, a failing branch) and curl fails some of the time.
            if t.status.code() != Some(1) || works() {
                failures.push(format!(
                    "{fault}: trace exit {:?}, the real path works {}: {text}",
                    t.status.code(),
                    works()
                ));
            }
        }
        lab.kd(&["lab", "heal"]);
    }
    let (code, healed) = findings(&["check", "--lab", name, "-o", "json"]);
    assert_eq!((code, healed.len()), (Some(0), 0), "after heal: {healed:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
