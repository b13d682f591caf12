//! `repair --apply` on the lab: each dataplane fault is fixed through
//! rtnetlink, the path works again (ping from the busybox pod), `check`
//! finds nothing, a second repair plans nothing, and `--undo` puts back the
//! broken state exactly as iproute2 shows it. A second repair while one
//! holds the node's lock is refused with who holds it.

mod common;
use common::*;

const LAB: &str = "fix";

/// What iproute2 shows of the node's overlay state, each list sorted (the
/// kernel may dump re-added entries in another order).
fn snapshot(node_ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    for argv in [
        &["ip", "-4", "-j", "route", "show", "table", "all"][..],
        &["ip", "-4", "-j", "neigh", "show", "dev", "flannel.1"],
        &["bridge", "-j", "fdb", "show", "dev", "flannel.1"],
        &["ip", "-j", "link"],
        &["ip", "-4", "-j", "addr", "show", "dev", "cni0"],
        &["sysctl", "-n", "net.ipv4.ip_forward"],
    ] {
        let (_, text) = in_ns_text(node_ns, argv);
        let mut items: Vec<String> = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(v)) => v
                .into_iter()
                .map(|mut x| {
                    // Counters and timers move on their own.
                    if let Some(o) = x.as_object_mut() {
                        o.remove("used");
                        o.remove("updated");
                        o.remove("stats64");
                    }
                    x.to_string()
                })
                .collect(),
            _ => vec![text.trim().to_string()],
        };
        items.sort();
        out.push(format!("{argv:?}: {}", items.join("\n")));
    }
    out
}

