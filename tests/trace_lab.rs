//! `trace` on the lab: everything reachable when healthy; under each fault
//! the static trace fails at the hop where the fault was injected, with the
//! reason and the finding that explains it.

mod common;
use common::*;

/// (reachable, first drop as "point/node/reason/finding").
fn trace(args: &[&str]) -> (bool, String, Option<i32>) {
    let mut a = vec!["trace"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--lab", "trace", "-o", "json"]);
    let out = kd(&a);
    let t: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let hops: Vec<&serde_json::Value> = t["hops"]
        .as_array()
        .unwrap()
        .iter()
        .chain(
            t["branches"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|b| b["hops"].as_array().unwrap()),
        )
        .collect();
    let first = hops.iter().find(|h| h["verdict"] == "drop").map(|h| {
        format!(
            "{}/{}/{}/{}",
            h["point"].as_str().unwrap_or(""),
            h["node"].as_str().unwrap_or(""),
            h["reason"].as_str().unwrap_or(""),
            h["finding"]["id"].as_str().unwrap_or("")
        )
    });
    (
        t["reachable"].as_bool().unwrap(),
        first.unwrap_or_default(),
        out.status.code(),
    )
}

#[test]
fn healthy_lab_is_reachable_everywhere_and_faults_fail_where_injected() {
    let lab = Lab::up("trace", &[]);
    let mut failures = Vec::new();
    let mut count = 0;
    let mut expect_ok = |args: &[&str]| {
        count += 1;
        let (ok, drop, code) = trace(args);
        if !ok || code != Some(0) {
            failures.push(format!("{args:?}: {drop}"));
        }
    };
    for src in PODS {
        for dst in PODS.iter().filter(|d| **d != src) {
            expect_ok(&[src, dst]);
        }
        for svc in [
            "test-svc-ns/linux0224-nginx",
            "test-svc-ns/nodeport-service",
            "kube-system/kube-dns",
            "default/kubernetes",
        ] {
            expect_ok(&[src, svc]);
        }
        expect_ok(&[src, "kube-system/kube-dns", "--proto", "udp"]);
        expect_ok(&[src, "linux0224-nginx.test-svc-ns"]);
        expect_ok(&[src, "kube-dns.kube-system", "--proto", "udp"]);
    }
    for node in ["k8s-master-10", "k8s-node-11", "k8s-node-12"] {
        expect_ok(&["192.168.56.254", &format!("{node}:30005")]);
    }
    expect_ok(&["192.168.56.254", "http://aoligei.linux0224.com/"]);
    expect_ok(&["test-svc-ns/nginx-56d58c56c7-mr7p9", "192.168.56.254"]);
    // A pod's NodePort traffic, to its own node and across the underlay;
    // a pod's loopback is its own.
    for node in ["k8s-master-10", "k8s-node-11", "k8s-node-12"] {
        expect_ok(&[
            "test-net/busybox-deployment-5db9ff768-zrlxw",
            &format!("{node}:30005"),
        ]);
    }
    expect_ok(&["test-net/busybox-deployment-5db9ff768-zrlxw", "127.0.0.1"]);
    expect_ok(&["test-net/busybox-deployment-5db9ff768-zrlxw", "::1"]);
    assert!(
        failures.is_empty(),
        "{} of {count} healthy traces failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let bb = "test-net/busybox-deployment-5db9ff768-zrlxw";
    let master = "test-svc-ns/nginx-56d58c56c7-zl6ms";
    let n12 = "test-svc-ns/nginx-56d58c56c7-mr7p9";
    // (fault, src, dst, expected first drop)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "route-missing",
            bb,
            master,
            "routing/k8s-node-12/no-route/route-missing",
        ),
        (
            "route-missing",
            master,
            n12,
            "return-path/k8s-node-12/no-route/route-missing",
        ),
        (
            "route-wrong-gw",
            bb,
            master,
            "to-overlay/k8s-node-12/no-neigh/route-wrong",
        ),
        (
            "neigh-missing",
            bb,
            master,
            "to-overlay/k8s-node-12/no-neigh/neigh-missing",
        ),
        (
            "neigh-wrong-mac",
            bb,
            master,
            "to-overlay/k8s-node-12/no-fdb/neigh-wrong-mac",
        ),
        (
            "fdb-missing",
            bb,
            master,
            "to-overlay/k8s-node-12/no-fdb/fdb-missing",
        ),
        (
            "fdb-stale-dst",
            bb,
            master,
            "underlay/k8s-node-12/vtep-unreachable/fdb-wrong-dst",
        ),
        (
            "vtep-down",
            bb,
            master,
            "routing/k8s-node-12/no-route/vtep-down",
        ),
        (
            "vtep-down",
            master,
            n12,
            "from-overlay/k8s-node-12/vtep-down/vtep-down",
        ),
        (
            "vtep-mtu",
            bb,
            master,
            "to-overlay/k8s-node-12/mtu/vtep-mtu-wrong",
        ),
        (
            "vtep-mtu",
            master,
            n12,
            "return-path/k8s-node-12/mtu/vtep-mtu-wrong",
        ),
        (
            "cni0-addr-wrong",
            bb,
            master,
            "routing/k8s-node-12/no-gateway/cni0-addr-wrong",
        ),
        (
            "cni0-addr-wrong",
            master,
            n12,
            "return-path/k8s-node-12/no-gateway/cni0-addr-wrong",
        ),
        (
            "ip-forward-off",
            bb,
            master,
            "routing/k8s-node-12/ip-forward-off/ip-forward-off",
        ),
        (
            "forward-drop",
            bb,
            master,
            "netfilter-filter/k8s-node-12/forward-dropped/forward-drop",
        ),
        (
            "pod-veth-down",
            master,
            n12,
            "to-pod/k8s-node-12/veth-down/pod-veth-down",
        ),
        (
            "svc-chain-missing",
            bb,
            "test-svc-ns/linux0224-nginx",
            "netfilter-nat/k8s-node-12/no-service-rule/kube-proxy-svc-chain-missing",
        ),
        (
            "sep-stale",
            bb,
            "test-svc-ns/linux0224-nginx",
            "to-pod/k8s-master-10/no-such-pod/kube-proxy-endpoints-mismatch",
        ),
        (
            "nodeport-missing",
            "192.168.56.254",
            "k8s-node-12:30005",
            "netfilter-nat/k8s-node-12/no-node-port-rule/kube-proxy-nodeport-missing",
        ),
        (
            "nodeport-missing",
            bb,
            "k8s-node-12:30005",
            "netfilter-nat/k8s-node-12/no-node-port-rule/kube-proxy-nodeport-missing",
        ),
        (
            "nodeport-missing",
            master,
            "k8s-node-12:30005",
            "netfilter-nat/k8s-node-12/no-node-port-rule/kube-proxy-nodeport-missing",
        ),
        (
            "masq-missing",
            n12,
            "192.168.56.254",
            "netfilter-nat/k8s-node-12/no-masquerade/flannel-masq-missing",
        ),
        (
            "dns-down",
            bb,
            "linux0224-nginx.test-svc-ns",
            "dns/k8s-node-12/dns-unavailable/kube-dns-no-endpoints",
        ),
        (
            "ingress-backend-port",
            "192.168.56.254",
            "http://aoligei.linux0224.com/",
            "ingress/k8s-master-10/ingress-no-backend/ingress-backend-port-missing",
        ),
    ];
    let mut wrong = Vec::new();
    for (fault, src, dst, want) in cases {
        lab.kd(&["lab", "break", fault]);
        let (ok, got, code) = trace(&[src, dst]);
        if ok || code != Some(1) || got != *want {
            wrong.push(format!(
                "{fault}: {src} -> {dst}: got {got:?} (reachable {ok}), want {want}"
            ));
        }
        // The fault leaves unrelated paths alone.
        let (other_ok, other, _) = trace(&[
            "test-svc-ns/nginx-56d58c56c7-2zp46",
            "kube-system/coredns-6d56c8448f-g6m9z",
        ]);
        if !other_ok && !matches!(*fault, "dns-down") {
            wrong.push(format!("{fault}: node-11 -> master pod broke too: {other}"));
        }
        lab.kd(&["lab", "heal"]);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn unknown_names_list_close_matches() {
    let _lab = Lab::up("tracebad", &[]);
    let out = kd(&[
        "trace",
        "test-net/busybox-deployment-5db9ff768-zrlx",
        "test-svc-ns/linux0224-nginx",
        "--lab",
        "tracebad",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("test-net/busybox-deployment-5db9ff768-zrlxw")
    );
    let text = kd(&[
        "trace",
        "test-net/busybox-deployment-5db9ff768-zrlxw",
        "test-svc-ns/linux0224-nginx",
        "--lab",
        "tracebad",
    ]);
    let s = String::from_utf8_lossy(&text.stdout);
    assert!(
        s.contains("KUBE-SVC-K2WYTW5CBKHCXKSG")
            && s.contains("(p=0.333)")
            && s.contains("reachable: 3 of 3"),
        "{s}"
    );
}
