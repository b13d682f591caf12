//! `inspect node -o json` (rtnetlink) agrees field by field with iproute2's
//! JSON (`ip -j -d link`, `ip -j addr`, `ip -j route show table all`,
//! `ip -j neigh`, `ip -j rule`, `bridge -j fdb`) and with sysctl, read in
//! the same namespace.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

fn ip_json(ns: &str, args: &[&str]) -> Vec<Value> {
    let mut argv = vec!["ip", "-j"];
    argv.extend_from_slice(args);
    let (ok, out) = in_ns_text(ns, &argv);
    assert!(ok, "ip {args:?} in {ns}");
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table_id(v: &Value) -> String {
    match v.as_str() {
        None if v.is_null() => "254".into(),
        Some("main") => "254".into(),
        Some("local") => "255".into(),
        Some("default") => "253".into(),
        Some(other) => other.into(),
        None => v.to_string(),
    }
}

/// Asserts `ours` lies between two reads of a table that can change on its
/// own (kernel-learned entries): everything present both before and after
/// must be in ours, and ours may hold nothing absent from both.
fn bracketed<T: Ord + std::fmt::Debug + Clone>(
    what: &str,
    ours: &BTreeSet<T>,
    before: &BTreeSet<T>,
    after: &BTreeSet<T>,
) {
    let stable: BTreeSet<T> = before.intersection(after).cloned().collect();
    let any: BTreeSet<T> = before.union(after).cloned().collect();
    let missing: Vec<_> = stable.difference(ours).collect();
    let extra: Vec<_> = ours.difference(&any).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, extra {extra:?}"
    );
}

fn fdb_set(ns: &str) -> BTreeSet<(String, String, String, String, String, String, String)> {
    let (ok, fdb) = in_ns_text(ns, &["bridge", "-j", "fdb", "show"]);
    assert!(ok);
    serde_json::from_str::<Value>(&fdb)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let flags: Vec<String> = f["flags"]
                .as_array()
                .map(|v| v.iter().map(s).collect())
                .unwrap_or_default();
            (
                s(&f["ifname"]),
                s(&f["mac"]),
                s(&f["dst"]),
                s(&f["vlan"]),
                s(&f["master"]),
                flags.join(","),
                s(&f["state"]),
            )
        })
        .collect()
}