/// A fault no lab fault makes: `break_argv` run in the node by hand. The
/// repair (one action: the finding's) must bring `read()` back to what it
/// was, undo must bring back the broken reading; `heal_argv` ends it.
/// Returns the broken reading.
fn by_hand(
    node: &str,
    break_argv: &[&str],
    heal_argv: &[&str],
    read: &dyn Fn() -> String,
) -> String {
    let repair = |extra: &[&str]| {
        let mut a = vec!["repair", "--node", "k8s-node-12", "--lab", LAB];
        a.extend_from_slice(extra);
        kd(&a)
    };
    let healthy = read();
    assert!(in_ns(node, break_argv).status.success(), "{break_argv:?}");
    let broken = read();
    assert_ne!(broken, healthy, "{break_argv:?} changed nothing");
    let plan: serde_json::Value = serde_json::from_slice(&repair(&["-o", "json"]).stdout).unwrap();
    assert_eq!(plan["steps"].as_array().unwrap().len(), 1, "{plan:#}");
    let out = repair(&["--apply", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(read(), healthy, "after the repair of {break_argv:?}");
    undo_newest(LAB).unwrap();
    assert_eq!(read(), broken, "after undoing the repair of {break_argv:?}");
    assert!(in_ns(node, heal_argv).status.success(), "{heal_argv:?}");
    assert_eq!(read(), healthy);
    broken
}

/// Undoes the newest repair of k8s-node-12 in `lab`, by the ID
/// `--history` lists last.
fn undo_newest(lab: &str) -> Result<(), String> {
    let args = |extra: &[&str]| {
        let mut a = vec!["repair", "--node", "k8s-node-12", "--lab", lab];
        a.extend_from_slice(extra);
        kd(&a)
    };
    let history = String::from_utf8_lossy(&args(&["--history"]).stdout).to_string();
    let id = history
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .ok_or_else(|| format!("no repair in the history: {history}"))?
        .to_string();
    let out = args(&["--undo", &id]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn apply_fixes_each_dataplane_fault_and_undo_restores_it() {
    let lab = Lab::up(LAB, &[]);
    let node = lab.node("k8s-node-12");
    let bb = lab.pod(BUSYBOX);
    let repair = |extra: &[&str]| {
        let mut a = vec!["repair", "--node", "k8s-node-12", "--lab", LAB];
        a.extend_from_slice(extra);
        kd(&a)
    };
    let healthy = snapshot(&node);
    let mut wrong = Vec::new();
    for fault in [
        "route-missing",
        "route-wrong-gw",
        "neigh-missing",
        "neigh-wrong-mac",
        "fdb-missing",
        "fdb-stale-dst",
        "vtep-mtu",
        "vtep-down",
        "ip-forward-off",
        "cni0-addr-wrong",
        "pod-veth-down",
    ] {
        lab.kd(&["lab", "break", fault]);
        let broken = snapshot(&node);
        let out = repair(&["--apply", "--yes"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.code() != Some(0) || !text.contains("the findings it targeted are gone") {
            wrong.push(format!(
                "{fault}: apply: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // Exactly the healthy node again, as iproute2 shows it.
        for (h, r) in healthy.iter().zip(&snapshot(&node)) {
            if h != r {
                wrong.push(format!(
                    "{fault}: repaired state differs from healthy:\n  healthy  {h}\n  repaired {r}"
                ));
            }
        }
        if !ping_full(&bb, "10.2.0.42") {
            wrong.push(format!(
                "{fault}: busybox cannot reach the master's nginx pod after the repair"
            ));
        }
        let check = kd(&["check", "--node", "k8s-node-12", "--lab", LAB]);
        if check.status.code() != Some(0) {
            wrong.push(format!(
                "{fault}: check after repair: {}",
                String::from_utf8_lossy(&check.stdout)
            ));
        }
        if repair(&[]).status.code() != Some(0) {
            wrong.push(format!("{fault}: a second repair still plans something"));
        }
        // Undo the newest repair: exactly the broken state again.
        if let Err(e) = undo_newest(LAB) {
            wrong.push(format!("{fault}: undo: {e}"));
        }
        let again = snapshot(&node);
        for (b, a) in broken.iter().zip(&again) {
            if b != a {
                wrong.push(format!(
                    "{fault}: undo differs:\n  before {b}\n  after  {a}"
                ));
            }
        }
        lab.kd(&["lab", "heal"]);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // No lab fault turns VXLAN tx checksum offload on: done by hand here,
    // turned off by the repair (ethtool), back on by undo.
    let features = || in_ns_text(&node, &["ethtool", "-k", "flannel.1"]).1;
    let on = by_hand(
        &node,
        &["ethtool", "-K", "flannel.1", "tx-checksum-ip-generic", "on"],
        &[
            "ethtool",
            "-K",
            "flannel.1",
            "tx-checksum-ip-generic",
            "off",
        ],
        &features,
    );
    assert!(on.contains("tx-checksum-ip-generic: on"), "{on}");

    // An FDB entry for a VTEP MAC no node has (a node gone from the
    // cluster): the repair removes it, undo puts it back.
    let fdb = || in_ns_text(&node, &["bridge", "-j", "fdb", "show", "dev", "flannel.1"]).1;
    let stale = by_hand(
        &node,
        &[
            "bridge",
            "fdb",
            "append",
            "02:00:00:00:00:99",
            "dev",
            "flannel.1",
            "dst",
            "192.168.56.99",
            "self",
            "permanent",
        ],
        &[
            "bridge",
            "fdb",
            "del",
            "02:00:00:00:00:99",
            "dev",
            "flannel.1",
            "self",
        ],
        &fdb,
    );
    assert!(stale.contains("02:00:00:00:00:99"), "{stale}");

    // No lab fault deletes a policy rule: `ip rule del pref 32766` by hand
    // and the node routes nothing; the repair adds exactly that rule back.
    let rules = || {
        let ok = ping_full(&bb, "10.2.0.42");
        format!(
            "{} reachable {ok}",
            in_ns_text(&node, &["ip", "-4", "-j", "rule"]).1
        )
    };
    let without = by_hand(
        &node,
        &["ip", "rule", "del", "pref", "32766"],
        &["ip", "rule", "add", "pref", "32766", "lookup", "main"],
        &rules,
    );
    assert!(without.ends_with("reachable false"), "{without}");
    let out = repair(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "healthy again after by_hand");

    // No lab fault adds a route that takes part of a peer's pod CIDR: by
    // hand, the master's nginx pod (10.2.0.42) is sent out of eth0. The
    // trace sees the kernel's choice, and the repair deletes that route.
    let shadow = || {
        let ok = ping_full(&bb, "10.2.0.42");
        format!(
            "{} reachable {ok}",
            in_ns_text(&node, &["ip", "-4", "-j", "route", "show", "table", "main"]).1
        )
    };
    let trace = |want: Option<i32>| {
        let out = kd(&[
            "trace",
            "test-net/busybox-deployment-5db9ff768-zrlxw",
            "test-svc-ns/nginx-56d58c56c7-zl6ms",
            "--lab",
            LAB,
        ]);
        assert_eq!(
            out.status.code(),
            want,
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        in_ns(&node, &["ip", "route", "add", "10.2.0.0/25", "dev", "eth0"])
            .status
            .success()
    );
    let said = trace(Some(1));
    assert!(said.contains("finding route-shadows-pod-cidr"), "{said}");
    assert!(
        in_ns(&node, &["ip", "route", "del", "10.2.0.0/25"])
            .status
            .success()
    );
    trace(Some(0));
    let shadowed = by_hand(
        &node,
        &["ip", "route", "add", "10.2.0.0/25", "dev", "eth0"],
        &["ip", "route", "del", "10.2.0.0/25"],
        &shadow,
    );
    assert!(shadowed.ends_with("reachable false"), "{shadowed}");

    // The same in a table a rule looks up before main (a VPN's default
    // route, say): the kernel never reaches flannel's routes.
    let table100 = || {
        let ok = ping_full(&bb, "10.2.0.42");
        // iproute2 prints a lone "[" for a table that never existed.
        let (_, text) = in_ns_text(&node, &["ip", "-4", "-j", "route", "show", "table", "100"]);
        let routes: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        format!("{routes:?} reachable {ok}")
    };
    let taken = by_hand(
        &node,
        &[
            "sh",
            "-c",
            "ip rule add pref 100 lookup 100 && ip route add default via 192.168.56.254 table 100",
        ],
        &["sh", "-c", "ip route flush table 100; ip rule del pref 100"],
        &table100,
    );
    assert!(taken.ends_with("reachable false"), "{taken}");

    // A pod veth whose node end takes less than the pod sends: full-size
    // frames between the pods on k8s-node-12 are dropped; the repair sets
    // the MTU back.
    let (_, ports) = in_ns_text(&node, &["ip", "-j", "link", "show", "master", "cni0"]);
    let ports: serde_json::Value = serde_json::from_str(&ports).unwrap();
    let veth = ports[0]["ifname"].as_str().unwrap().to_string();
    let veth_mtu = || {
        let ok = ping_full(&bb, "10.2.2.132");
        format!(
            "{} reachable {ok}",
            in_ns_text(&node, &["ip", "-j", "link", "show", &veth]).1
        )
    };
    let small = by_hand(
        &node,
        &["ip", "link", "set", &veth, "mtu", "1400"],
        &["ip", "link", "set", &veth, "mtu", "1450"],
        &veth_mtu,
    );
    assert!(small.ends_with("reachable false"), "{small}");

    // One repair at a time: with the lock held, a second is refused.
    lab.kd(&["lab", "break", "route-missing"]);
    let _ = repair(&["--history"]);
    let lock = format!("/run/knetdoctor/lab/{LAB}/repair/k8s-node-12/lock");
    let mut holder = std::process::Command::new("flock")
        .args([&lock, "sleep", "5"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = repair(&["--apply", "--yes"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another repair of this node is running")
    );
    // Nothing was changed: the route is still missing.
    assert_eq!(repair(&[]).status.code(), Some(1));
}

#[test]
fn a_repair_that_fails_part_way_stops_and_its_journal_undoes_the_applied_part() {
    use knetdoctor::check::RepairAction;
    use knetdoctor::dataplane::Netns;
    use knetdoctor::repair::apply;
    use knetdoctor::repair::plan::{Category, Owner, Step};
    let lab = Lab::up("fixpart", &[]);
    let node = lab.node("k8s-node-12");
    lab.kd(&["lab", "break", "route-missing"]);
    let broken = snapshot(&node);
    let netns = Netns::named(node.clone());
    let state = knetdoctor::dataplane::read_node_state(&netns).unwrap();
    let step = |action: RepairAction, category| Step {
        action,
        category,
        owner: Owner::Flannel,
        finding: knetdoctor::check::FindingId::RouteMissing,
        why: "test".into(),
        replaces: String::new(),
        iptables: None,
        nftables: None,
    };
    // The second action is impossible: VXLAN refuses an MTU above what its
    // underlay allows.
    let steps = [
        step(route_to_master(), Category::Routes),
        step(
            RepairAction::LinkMtu {
                dev: "flannel.1".into(),
                mtu: 9000,
            },
            Category::Links,
        ),
        step(
            RepairAction::Sysctl {
                key: "net.ipv4.ip_forward".into(),
                value: "0".into(),
            },
            Category::Sysctl,
        ),
    ];
    let dir = std::env::temp_dir().join(format!("kd-repair-part-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let j = apply::apply(&netns, "k8s-node-12", &steps, &state, &dir).unwrap();
    let flags: Vec<(bool, bool)> = j
        .entries
        .iter()
        .map(|e| (e.applied, e.error.is_some()))
        .collect();
    assert_eq!(
        flags,
        [(true, false), (false, true), (false, false)],
        "{j:#?}"
    );
    // The route was made, ip_forward untouched (the repair stopped).
    let (_, route) = in_ns_text(&node, &["ip", "route", "show", "10.2.0.0/24"]);
    assert!(
        route.contains("via 10.2.0.0 dev flannel.1 onlink"),
        "{route}"
    );
    assert_eq!(
        in_ns_text(&node, &["sysctl", "-n", "net.ipv4.ip_forward"])
            .1
            .trim(),
        "1"
    );
    // The journal on disk says the same, and undo puts the node back.
    let history = knetdoctor::repair::journal::history(&dir);
    assert_eq!(history.len(), 1);
    assert!(history[0].entries[1].error.is_some());
    apply::undo(&netns, &dir, &j.id).unwrap();
    assert_eq!(snapshot(&node), broken);
    assert!(apply::undo(&netns, &dir, &j.id).is_err(), "undo twice");

    // A failure inside a pipelined run of overlay entries: VXLAN refuses
    // an IPv6 remote on an IPv4 VTEP. The rest of the datagram it went out
    // in is still made (the kernel goes on) and journaled as made; nothing
    // is sent after the failure is seen — not the route, which waits for
    // the entries before it — and undo puts the node back.
    let mut overlay = vec![
        step(
            RepairAction::NeighReplace {
                dev: "flannel.1".into(),
                ip: "10.2.0.0".parse().unwrap(),
                mac: "02:00:00:00:00:01".parse().unwrap(),
            },
            Category::Neigh,
        ),
        step(
            RepairAction::FdbReplace {
                dev: "flannel.1".into(),
                mac: "02:00:00:00:00:01".parse().unwrap(),
                dst: "fd00::1".parse().unwrap(),
            },
            Category::Fdb,
        ),
        step(route_to_master(), Category::Routes),
    ];
    // Enough entries after it that some are never sent.
    for k in 0..500 {
        overlay.push(step(
            RepairAction::NeighReplace {
                dev: "flannel.1".into(),
                ip: format!("10.3.{}.{}", k / 250, k % 250 + 1).parse().unwrap(),
                mac: "02:00:00:00:01:00".parse().unwrap(),
            },
            Category::Neigh,
        ));
    }
    let state = knetdoctor::dataplane::read_node_state(&netns).unwrap();
    let j = apply::apply(&netns, "k8s-node-12", &overlay, &state, &dir).unwrap();
    let failed: Vec<usize> = (0..j.entries.len())
        .filter(|&k| j.entries[k].error.is_some())
        .collect();
    assert_eq!(failed, [1], "{:?}", j.entries[1]);
    assert!(j.entries[0].applied);
    assert!(
        !j.entries[2].applied,
        "the route went out after the failure"
    );
    let applied = j.entries.iter().filter(|e| e.applied).count();
    assert!(
        applied < j.entries.len() - 1,
        "nothing stopped after the failure"
    );
    // What the journal says was made is what the kernel holds.
    let (_, neighs) = in_ns_text(
        &node,
        &["ip", "-4", "-j", "neigh", "show", "dev", "flannel.1"],
    );
    let held: Vec<serde_json::Value> = serde_json::from_str(&neighs).unwrap();
    let ours = held
        .iter()
        .filter(|n| n["dst"].as_str().unwrap().starts_with("10.3."))
        .count();
    let journaled = j.entries[3..].iter().filter(|e| e.applied).count();
    assert_eq!(ours, journaled, "{neighs}");
    let id = j.id.clone();
    let loaded = knetdoctor::repair::journal::history(&dir)
        .into_iter()
        .find(|h| h.id == id)
        .unwrap();
    assert_eq!(loaded.entries.iter().filter(|e| e.applied).count(), applied);
    apply::undo(&netns, &dir, &id).unwrap();
    assert_eq!(snapshot(&node), broken);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The node's iptables as `iptables-save` of `tool` shows them: chain
/// declarations sorted (iptables-nft lists a re-created chain last), the
/// rules of each chain in order, counters and the dump's comments left out.
fn iptables_snapshot(node_ns: &str, tool: &str) -> Vec<String> {
    let (ok, text) = in_ns_text(node_ns, &[tool]);
    assert!(ok, "{tool}: {text}");
    let mut tables = Vec::new();
    let (mut chains, mut rules): (Vec<String>, Vec<(String, String)>) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(decl) = line.strip_prefix(':') {
            let name_policy: Vec<&str> = decl.split_whitespace().take(2).collect();
            chains.push(format!(":{}", name_policy.join(" ")));
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split_whitespace().next().unwrap_or_default();
            rules.push((chain.to_string(), line.to_string()));
        } else if line == "COMMIT" {
            chains.sort();
            rules.sort_by(|a, b| a.0.cmp(&b.0));
            tables.append(&mut chains);
            tables.extend(rules.drain(..).map(|(_, r)| r));
            tables.push(line.to_string());
        } else {
            tables.push(line.to_string());
        }
    }
    tables
}

/// The node's iptables (`tool`) and, in nftables mode, kube-proxy's table.
fn rules_snapshot(node_ns: &str, tool: &str) -> Vec<String> {
    let mut v = iptables_snapshot(node_ns, tool);
    v.extend(nft_snapshot(node_ns));
    v.extend(nft_table_snapshot(node_ns, "flannel-ipv4"));
    v
}

/// The first difference between two snapshots, for a readable failure.
fn first_difference(a: &[String], b: &[String]) -> Option<String> {
    let n = a.len().max(b.len());
    (0..n)
        .find(|&i| a.get(i) != b.get(i))
        .map(|i| format!("line {i}: {:?} vs {:?}", a.get(i), b.get(i)))
}

/// flannel's chains are restored by default, kube-proxy's with
/// `--include kube-proxy`, through `iptables-restore --noflush` of the
/// backend the node uses (or in nftables mode kube-proxy's table through
/// `nft -j -f`); the path works again, the node's rules are the healthy
/// ones, and undo puts back the broken rules exactly.
fn chains_are_restored_and_undone(lab_name: &str, backend: &str, kube_proxy_mode: &str) {
    // The nftables lab runs flannel in its nftables mode too.
    let nft = kube_proxy_mode == "nftables";
    let mut args = vec!["--iptables", backend, "--kube-proxy-mode", kube_proxy_mode];
    if nft {
        args.push("--flannel-nftables");
    }
    let lab = Lab::up(lab_name, &args);
    let node = lab.node("k8s-node-12");
    let save = format!("iptables-{backend}-save");
    let iptables_snapshot = |ns: &str, tool: &str| rules_snapshot(ns, tool);
    // The mode is what the kernel holds, seen by the standard tools.
    let kube_chains = iptables_snapshot(&node, &save)
        .iter()
        .any(|l| l.starts_with(":KUBE-SERVICES"));
    let table = !nft_snapshot(&node).is_empty();
    assert_eq!(
        (kube_chains, table),
        (kube_proxy_mode == "iptables", kube_proxy_mode == "nftables")
    );
    let flannel_chains = iptables_snapshot(&node, &save)
        .iter()
        .any(|l| l.starts_with(":FLANNEL-POSTRTG"));
    let flannel_table = !nft_table_snapshot(&node, "flannel-ipv4").is_empty();
    assert_eq!((flannel_chains, flannel_table), (!nft, nft));
    let (bb, n12, out) = (lab.pod(BUSYBOX), lab.pod(NGINX_NODE12), lab.outside());
    let repair = |extra: &[&str]| {
        let mut a = vec!["repair", "--node", "k8s-node-12", "--lab", lab_name];
        a.extend_from_slice(extra);
        kd(&a)
    };
    let healthy = iptables_snapshot(&node, &save);
    let clusterip_always = || {
        (0..8).all(|_| {
            in_ns(&bb, &["curl", "-sf", "-m", "1", "http://10.1.59.153/"])
                .status
                .success()
        })
    };
    type Works<'a> = Box<dyn Fn() -> bool + 'a>;
    let cases: Vec<(&str, bool, Works)> = vec![
        (
            "forward-drop",
            false,
            Box::new(|| ping_full(&n12, "10.2.0.42")),
        ),
        (
            "masq-missing",
            false,
            Box::new(|| ping(&n12, "192.168.56.254")),
        ),
        ("svc-chain-missing", true, Box::new(clusterip_always)),
        ("sep-stale", true, Box::new(clusterip_always)),
        (
            "nodeport-missing",
            true,
            Box::new(|| curl(&out, "http://192.168.56.12:30005/", None).is_some()),
        ),
    ];
    let mut wrong = Vec::new();
    // flannel's nftables table cannot outvote an iptables FORWARD DROP:
    // a person's change, planned as such.
    if nft {
        lab.kd(&["lab", "break", "forward-drop"]);
        let plan = repair(&[]);
        let text = String::from_utf8_lossy(&plan.stdout).to_string();
        if !text.contains("0 action(s)") || !text.contains("iptables -P FORWARD ACCEPT") {
            wrong.push(format!("forward-drop with flannel's nftables mode: {text}"));
        }
        lab.kd(&["lab", "heal"]);
    }
    for (fault, kube_proxy, works) in cases.iter().filter(|c| !(nft && c.0 == "forward-drop")) {
        lab.kd(&["lab", "break", fault]);
        let broken = iptables_snapshot(&node, &save);
        if *kube_proxy {
            // Left to kube-proxy unless asked: nothing is applied.
            let out = repair(&["--apply", "--yes"]);
            let text = String::from_utf8_lossy(&out.stdout);
            if out.status.code() != Some(1) || !text.contains("nothing to repair") {
                wrong.push(format!("{fault}: applied without --include: {text}"));
            }
            if iptables_snapshot(&node, &save) != broken {
                wrong.push(format!("{fault}: changed without --include"));
            }
        }
        let mut args = vec!["--apply", "--yes"];
        if *kube_proxy {
            args.extend_from_slice(&["--include", "kube-proxy"]);
        }
        let out = repair(&args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.code() != Some(0) || !text.contains("the findings it targeted are gone") {
            wrong.push(format!(
                "{fault}: apply: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // The healthy rules again; flannel does not set FORWARD's policy,
        // so after forward-drop it stays DROP, its accept rules back.
        let mut repaired = iptables_snapshot(&node, &save);
        if *fault == "forward-drop" {
            for l in repaired.iter_mut().filter(|l| *l == ":FORWARD DROP") {
                *l = ":FORWARD ACCEPT".into();
            }
        }
        if let Some(d) = first_difference(&healthy, &repaired) {
            wrong.push(format!("{fault}: repaired rules differ from healthy: {d}"));
        }
        if !works() {
            wrong.push(format!("{fault}: the path still fails after the repair"));
        }
        let check = kd(&["check", "--node", "k8s-node-12", "--lab", lab_name]);
        if check.status.code() != Some(0) {
            wrong.push(format!(
                "{fault}: check after repair: {}",
                String::from_utf8_lossy(&check.stdout)
            ));
        }
        let mut again = vec![];
        if *kube_proxy {
            again.extend_from_slice(&["--include", "kube-proxy"]);
        }
        if repair(&again).status.code() != Some(0) {
            wrong.push(format!("{fault}: a second repair still plans something"));
        }
        if let Err(e) = undo_newest(lab_name) {
            wrong.push(format!("{fault}: undo: {e}"));
        }
        if let Some(d) = first_difference(&broken, &iptables_snapshot(&node, &save)) {
            wrong.push(format!("{fault}: undo differs from the broken rules: {d}"));
        }
        lab.kd(&["lab", "heal"]);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn apply_restores_chains_with_iptables_nft() {
    chains_are_restored_and_undone("fixnft", "nft", "iptables");
}

/// The same faults and repairs with kube-proxy in nftables mode: its
/// faults are made to `table ip kube-proxy`, and repaired by writing it.
#[test]
fn apply_restores_kube_proxys_nftables_table() {
    chains_are_restored_and_undone("fixnftmode", "nft", "nftables");
}

#[test]
fn apply_restores_chains_with_iptables_legacy() {
    chains_are_restored_and_undone("fixlegacy", "legacy", "iptables");
}

/// flannel's route on k8s-node-12 to the master's pod CIDR.
fn route_to_master() -> knetdoctor::check::RepairAction {
    knetdoctor::check::RepairAction::RouteReplace {
        dst: "10.2.0.0/24".parse().unwrap(),
        gateway: "10.2.0.0".parse().unwrap(),
        dev: "flannel.1".into(),
        onlink: true,
    }
}

/// flannel.1 as the kernel describes it, without what changes when a device
/// is made anew (its index): VXLAN attributes, MAC, MTU, state, address,
/// and the neigh, FDB and route entries on it.
fn vtep_snapshot(node_ns: &str) -> String {
    let (_, link) = in_ns_text(node_ns, &["ip", "-d", "-j", "link", "show", "flannel.1"]);
    let l: serde_json::Value = serde_json::from_str(&link).unwrap();
    let l = &l[0];
    let v = &l["linkinfo"]["info_data"];
    let mut out = format!(
        "mac {} mtu {} {} vni {} local {} link {} port {} learning {}\n",
        l["address"],
        l["mtu"],
        l["operstate"],
        v["id"],
        v["local"],
        v["link"],
        v["port"],
        v["learning"]
    );
    let (_, offload) = in_ns_text(node_ns, &["ethtool", "-k", "flannel.1"]);
    out.push_str(
        offload
            .lines()
            .find(|l| l.contains("tx-checksum-ip-generic"))
            .unwrap_or("no offload line"),
    );
    out.push('\n');
    for argv in [
        &["ip", "-4", "-j", "addr", "show", "dev", "flannel.1"][..],
        &["ip", "-4", "-j", "route", "show", "dev", "flannel.1"],
        &["ip", "-4", "-j", "neigh", "show", "dev", "flannel.1"],
        &["bridge", "-j", "fdb", "show", "dev", "flannel.1"],
    ] {
        let (_, text) = in_ns_text(node_ns, argv);
        let mut items: Vec<String> = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(v)) => v
                .into_iter()
                .map(|mut x| {
                    if let Some(o) = x.as_object_mut() {
                        for k in [
                            "ifindex",
                            "used",
                            "updated",
                            "stats64",
                            "valid_life_time",
                            "preferred_life_time",
                        ] {
                            o.remove(k);
                        }
                        if let Some(a) = o.get_mut("addr_info").and_then(|a| a.as_array_mut()) {
                            for i in a.iter_mut().filter_map(|i| i.as_object_mut()) {
                                i.remove("valid_life_time");
                                i.remove("preferred_life_time");
                            }
                        }
                    }
                    x.to_string()
                })
                .collect(),
            _ => vec![text],
        };
        items.sort();
        out.push_str(&format!("{argv:?}: {}\n", items.join(" ")));
    }
    out
}

/// A flannel.1 made with the wrong VNI (no lab fault does this): nothing
/// corrects a VNI in place, so the repair recreates the device as flanneld
/// does — its MAC, address, MTU — and programs every peer again; undo puts
/// the wrong device back with its entries.
#[test]
fn a_vtep_with_the_wrong_vni_is_made_anew_and_undone() {
    let lab = Lab::up("vtep", &[]);
    let node = lab.node("k8s-node-12");
    let bb = lab.pod(BUSYBOX);
    let healthy = vtep_snapshot(&node);
    assert!(healthy.contains("vni 1 "), "{healthy}");
    let sh = |script: &str| {
        let out = in_ns(&node, &["sh", "-c", script]);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The same device with VNI 2, every peer's entries put back on it.
    let (_, neigh) = in_ns_text(&node, &["ip", "-4", "neigh", "show", "dev", "flannel.1"]);
    let (_, fdb) = in_ns_text(&node, &["bridge", "fdb", "show", "dev", "flannel.1"]);
    let (_, routes) = in_ns_text(&node, &["ip", "-4", "route", "show", "dev", "flannel.1"]);
    let (_, mac) = in_ns_text(&node, &["cat", "/sys/class/net/flannel.1/address"]);
    let mut script = format!(
        "ip link del flannel.1 && ip link add flannel.1 address {} type vxlan id 2 local 192.168.56.12 dev eth0 dstport 8472 nolearning && ip link set flannel.1 mtu 1450 up && ip addr add 10.2.2.0/32 dev flannel.1 && ethtool -K flannel.1 tx-checksum-ip-generic off >/dev/null",
        mac.trim()
    );
    for l in neigh.lines().filter(|l| l.contains("lladdr")) {
        let w: Vec<&str> = l.split_whitespace().collect();
        script.push_str(&format!(
            " && ip neigh replace {} lladdr {} dev flannel.1 nud permanent",
            w[0], w[2]
        ));
    }
    for l in fdb.lines().filter(|l| l.contains(" dst ")) {
        let w: Vec<&str> = l.split_whitespace().collect();
        let dst = w[w.iter().position(|x| *x == "dst").unwrap() + 1];
        script.push_str(&format!(
            " && bridge fdb replace {} dev flannel.1 dst {dst} self permanent",
            w[0]
        ));
    }
    for l in routes.lines().filter(|l| l.contains(" via ")) {
        script.push_str(&format!(
            " && ip route replace {} dev flannel.1",
            l.trim().replace(" dev flannel.1", "")
        ));
    }
    sh(&script);
    let broken = vtep_snapshot(&node);
    assert!(broken.contains("vni 2 "), "{broken}");
    assert!(!ping_full(&bb, "10.2.0.42"), "VNI 2 still reaches VNI 1");
    let out = kd(&[
        "check",
        "--lab",
        "vtep",
        "--node",
        "k8s-node-12",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["vtep-config-wrong"], "{v:#}");

    let repair = |extra: &[&str]| {
        let mut a = vec!["repair", "--node", "k8s-node-12", "--lab", "vtep"];
        a.extend_from_slice(extra);
        kd(&a)
    };
    let out = repair(&["--apply", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ping_full(&bb, "10.2.0.42"),
        "the repaired VTEP carries no traffic"
    );
    assert_eq!(vtep_snapshot(&node), healthy);
    undo_newest("vtep").unwrap();
    assert_eq!(vtep_snapshot(&node), broken);
    assert!(!ping_full(&bb, "10.2.0.42"));
}
