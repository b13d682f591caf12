//! The healthy seed lab, verified with independent tools (ping, curl, dig
//! through `ip netns exec`), not with knetdoctor's own readers.

mod common;
use common::*;

#[test]
fn healthy_seed_lab_works_end_to_end() {
    let lab = Lab::up("healthy", &[]);
    let master_pod = lab.pod(NGINX_MASTER);
    let node12_pod = lab.pod(NGINX_NODE12);
    let busybox = lab.pod(BUSYBOX);

    // Cross-node pod-to-pod in both directions, full-size with DF set.
    assert!(
        ping_full(&master_pod, "10.2.2.132"),
        "master -> node-12 pod"
    );
    assert!(ping_full(&node12_pod, "10.2.0.42"), "node-12 -> master pod");
    assert!(
        ping_full(&lab.pod(NGINX_NODE11), "10.2.2.132"),
        "node-11 -> node-12 pod"
    );
    // Same-node pod-to-pod (bridged on cni0).
    assert!(
        ping(&master_pod, "10.2.0.2"),
        "master nginx -> master coredns"
    );
    assert!(ping(&busybox, "10.2.2.132"), "busybox -> nginx on node-12");

    // ClusterIP over HTTP reaches every endpoint within a bounded number of tries.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        if let Some(body) = curl(&busybox, "http://10.1.59.153/", None) {
            seen.insert(body);
        }
        if seen.len() == 3 {
            break;
        }
    }
    let all: std::collections::BTreeSet<String> = [NGINX_MASTER, NGINX_NODE11, NGINX_NODE12]
        .map(String::from)
        .into();
    assert_eq!(seen, all, "every endpoint answers through the ClusterIP");

    // DNS through the kube-dns ClusterIP, and the pod's own resolv.conf search list.
    assert_eq!(
        dig(&busybox, "linux0224-nginx.test-svc-ns.svc.cluster.local"),
        ["10.1.59.153"]
    );
    assert_eq!(
        dig(&busybox, "kube-dns.kube-system.svc.cluster.local"),
        ["10.1.0.10"]
    );
    assert_eq!(
        dig(&busybox, "10-2-0-42.test-svc-ns.pod.cluster.local"),
        ["10.2.0.42"]
    );
    let (ok, out) = in_ns_text(
        &lab.pod(NGINX_NODE12),
        &[
            "dig",
            "+search",
            "+short",
            "+time=1",
            "+tries=1",
            "linux0224-nginx",
        ],
    );
    assert!(
        ok && out.trim() == "10.1.59.153",
        "search path from a test-svc-ns pod: {out:?}"
    );
    let (_, nx) = in_ns_text(
        &busybox,
        &[
            "dig",
            "+time=1",
            "+tries=1",
            "@10.1.0.10",
            "nope.test-svc-ns.svc.cluster.local",
        ],
    );
    assert!(
        nx.contains("NXDOMAIN"),
        "unknown cluster names are NXDOMAIN: {nx}"
    );

    // NodePort 30005 on every node from the outside client.
    for ip in ["192.168.56.10", "192.168.56.11", "192.168.56.12"] {
        let body = curl(&lab.outside(), &format!("http://{ip}:30005/"), None);
        assert!(
            body.is_some_and(|b| b.starts_with("nginx-56d58c56c7-")),
            "NodePort on {ip}"
        );
    }
    // The ingress: Host header through the controller's hostPort on the master.
    let body = curl(
        &lab.outside(),
        "http://192.168.56.10/",
        Some("aoligei.linux0224.com"),
    );
    assert!(
        body.is_some_and(|b| b.starts_with("nginx-56d58c56c7-")),
        "ingress"
    );
    let other = curl(
        &lab.outside(),
        "http://192.168.56.10/",
        Some("other.example"),
    );
    assert!(
        other.is_none(),
        "unknown host gets the default backend's 404"
    );

    // knetdoctor's own status agrees.
    let out = kd(&["lab", "status", "--name", "healthy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A second `lab up` is refused and leaves the first alone.
    let again = kd(&["lab", "up", "--name", "healthy"]);
    assert_eq!(again.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already up"));
    assert!(ping(&master_pod, "10.2.2.132"));
}

#[test]
fn lab_is_isolated_from_the_root_namespace() {
    let lab = Lab::up("isolated", &[]);
    // No lab address, device or route shows up in the root namespace.
    let root_addrs = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["-j", "addr"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for needle in ["192.168.56.", "10.2.", "flannel.1", "cni0"] {
        assert!(!root_addrs.contains(needle), "root namespace has {needle}");
    }
    let root_routes = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["route", "show", "table", "all"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!root_routes.contains("10.2.") && !root_routes.contains("192.168.56."));
    // Nodes have no default route: nothing they forward can leave the lab.
    for node in ["k8s-master-10", "k8s-node-11", "k8s-node-12"] {
        let (_, r) = in_ns_text(&lab.node(node), &["ip", "route", "show", "default"]);
        assert!(r.trim().is_empty(), "{node} has a default route: {r}");
        // And no veth peer lives in the root namespace (netnsid of peers is set).
        let (_, links) = in_ns_text(&lab.node(node), &["ip", "-j", "link"]);
        let links: serde_json::Value = serde_json::from_str(&links).unwrap();
        for l in links.as_array().unwrap() {
            if l["link_type"] == "ether"
                && l.get("link_netnsid").is_none()
                && l["ifname"].as_str().unwrap().starts_with("veth")
            {
                panic!("veth {} has its peer in no other namespace", l["ifname"]);
            }
        }
    }
}