fn compare_namespace(ns: &str, kd_args: &[&str]) {
    let neigh_before = ip_json(ns, &["neigh", "show", "nud", "all"]);
    let fdb_before = fdb_set(ns);
    let ours: Value = serde_json::from_str(&kd_ok(kd_args)).unwrap();

    // Links.
    let theirs = ip_json(ns, &["-d", "link", "show"]);
    let our_links = ours["links"].as_array().unwrap();
    assert_eq!(our_links.len(), theirs.len(), "link count in {ns}");
    for t in &theirs {
        let name = t["ifname"].as_str().unwrap();
        let o = our_links
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("{ns}: no link {name}"));
        assert_eq!(o["ifindex"], t["ifindex"], "{ns} {name} ifindex");
        assert_eq!(o["mtu"], t["mtu"], "{ns} {name} mtu");
        assert_eq!(o["operstate"], t["operstate"], "{ns} {name} operstate");
        assert_eq!(s(&o["mac"]), s(&t["address"]), "{ns} {name} mac");
        assert_eq!(s(&o["master"]), s(&t["master"]), "{ns} {name} master");
        assert_eq!(
            s(&o["link_ifindex"]),
            s(&t["link_index"]),
            "{ns} {name} peer ifindex"
        );
        assert_eq!(
            s(&o["link_netnsid"]),
            s(&t["link_netnsid"]),
            "{ns} {name} peer netnsid"
        );
        let flags: Vec<&str> = t["flags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f.as_str())
            .collect();
        assert_eq!(
            o["up"].as_bool(),
            Some(flags.contains(&"UP")),
            "{ns} {name} UP"
        );
        assert_eq!(
            o["lower_up"].as_bool(),
            Some(flags.contains(&"LOWER_UP")),
            "{ns} {name} LOWER_UP"
        );
        let info = &t["linkinfo"];
        assert_eq!(s(&o["kind"]), s(&info["info_kind"]), "{ns} {name} kind");
        if info["info_kind"] == "vxlan" {
            let (ov, tv) = (&o["vxlan"], &info["info_data"]);
            assert_eq!(ov["vni"], tv["id"], "{name} vni");
            assert_eq!(ov["local"], tv["local"], "{name} local");
            assert_eq!(ov["dev"], tv["link"], "{name} underlay dev");
            assert_eq!(ov["port"], tv["port"], "{name} port");
            assert_eq!(ov["learning"], tv["learning"], "{name} learning");
        }
        if info["info_slave_kind"] == "bridge" {
            assert_eq!(
                o["bridge_port"]["hairpin"], info["info_slave_data"]["hairpin"],
                "{name} hairpin"
            );
        }
    }

    // Addresses (both families).
    let mut theirs_addrs = BTreeSet::new();
    for l in ip_json(ns, &["addr"]) {
        for a in l["addr_info"].as_array().unwrap() {
            theirs_addrs.insert((
                s(&l["ifname"]),
                s(&a["local"]),
                s(&a["prefixlen"]),
                s(&a["scope"]),
            ));
        }
    }
    let our_addrs: BTreeSet<_> = ours["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                s(&a["dev"]),
                s(&a["address"]),
                s(&a["prefix_len"]),
                s(&a["scope"]),
            )
        })
        .collect();
    assert_eq!(our_addrs, theirs_addrs, "addresses in {ns}");

    // Routes in every table (IPv4); iproute2 leaves defaults out of its JSON.
    let norm_dst = |d: &str| match d {
        _ if d == "default" || d.contains('/') => d.to_string(),
        _ if d.contains(':') => format!("{d}/128"),
        _ => format!("{d}/32"),
    };
    let theirs_routes: BTreeSet<_> = ip_json(ns, &["route", "show", "table", "all"])
        .iter()
        .map(|r| {
            let flags: Vec<String> = r["flags"]
                .as_array()
                .map(|f| f.iter().map(s).collect())
                .unwrap_or_default();
            (
                norm_dst(r["dst"].as_str().unwrap()),
                s(&r["gateway"]),
                s(&r["dev"]),
                table_id(&r["table"]),
                r["protocol"].as_str().unwrap_or("boot").to_string(),
                r["scope"].as_str().unwrap_or("global").to_string(),
                r["type"].as_str().unwrap_or("unicast").to_string(),
                s(&r["prefsrc"]),
                flags.join(","),
            )
        })
        .collect();
    let our_routes: BTreeSet<_> = ours["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let flags: Vec<String> = r["flags"].as_array().unwrap().iter().map(s).collect();
            (
                s(&r["dst"]),
                s(&r["gateway"]),
                s(&r["dev"]),
                s(&r["table"]),
                s(&r["protocol"]),
                s(&r["scope"]),
                s(&r["type"]),
                s(&r["prefsrc"]),
                flags.join(","),
            )
        })
        .collect();
    assert_eq!(our_routes, theirs_routes, "routes in {ns}");

    // Policy rules.
    let theirs_rules: BTreeSet<_> = ip_json(ns, &["rule"])
        .iter()
        .map(|r| (s(&r["priority"]), table_id(&r["table"])))
        .collect();
    let our_rules: BTreeSet<_> = ours["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (s(&r["priority"]), s(&r["table"])))
        .collect();
    assert_eq!(our_rules, theirs_rules, "rules in {ns}");

    // Neighbours: identity and lladdr always; state for PERMANENT
    // entries (dynamic ones may age between the two reads).
    let neigh_after = ip_json(ns, &["neigh", "show", "nud", "all"]);
    let key = |n: &Value| (s(&n["dev"]), s(&n["dst"]));
    let our_neigh = ours["neighs"].as_array().unwrap();
    let keys = |v: &[Value]| v.iter().map(key).collect::<BTreeSet<_>>();
    bracketed(
        &format!("neighbours in {ns}"),
        &keys(our_neigh),
        &keys(&neigh_before),
        &keys(&neigh_after),
    );
    // PERMANENT entries (flannel's) do not change on their own: exact match.
    for t in neigh_after.iter().filter(|t| {
        t["state"]
            .as_array()
            .is_some_and(|st| st.iter().any(|x| x == "PERMANENT"))
    }) {
        let o = our_neigh.iter().find(|n| key(n) == key(t)).unwrap();
        assert_eq!(o["state"], t["state"], "{ns} neigh {} state", t["dst"]);
        assert_eq!(
            s(&o["lladdr"]),
            s(&t["lladdr"]),
            "{ns} neigh {} lladdr",
            t["dst"]
        );
    }

    // FDB, including the VTEP entries' dst (learned entries may come and go).
    let our_fdb: BTreeSet<_> = ours["fdb"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let flags: Vec<String> = f["flags"].as_array().unwrap().iter().map(s).collect();
            (
                s(&f["dev"]),
                s(&f["mac"]),
                s(&f["dst"]),
                s(&f["vlan"]),
                s(&f["master"]),
                flags.join(","),
                s(&f["state"]),
            )
        })
        .collect();
    bracketed(&format!("fdb in {ns}"), &our_fdb, &fdb_before, &fdb_set(ns));

    // Sysctls, read through the namespace's own /proc/sys.
    let sysctl = |k: &str| in_ns_text(ns, &["sysctl", "-n", k]).1.trim().to_string();
    assert_eq!(
        ours["sysctls"]["ip_forward"]
            .as_bool()
            .map(|b| if b { "1" } else { "0" }.to_string()),
        Some(sysctl("net.ipv4.ip_forward"))
    );
    assert_eq!(
        s(&ours["sysctls"]["rp_filter"]["all"]),
        sysctl("net.ipv4.conf.all.rp_filter")
    );
}

