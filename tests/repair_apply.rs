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
        let history = String::from_utf8_lossy(&repair(&["--history"]).stdout).to_string();
        let id = history
            .lines()
            .last()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let undone = repair(&["--undo", &id]);
        if undone.status.code() != Some(0) {
            wrong.push(format!(
                "{fault}: undo: {}",
                String::from_utf8_lossy(&undone.stderr)
            ));
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
        finding: "test".into(),
        why: "test".into(),
        replaces: String::new(),
    };
    // The second action is impossible: VXLAN refuses an MTU above what its
    // underlay allows.
    let steps = [
        step(
            RepairAction::RouteReplace {
                dst: "10.2.0.0/24".into(),
                gateway: "10.2.0.0".into(),
                dev: "flannel.1".into(),
                onlink: true,
            },
            Category::Routes,
        ),
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
    let history = apply::history(&dir);
    assert_eq!(history.len(), 1);
    assert!(history[0].entries[1].error.is_some());
    apply::undo(&netns, &dir, &j.id).unwrap();
    assert_eq!(snapshot(&node), broken);
    assert!(apply::undo(&netns, &dir, &j.id).is_err(), "undo twice");
    let _ = std::fs::remove_dir_all(&dir);
}
