//! `lab tour` runs without a terminal (as in CI): every step printed before
//! it runs, each ending as the tour says, and the lab left as it found it —
//! checked with iproute2 and ping, not only with knetdoctor.

mod common;
use common::*;

#[test]
fn the_tour_breaks_sees_repairs_undoes_and_heals_one_route() {
    let lab = Lab::up("tour", &[]);
    let node12 = lab.node("k8s-node-12");
    let routes = || -> Vec<String> {
        let out = in_ns(&node12, &["ip", "-j", "route", "show", "dev", "flannel.1"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["dst"].as_str().unwrap().to_string())
            .collect()
    };
    let before = routes();
    assert!(before.contains(&"10.2.0.0/24".to_string()), "{before:?}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_knetdoctor"))
        .args(["lab", "tour", "--name", "tour"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each command is printed before what it prints, in the tour's order.
    let commands = [
        "$ knetdoctor lab break route-missing --node k8s-node-12 --peer k8s-master-10 --name tour",
        "$ knetdoctor check --lab tour",
        "$ knetdoctor trace ",
        "$ knetdoctor repair --node k8s-node-12 --lab tour",
        "$ knetdoctor repair --node k8s-node-12 --apply --yes --lab tour",
        "$ knetdoctor repair --node k8s-node-12 --undo ",
        "$ knetdoctor lab heal --name tour",
    ];
    let mut at = 0;
    for c in commands {
        let found = text[at..]
            .find(c)
            .unwrap_or_else(|| panic!("{c:?} not after byte {at}:\n{text}"));
        at += found + c.len();
    }
    // What the commands printed: the finding, the drop, the repair.
    for seen in ["route-missing", "10.2.0.0/24", "journal"] {
        assert!(text.contains(seen), "{seen}:\n{text}");
    }
    // Left as found: the route back (iproute2's word), the path working,
    // no fault recorded.
    assert_eq!(routes(), before);
    assert!(ping_full(&lab.pod(NGINX_NODE12), "10.2.0.42"));
    let status: serde_json::Value =
        serde_json::from_str(&lab.kd(&["lab", "status", "--no-probe", "-o", "json"])).unwrap();
    assert_eq!(
        status["faults"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );

    // A lab with a fault already in it is refused, not toured.
    lab.kd(&["lab", "break", "vtep-mtu"]);
    let refused = kd(&["lab", "tour", "--name", "tour"]);
    assert_ne!(refused.status.code(), Some(0));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("lab heal"), "{err}");
}
