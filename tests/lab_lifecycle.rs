//! `lab down` removes everything a lab made, also after a crash, and nothing
//! else; labs stand side by side; the scale knob builds a working lab.

mod common;
use common::*;
use std::process::Command;

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit_once(')').unwrap().1.trim_start().starts_with('Z'))
}

#[test]
fn down_after_a_crash_removes_everything_and_nothing_else() {
    require_root();
    // A namespace that merely shares the prefix text of another lab name,
    // and one that is not the lab's at all: both must survive.
    let bystanders = ["kdlab-crashkeep", "kdlabcrash-keep"];
    for b in bystanders {
        let _ = Command::new("ip").args(["netns", "del", b]).status();
        assert!(
            Command::new("ip")
                .args(["netns", "add", b])
                .status()
                .unwrap()
                .success()
        );
    }
    let lab = Lab::up("crash", &[]);
    let other = Lab::up("crash2", &[]);

    let pids = |lab: &str| -> Vec<u32> {
        let text =
            std::fs::read_to_string(format!("/run/knetdoctor/lab/{lab}/state.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pid"].as_u64().unwrap() as u32)
            .collect()
    };
    let ours = pids("crash");
    let theirs = pids("crash2");
    assert_eq!(ours.len(), 6);
    assert!(ours.iter().chain(&theirs).all(|p| alive(*p)));

    // Simulate a crash: the state file is gone, and a stray process runs in
    // one of the lab's namespaces (started outside knetdoctor).
    let state = std::path::Path::new("/run/knetdoctor/lab/crash/state.json");
    std::fs::remove_file(state).unwrap();
    let mut stray = Command::new("ip")
        .args(["netns", "exec", &lab.pod(BUSYBOX), "sleep", "300"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let stray_pid = stray.id();

    let out = kd_ok(&["lab", "down", "--name", "crash"]);
    assert!(out.contains("no state file"), "{out}");
    let _ = stray.wait();
    assert!(
        !alive(stray_pid),
        "the stray process in the lab was stopped"
    );
    assert!(namespaces_with("kdlab-crash-").is_empty());
    assert!(
        !std::path::Path::new("/etc/netns/kdlab-crash-pod-busybox-deployment-5db9ff768-zrlxw")
            .exists()
    );
    assert!(
        ours.iter().all(|p| !alive(*p)),
        "the lab's processes were stopped by namespace"
    );
    assert!(
        theirs.iter().all(|p| alive(*p)),
        "the other lab's processes survive"
    );

    // The neighbour lab still works, and the bystanders are untouched.
    assert!(ping_full(&other.pod(NGINX_NODE12), "10.2.0.42"));
    assert!(curl(&other.outside(), "http://192.168.56.11:30005/", None).is_some());
    for b in bystanders {
        assert_eq!(namespaces_with(b), [b.to_string()]);
        let _ = Command::new("ip").args(["netns", "del", b]).status();
    }
    // Down twice is harmless.
    kd_ok(&["lab", "down", "--name", "crash"]);
    drop(lab);
}

#[test]
fn scaled_lab_works() {
    let lab = Lab::up("scale", &["--nodes", "5", "--pods-per-node", "3"]);
    let status = kd(&["lab", "status", "--name", "scale", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 5);
    assert_eq!(v["pods"], 4 + 5 * 3);
    assert!(
        status.status.success(),
        "{}",
        serde_json::to_string_pretty(&v["paths"]).unwrap()
    );
    // Each node holds flannel entries for the 4 others (checked with iproute2).
    let (_, routes) = in_ns_text(
        &lab.node("k8s-node-14"),
        &["ip", "route", "show", "dev", "flannel.1"],
    );
    assert_eq!(routes.lines().count(), 4, "{routes}");
    let (_, fdb) = in_ns_text(
        &lab.node("k8s-node-14"),
        &["bridge", "fdb", "show", "dev", "flannel.1"],
    );
    assert_eq!(
        fdb.lines().filter(|l| l.contains("self permanent")).count(),
        4,
        "{fdb}"
    );
    // The ClusterIP spreads over all 15 nginx pods' endpoints.
    let objects =
        std::fs::read_to_string("/run/knetdoctor/lab/scale/cluster/endpointslices.json").unwrap();
    let slices: serde_json::Value = serde_json::from_str(&objects).unwrap();
    let nginx = slices["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metadata"]["name"] == "linux0224-nginx-lab01")
        .unwrap();
    assert_eq!(nginx["endpoints"].as_array().unwrap().len(), 15);
}

#[test]
fn up_rejects_bad_parameters_without_leaving_anything() {
    require_root();
    for (args, code) in [
        (vec!["--nodes", "2"], 2),
        (vec!["--nodes", "201"], 2),
        (vec!["--pods-per-node", "0"], 2),
    ] {
        let mut a = vec!["lab", "up", "--name", "bad"];
        a.extend(args.iter().copied());
        let out = kd(&a);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{a:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = kd(&["lab", "up", "--name", "Bad-Name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lower-case"));
    assert!(namespaces_with("kdlab-bad-").is_empty());
    assert!(!std::path::Path::new("/run/knetdoctor/lab/bad").exists());
}

#[test]
fn legacy_iptables_backend_works_too() {
    let lab = Lab::up("legacy", &["--iptables", "legacy"]);
    let status = kd(&["lab", "status", "--name", "legacy"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    // The rules are in x_tables, not nf_tables.
    let (_, legacy) = in_ns_text(
        &lab.node("k8s-node-12"),
        &["iptables-legacy-save", "-t", "nat"],
    );
    assert!(legacy.contains(":KUBE-SERVICES") && legacy.contains("FLANNEL-POSTRTG"));
    let (_, nft) = in_ns_text(
        &lab.node("k8s-node-12"),
        &["iptables-nft-save", "-t", "nat"],
    );
    assert!(!nft.contains("KUBE-SERVICES"));
    // Faults that rewrite iptables work on this backend as well.
    lab.kd(&["lab", "break", "nodeport-missing"]);
    assert!(curl(&lab.outside(), "http://192.168.56.12:30005/", None).is_none());
    lab.kd(&["lab", "heal"]);
    assert!(curl(&lab.outside(), "http://192.168.56.12:30005/", None).is_some());
}
