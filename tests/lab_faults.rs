//! Every `lab break` fault breaks the path it should and only that, checked
//! with ping/curl/dig through `ip netns exec`; `lab heal` restores it.

mod common;
use common::*;

/// A path check: a description and whether the path works now.
type Probe<'a> = (&'static str, Box<dyn Fn() -> bool + 'a>);

/// Success bodies of `tries` ClusterIP requests (short timeout), and failures.
fn cluster_ip_spread(ns: &str, tries: usize) -> (Vec<String>, usize) {
    let mut ok = Vec::new();
    let mut failed = 0;
    for _ in 0..tries {
        let (good, body) = in_ns_text(ns, &["curl", "-sf", "-m", "0.5", "http://10.1.59.153/"]);
        if good {
            ok.push(body.trim().to_string());
        } else {
            failed += 1;
        }
    }
    (ok, failed)
}

#[test]
fn every_fault_breaks_its_path_and_heal_restores_it() {
    let lab = Lab::up("faults", &[]);
    let n12 = lab.pod(NGINX_NODE12);
    let n11 = lab.pod(NGINX_NODE11);
    let m10 = lab.pod(NGINX_MASTER);
    let bb = lab.pod(BUSYBOX);
    let out = lab.outside();

    let node12_to_master = || ping_full(&n12, "10.2.0.42");
    let node11_to_master = || ping_full(&n11, "10.2.0.42");
    let node12_to_node11 = || ping_full(&n12, "10.2.1.117");
    let master_to_node12 = || ping_full(&m10, "10.2.2.132");
    let same_node12 = || ping(&bb, "10.2.2.132");
    let busybox_clusterip = || curl(&bb, "http://10.1.59.153/", None).is_some();
    let master_clusterip = || curl(&m10, "http://10.1.59.153/", None).is_some();
    let nodeport = |ip: &str| curl(&out, &format!("http://{ip}:30005/"), None).is_some();
    let ingress = || curl(&out, "http://192.168.56.10/", Some("aoligei.linux0224.com")).is_some();
    let dns = || dig(&bb, "linux0224-nginx.test-svc-ns.svc.cluster.local") == ["10.1.59.153"];

    // (fault, paths that must fail, paths that must keep working)
    let cases: Vec<(&str, Vec<Probe>, Vec<Probe>)> = vec![
        (
            "route-missing",
            vec![("node-12 -> master pod", Box::new(node12_to_master))],
            vec![
                ("node-11 -> master", Box::new(node11_to_master)),
                ("node-12 -> node-11", Box::new(node12_to_node11)),
            ],
        ),
        (
            "route-wrong-gw",
            vec![("node-12 -> master pod", Box::new(node12_to_master))],
            vec![
                ("node-11 -> master", Box::new(node11_to_master)),
                ("node-12 -> node-11", Box::new(node12_to_node11)),
            ],
        ),
        (
            "neigh-missing",
            vec![("node-12 -> master pod", Box::new(node12_to_master))],
            vec![
                ("node-11 -> master", Box::new(node11_to_master)),
                ("node-12 -> node-11", Box::new(node12_to_node11)),
            ],
        ),
        (
            "neigh-wrong-mac",
            vec![("node-12 -> master pod", Box::new(node12_to_master))],
            vec![
                ("node-11 -> master", Box::new(node11_to_master)),
                ("node-12 -> node-11", Box::new(node12_to_node11)),
            ],
        ),
        (
            "fdb-missing",
            vec![("node-12 -> master pod", Box::new(node12_to_master))],
            vec![
                ("node-11 -> master", Box::new(node11_to_master)),
                ("node-12 -> node-11", Box::new(node12_to_node11)),
            ],
        ),
        (
            "fdb-stale-dst",
            vec![("node-12 -> master pod", Box::new(node12_to_master))],
            vec![
                ("node-11 -> master", Box::new(node11_to_master)),
                ("node-12 -> node-11", Box::new(node12_to_node11)),
            ],
        ),
        (
            "vtep-down",
            vec![
                ("node-12 -> master", Box::new(node12_to_master)),
                ("master -> node-12", Box::new(master_to_node12)),
            ],
            vec![
                ("node-11 -> master", Box::new(node11_to_master)),
                ("same node on node-12", Box::new(same_node12)),
            ],
        ),
        (
            "vtep-mtu",
            vec![(
                "node-12 -> master, 1450 bytes DF",
                Box::new(node12_to_master),
            )],
            vec![
                (
                    "node-12 -> master, small",
                    Box::new(|| ping(&n12, "10.2.0.42")),
                ),
                ("node-11 -> master", Box::new(node11_to_master)),
            ],
        ),
        (
            "cni0-addr-wrong",
            vec![("node-12 -> master", Box::new(node12_to_master))],
            vec![
                ("same node on node-12", Box::new(same_node12)),
                ("node-11 -> master", Box::new(node11_to_master)),
            ],
        ),
        (
            "ip-forward-off",
            vec![
                ("node-12 -> master", Box::new(node12_to_master)),
                ("master -> node-12", Box::new(master_to_node12)),
            ],
            vec![
                ("same node on node-12", Box::new(same_node12)),
                ("node-11 -> master", Box::new(node11_to_master)),
            ],
        ),
        (
            "forward-drop",
            vec![("node-12 -> master", Box::new(node12_to_master))],
            vec![("node-11 -> master", Box::new(node11_to_master))],
        ),
        (
            "pod-veth-down",
            vec![
                ("master -> node-12 nginx", Box::new(master_to_node12)),
                ("busybox -> node-12 nginx", Box::new(same_node12)),
            ],
            vec![("busybox -> master", Box::new(|| ping(&bb, "10.2.0.42")))],
        ),
        (
            "svc-chain-missing",
            vec![("ClusterIP from node-12", Box::new(busybox_clusterip))],
            vec![
                ("ClusterIP from master", Box::new(master_clusterip)),
                (
                    "NodePort on node-12",
                    Box::new(|| nodeport("192.168.56.12")),
                ),
            ],
        ),
        (
            "nodeport-missing",
            vec![(
                "NodePort on node-12",
                Box::new(|| nodeport("192.168.56.12")),
            )],
            vec![
                (
                    "NodePort on node-11",
                    Box::new(|| nodeport("192.168.56.11")),
                ),
                ("ClusterIP from node-12", Box::new(busybox_clusterip)),
            ],
        ),
        (
            "masq-missing",
            vec![(
                "node-12 pod -> outside",
                Box::new(|| ping(&n12, "192.168.56.254")),
            )],
            vec![
                (
                    "node-11 pod -> outside",
                    Box::new(|| ping(&n11, "192.168.56.254")),
                ),
                ("node-12 -> master", Box::new(node12_to_master)),
            ],
        ),
        (
            "dns-down",
            vec![("DNS", Box::new(dns))],
            vec![("ClusterIP", Box::new(busybox_clusterip))],
        ),
        (
            "ingress-backend-port",
            vec![("ingress", Box::new(ingress))],
            vec![("NodePort", Box::new(|| nodeport("192.168.56.10")))],
        ),
    ];

    let mut failures = Vec::new();
    for (fault, broken, working) in &cases {
        lab.kd(&["lab", "break", fault]);
        for (what, probe) in broken {
            if probe() {
                failures.push(format!("{fault}: {what} still works"));
            }
        }
        for (what, probe) in working {
            if !probe() {
                failures.push(format!("{fault}: {what} broke too"));
            }
        }
        lab.kd(&["lab", "heal"]);
        for (what, probe) in broken.iter().chain(working) {
            if !probe() {
                failures.push(format!("{fault}: {what} not restored by heal"));
            }
        }
    }

    // sep-stale: a share of ClusterIP requests from node-12 die at the dead
    // IP and the replaced endpoint (the master's pod) is never reached.
    lab.kd(&["lab", "break", "sep-stale"]);
    let (ok, failed) = cluster_ip_spread(&bb, 20);
    if failed == 0 || ok.iter().any(|b| b == NGINX_MASTER) {
        failures.push(format!("sep-stale: {failed} failures, answers {ok:?}"));
    }
    let (_, failed_master) = cluster_ip_spread(&m10, 10);
    if failed_master != 0 {
        failures.push("sep-stale: ClusterIP from the master failed too".into());
    }
    lab.kd(&["lab", "heal"]);
    let (_, failed) = cluster_ip_spread(&bb, 10);
    if failed != 0 {
        failures.push("sep-stale: not restored by heal".into());
    }

    // Two faults at once, healed together; the same fault twice is refused.
    lab.kd(&["lab", "break", "route-missing"]);
    lab.kd(&["lab", "break", "nodeport-missing", "--node", "k8s-node-11"]);
    let twice = kd(&["lab", "break", "route-missing", "--name", "faults"]);
    assert_eq!(
        twice.status.code(),
        Some(2),
        "same fault twice is a usage error"
    );
    assert!(!node12_to_master() && !nodeport("192.168.56.11"));
    lab.kd(&["lab", "heal"]);
    assert!(node12_to_master() && nodeport("192.168.56.11"));

    let status = kd(&["lab", "status", "--name", "faults"]);
    assert!(
        status.status.success(),
        "after all faults: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn break_names_bad_input_clearly() {
    require_root();
    let out = kd(&["lab", "break", "route-missing", "--name", "nosuchlab"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not up"));
    let list = kd_ok(&["lab", "break", "--list"]);
    assert_eq!(list.lines().count(), 18);
    let bad = kd(&["lab", "break", "route-gone"]);
    assert_eq!(bad.status.code(), Some(2));
}
