//! The lab run by the real control plane, at both versions: etcd,
//! kube-apiserver and kube-controller-manager on k8s-master-10 (RBAC, the
//! default admission plugins, a per-lab PKI), the real kube-proxy on every
//! node, Endpoints from the real controllers. `check` is clean on it, every
//! path works (ping, curl, dig through `lab status`), the real kube-proxy's
//! own layout is what the nodes hold, a dataplane fault gives exactly its
//! finding and heals, and `lab down` stops every component.

mod common;
use common::*;

fn cp_lab(name: &str, version: &str) {
    let lab = Lab::up(name, &["--control-plane", "--k8s", version]);
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("/run/knetdoctor/lab/{name}/state.json")).unwrap(),
    )
    .unwrap();
    let roles: Vec<&str> = state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    for role in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "forwarder",
        "kubelets",
    ] {
        assert!(roles.contains(&role), "{version}: no {role} in {roles:?}");
    }
    assert_eq!(roles.iter().filter(|r| **r == "kube-proxy").count(), 3);

    // Judged against the real component's output: clean, and every path works.
    let out = kd(&["check", "--lab", name]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{version}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status = kd(&["lab", "status", "--name", name]);
    assert_eq!(
        status.status.code(),
        Some(0),
        "{version}: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    // The rules are kube-proxy's own, in its version's layout.
    let (_, nat) = in_ns_text(&lab.node("k8s-node-12"), &["iptables-save", "-t", "nat"]);
    match version {
        "1.20" => assert!(
            nat.contains("-A KUBE-SERVICES ! -s 10.2.0.0/16 -d 10.1.59.153/32 -p tcp -m comment --comment \"test-svc-ns/linux0224-nginx cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ"),
            "{nat}"
        ),
        _ => assert!(nat.contains("-j KUBE-EXT-"), "{nat}"),
    }
    // The live cluster through the forwarder, with the host's kubeconfig.
    let kubeconfig = format!("/run/knetdoctor/lab/{name}/cp/pki/admin.kubeconfig");
    let out = kd(&["check", "--kubeconfig", &kubeconfig, "--lab", name]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for node in ["k8s-master-10", "k8s-node-11", "k8s-node-12"] {
        let out = kd(&[
            "trace",
            "192.168.56.254",
            &format!("{node}:30005"),
            "--lab",
            name,
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // A dataplane fault gives its finding; heal makes the node clean again.
    lab.kd(&["lab", "break", "route-missing"]);
    let out = kd(&["check", "--lab", name, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["route-missing"], "{version}");
    lab.kd(&["lab", "heal"]);
    assert_eq!(kd(&["check", "--lab", name]).status.code(), Some(0));
    // kube-proxy's rules belong to kube-proxy here.
    let refused = kd(&["lab", "break", "svc-chain-missing", "--name", name]);
    assert_eq!(refused.status.code(), Some(2));

    let pids: Vec<i32> = state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_i64().unwrap() as i32)
        .collect();
    drop(lab);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z")),
            "{version}: process {pid} outlived lab down"
        );
    }
}

#[test]
fn the_real_control_plane_at_1_20() {
    cp_lab("cpa", "1.20");
}

#[test]
fn the_real_control_plane_at_1_32() {
    cp_lab("cpb", "1.32");
}