#[test]
fn inspect_node_json_agrees_with_iproute2() {
    let lab = Lab::up("agree", &[]);
    // IPv6 link-local addresses (and their local routes) appear when
    // duplicate address detection ends, a moment after the lab is up: two
    // reads a few milliseconds apart must see the same namespace.
    for ns in [
        lab.node("k8s-master-10"),
        lab.node("k8s-node-12"),
        lab.pod(BUSYBOX),
        lab.pod(NGINX_NODE11),
    ] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !in_ns_text(&ns, &["ip", "-6", "addr", "show", "tentative"])
            .1
            .trim()
            .is_empty()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    for node in ["k8s-master-10", "k8s-node-12"] {
        compare_namespace(
            &lab.node(node),
            &["inspect", "node", node, "--lab", "agree", "-o", "json"],
        );
    }
    let pod = lab.pod(BUSYBOX);
    compare_namespace(&pod, &["inspect", "node", "--netns", &pod, "-o", "json"]);
    // A namespace given by path (as /proc/PID/ns/net would be).
    let pod = lab.pod(NGINX_NODE11);
    let path = format!("/run/netns/{pod}");
    compare_namespace(&pod, &["inspect", "node", "--netns", &path, "-o", "json"]);

    // The dashboard's reading after a kernel notification: the kernel's
    // tables read again, the rules kept from the reading before.
    let target = knetdoctor::access::Source {
        bundle: None,
        lab: "agree".into(),
        live: None,
        published: false,
    }
    .target()
    .unwrap();
    let node12 = target.node("k8s-node-12").unwrap();
    let before = node12.read().unwrap();
    let json = |s: &knetdoctor::dataplane::NodeState| serde_json::to_value(s).unwrap();

    // After faults the reader still agrees, and sees what changed.
    lab.kd(&["lab", "break", "fdb-stale-dst"]);
    lab.kd(&["lab", "break", "ip-forward-off"]);
    lab.kd(&["lab", "break", "vtep-mtu"]);
    // FDB, sysctl and MTU changes: the kernel's tables alone hold them.
    let whole = node12.read().unwrap();
    assert_ne!(json(&whole), json(&before), "the faults changed nothing");
    assert_eq!(
        json(&node12.read_kernel_tables(&before).unwrap()),
        json(&whole)
    );
    // A rule gone is seen only by a whole reading (the periodic one).
    lab.kd(&["lab", "break", "masq-missing", "--node", "k8s-node-12"]);
    let ruled = node12.read().unwrap();
    assert_ne!(json(&ruled), json(&whole), "masq-missing changed no rule");
    assert_eq!(
        json(&node12.read_kernel_tables(&whole).unwrap()),
        json(&whole)
    );
    compare_namespace(
        &lab.node("k8s-node-12"),
        &[
            "inspect",
            "node",
            "k8s-node-12",
            "--lab",
            "agree",
            "-o",
            "json",
        ],
    );
    let v: Value = serde_json::from_str(&kd_ok(&[
        "inspect",
        "node",
        "k8s-node-12",
        "--lab",
        "agree",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(v["sysctls"]["ip_forward"], false);
    assert!(
        v["fdb"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["dst"] == "192.168.56.253")
    );
    assert!(
        v["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "flannel.1" && l["mtu"] == 1400)
    );

    // The text form joins route -> neigh -> fdb per peer.
    let text = kd_ok(&["inspect", "node", "k8s-node-12", "--lab", "agree"]);
    assert!(text.contains("10.2.0.0/24     via 10.2.0.0"), "{text}");
    assert!(text.contains("dst 192.168.56.253 self permanent"), "{text}");
}

#[test]
fn inspect_names_bad_input() {
    require_root();
    let out = kd(&["inspect", "node", "--netns", "kdlab-no-such-namespace"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = kd(&["inspect", "node", "k8s-node-12", "--lab", "nolabhere"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not up"));
    // The caller's own namespace reads without a lab.
    let v: Value = serde_json::from_str(&kd_ok(&["inspect", "node", "-o", "json"])).unwrap();
    assert!(
        v["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "lo")
    );
}
