//! `inspect pod|svc|ingress|dns`: the linked chain, with broken links and
//! the findings that explain them.

mod common;
use common::*;

#[test]
fn linked_views_follow_the_chain_and_mark_what_breaks() {
    let lab = Lab::up("links", &[]);
    let src = ["--lab", "links"];
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(&src);
        kd(&a)
    };
    for args in [
        vec!["inspect", "svc", "test-svc-ns/linux0224-nginx"],
        vec!["inspect", "ingress", "test-ingress", "-n", "test-svc-ns"],
        vec!["inspect", "pod", BUSYBOX, "-n", "test-net"],
        vec!["inspect", "dns", "linux0224-nginx", "-n", "test-svc-ns"],
        vec!["inspect", "dns", "kube-dns.kube-system", "-n", "test-net"],
    ] {
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The ingress view walks down to every pod and the node entries that reach it.
    let out = run(&[
        "inspect",
        "ingress",
        "test-svc-ns/test-ingress",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    for k in [
        "Ingress", "rule", "Service", "port", "chain", "Pod", "Node", "veth", "overlay",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "Pod").count(), 3);

    lab.kd(&["lab", "break", "route-missing"]);
    let out = run(&["inspect", "svc", "test-svc-ns/linux0224-nginx"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("from k8s-node-12: route 10.2.0.0/24 BROKEN"),
        "{text}"
    );
    assert!(text.contains("route-missing"), "{text}");
    lab.kd(&["lab", "heal"]);

    // Unknown names suggest close ones.
    let out = run(&["inspect", "pod", "nginx-56d58c56c7-zl6m"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("test-svc-ns/nginx-56d58c56c7-zl6ms"));
    let out = run(&["inspect", "dns", "linux0224-ngnix", "-n", "test-svc-ns"]);
    assert_eq!(out.status.code(), Some(2));
}
