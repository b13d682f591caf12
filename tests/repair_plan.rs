//! `repair --node N` plans on the lab: for every fault with a dataplane fix,
//! exactly the actions that fix it, in flannel's order, with what they
//! replace as iproute2 shows it; nothing on a healthy node; faults that are
//! not the kernel's to fix become what a person must do; kube-proxy's
//! chains only on request. Planning changes nothing on the node.

mod common;
use common::*;

const LAB: &str = "plan";

fn plan(args: &[&str]) -> (serde_json::Value, Option<i32>) {
    let mut a = vec!["repair"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--lab", LAB, "-o", "json"]);
    let out = kd(&a);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (v, out.status.code())
}

/// Each step as `action key=value ...` with the fields that say what it does.
fn steps(v: &serde_json::Value, list: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let a = &s["action"];
            let mut fields: Vec<String> = a
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "action")
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str().map(str::to_string).unwrap_or(v.to_string())
                    )
                })
                .collect();
            fields.sort();
            format!("{} {}", a["action"].as_str().unwrap(), fields.join(" "))
        })
        .collect()
}

#[test]
fn plans_fix_exactly_what_each_fault_broke() {
    let lab = Lab::up(LAB, &[]);
    for node in ["k8s-master-10", "k8s-node-11", "k8s-node-12"] {
        let (v, code) = plan(&["--node", node]);
        assert_eq!(code, Some(0), "{node}: {v:#}");
        assert!(steps(&v, "steps").is_empty());
    }
    // The peers' VTEP MACs, as iproute2 shows them on the peers.
    let vtep_mac = |node: &str| -> String {
        let (_, out) = in_ns_text(&lab.node(node), &["ip", "-j", "link", "show", "flannel.1"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["address"].as_str().unwrap().to_string()
    };
    let (m10, m11) = (vtep_mac("k8s-master-10"), vtep_mac("k8s-node-11"));
    let neigh10 = format!("neigh-replace dev=flannel.1 ip=10.2.0.0 mac={m10}");
    let fdb10 = format!("fdb-replace dev=flannel.1 dst=192.168.56.10 mac={m10}");
    let neigh11 = format!("neigh-replace dev=flannel.1 ip=10.2.1.0 mac={m11}");
    let route10 = "route-replace dev=flannel.1 dst=10.2.0.0/24 gateway=10.2.0.0 onlink=true";
    let route11 = "route-replace dev=flannel.1 dst=10.2.1.0/24 gateway=10.2.1.0 onlink=true";
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("route-missing", vec![route10]),
        ("route-wrong-gw", vec![route10]),
        ("neigh-missing", vec![&neigh10]),
        ("neigh-wrong-mac", vec![&neigh10]),
        ("fdb-missing", vec![&fdb10]),
        ("fdb-stale-dst", vec![&fdb10]),
        ("vtep-mtu", vec!["link-mtu dev=flannel.1 mtu=1450"]),
        (
            "ip-forward-off",
            vec!["sysctl key=net.ipv4.ip_forward value=1"],
        ),
        (
            "forward-drop",
            vec![r#"iptables-chains chains=["FLANNEL-FWD"] owner=flannel table=filter"#],
        ),
        (
            "masq-missing",
            vec![r#"iptables-chains chains=["FLANNEL-POSTRTG"] owner=flannel table=nat"#],
        ),
        (
            "vtep-down",
            vec![
                "link-up dev=flannel.1",
                &neigh10,
                route10,
                &neigh11,
                route11,
            ],
        ),
    ];
    let node = lab.node("k8s-node-12");
    let mut wrong = Vec::new();
    for (fault, want) in &cases {
        lab.kd(&["lab", "break", fault]);
        let before = in_ns_text(&node, &["ip", "-j", "route"]).1
            + &in_ns_text(&node, &["ip", "-j", "neigh"]).1;
        let (v, code) = plan(&["--node", "k8s-node-12"]);
        let got = steps(&v, "steps");
        if code != Some(1) || got != *want {
            wrong.push(format!(
                "{fault}: exit {code:?}\n  got  {got:?}\n  want {want:?}"
            ));
        }
        // Planning touches nothing.
        let after = in_ns_text(&node, &["ip", "-j", "route"]).1
            + &in_ns_text(&node, &["ip", "-j", "neigh"]).1;
        assert_eq!(before, after, "{fault}: planning changed the node");
        // What the first step replaces, as iproute2 sees it.
        if *fault == "neigh-wrong-mac" {
            let shown = in_ns_text(
                &node,
                &["ip", "neigh", "show", "10.2.0.0", "dev", "flannel.1"],
            )
            .1;
            let mac = shown
                .split_whitespace()
                .skip_while(|w| *w != "lladdr")
                .nth(1)
                .unwrap()
                .to_string();
            let replaces = v["steps"][0]["replaces"].as_str().unwrap();
            assert!(
                replaces.contains(&mac) && replaces.contains("PERMANENT"),
                "{replaces} vs {shown}"
            );
        }
        if *fault == "route-missing" {
            assert_eq!(v["steps"][0]["replaces"], "nothing");
        }
        // The chain is written whole and the jump put back where flannel
        // has it (after kube-proxy's jumps), never a flush of FORWARD.
        if *fault == "forward-drop" {
            let r = &v["steps"][0]["iptables"];
            let input = r["input"].as_str().unwrap();
            assert!(
                input.starts_with("*filter\n:FLANNEL-FWD - [0:0]\n")
                    && input.contains("-A FLANNEL-FWD -s 10.2.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n")
                    && input.contains("-I FORWARD 5 -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n")
                    && !input.contains(":FORWARD"),
                "{input}"
            );
            assert!(
                r["undo"].as_str().unwrap().contains("-X FLANNEL-FWD"),
                "{r}"
            );
            assert_eq!(r["backend"], "nft");
        }
        lab.kd(&["lab", "heal"]);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // --only leaves the rest out.
    lab.kd(&["lab", "break", "vtep-down"]);
    let (v, _) = plan(&["--node", "k8s-node-12", "--only", "routes"]);
    assert_eq!(steps(&v, "steps").len(), 2);
    lab.kd(&["lab", "heal"]);

    // kube-proxy's chains: left to kube-proxy unless asked.
    lab.kd(&["lab", "break", "svc-chain-missing"]);
    let (v, code) = plan(&["--node", "k8s-node-12"]);
    assert_eq!(code, Some(1));
    assert!(steps(&v, "steps").is_empty());
    assert_eq!(steps(&v, "left_to_kube_proxy").len(), 1, "{v:#}");
    let (v, _) = plan(&["--node", "k8s-node-12", "--include", "kube-proxy"]);
    assert!(
        steps(&v, "steps")[0].starts_with("iptables-chains"),
        "{v:#}"
    );
    lab.kd(&["lab", "heal"]);

    // sep-stale: the Service's chain, its endpoints' chains and the stale
    // one (removed), as kube-proxy's next sync would leave them.
    lab.kd(&["lab", "break", "sep-stale"]);
    let (v, _) = plan(&["--node", "k8s-node-12", "--include", "kube-proxy"]);
    let chains = &v["steps"][0]["action"]["chains"];
    assert_eq!(chains.as_array().unwrap().len(), 5, "{v:#}");
    let input = v["steps"][0]["iptables"]["input"].as_str().unwrap();
    assert_eq!(input.matches("\n-X KUBE-SEP-").count(), 1, "{input}");
    lab.kd(&["lab", "heal"]);

    // Not the kernel's to fix: a person's job, no kernel change planned.
    for (fault, finding) in [
        ("dns-down", "kube-dns-no-endpoints"),
        ("ingress-backend-port", "ingress-backend-port-missing"),
    ] {
        lab.kd(&["lab", "break", fault]);
        let (v, code) = plan(&["--node", "k8s-node-12"]);
        assert_eq!(code, Some(1));
        assert!(steps(&v, "steps").is_empty(), "{fault}: {v:#}");
        assert!(steps(&v, "manual")[0].starts_with("manual "), "{v:#}");
        assert!(
            v["manual"][0]["finding"]
                .as_str()
                .unwrap()
                .contains(finding),
            "{fault}: {v:#}"
        );
        let text = kd(&["repair", "--node", "k8s-node-12", "--lab", LAB]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("what a person must change") && text.contains("change: "),
            "{text}"
        );
        lab.kd(&["lab", "heal"]);
    }

    let out = kd(&["repair", "--node", "k8s-node-99", "--lab", LAB]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("k8s-node-12"));
}
