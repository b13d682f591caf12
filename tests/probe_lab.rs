//! `trace --probe` on the lab: a real packet from the source's namespace,
//! captured on every interface of the predicted path on both nodes and
//! traced through netfilter. Healthy: it gets an answer on every path the
//! static trace calls reachable. Under each fault: no answer, and the
//! packet was last seen exactly where the static trace drops it. Nothing
//! the probe adds for tracing stays behind.

mod common;
use common::probe_cases::*;
use common::*;

const LAB: &str = "probe";

/// The probe's JSON (`{"trace", "probe"}`) and the exit code.
fn probe(args: &[&str]) -> (serde_json::Value, Option<i32>) {
    let mut a = vec!["trace"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--lab", LAB, "--probe", "-o", "json"]);
    let out = kd(&a);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (v, out.status.code())
}

fn summary(v: &serde_json::Value) -> String {
    let p = &v["probe"];
    format!(
        "reply {} ({}), last seen {}, lost before {}, disagreement {}",
        p["reply"]["kind"],
        p["reply"]["detail"],
        p["judgement"]["last_seen"],
        p["judgement"]["lost_before"],
        p["judgement"]["disagreement"]
    )
}

fn no_probe_tables_left(lab: &Lab) {
    for node in ["k8s-master-10", "k8s-node-11", "k8s-node-12"] {
        let (_, tables) = in_ns_text(&lab.node(node), &["nft", "list", "tables"]);
        assert!(!tables.contains("knetdoctor_probe"), "{node}: {tables}");
    }
}

#[test]
fn probes_agree_with_the_static_trace_healthy_and_under_every_fault() {
    let lab = Lab::up(LAB, &[]);
    let mut failures = Vec::new();
    let mut count = 0;
    let mut expect_reached = |args: &[&str]| {
        count += 1;
        let (v, code) = probe(args);
        let p = &v["probe"];
        if code != Some(0) || p["judgement"]["reached"] != true || p["judgement"]["agrees"] != true
        {
            failures.push(format!("{args:?}: exit {code:?}: {}", summary(&v)));
        }
    };
    // ICMP between pods (full-size, DF), TCP and DNS to Services, names,
    // the outside client to every NodePort and to the ingress host.
    for src in PODS {
        for dst in PODS.iter().filter(|d| **d != src) {
            expect_reached(&[src, dst, "--proto", "icmp"]);
        }
        expect_reached(&[src, "test-svc-ns/linux0224-nginx"]);
        expect_reached(&[src, "test-svc-ns/nodeport-service"]);
        // Nothing listens behind the API server's Service in the lab: the
        // master's own stack resets, which is the path working.
        expect_reached(&[src, "default/kubernetes"]);
        expect_reached(&[src, "kube-system/kube-dns", "--proto", "udp"]);
        expect_reached(&[src, "linux0224-nginx.test-svc-ns"]);
    }
    for node in ["k8s-master-10", "k8s-node-11", "k8s-node-12"] {
        expect_reached(&["192.168.56.254", &format!("{node}:30005")]);
        // From a pod: to its own node's NodePort and across the underlay.
        expect_reached(&[
            "test-net/busybox-deployment-5db9ff768-zrlxw",
            &format!("{node}:30005"),
        ]);
    }
    expect_reached(&["192.168.56.254", "http://aoligei.linux0224.com/"]);
    assert!(
        failures.is_empty(),
        "{} of {count} healthy probes failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // A cross-node pod-to-pod probe is seen on every predicted interface,
    // both ways, in order.
    let (v, _) = probe(&[
        "test-net/busybox-deployment-5db9ff768-zrlxw",
        "test-svc-ns/nginx-56d58c56c7-zl6ms",
        "--proto",
        "icmp",
    ]);
    let stations: Vec<(String, bool, bool)> = v["probe"]["judgement"]["stations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                format!(
                    "{}/{}",
                    s["station"]["node"].as_str().unwrap(),
                    s["station"]["device"].as_str().unwrap()
                ),
                s["request"].as_bool().unwrap(),
                s["reply"].as_bool().unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = stations.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names[1..6],
        [
            "k8s-node-12/flannel.1",
            "k8s-node-12/eth0",
            "k8s-master-10/eth0",
            "k8s-master-10/flannel.1",
            "k8s-master-10/cni0"
        ][..],
        "{stations:?}"
    );
    assert!(names[0].starts_with("k8s-node-12/veth") && names[6].starts_with("k8s-master-10/veth"));
    assert!(stations.iter().all(|s| s.1 && s.2), "{stations:?}");
    let inner_vxlan = v["probe"]["seen"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["at_iface"] == "k8s-node-12/eth0" && s["direction"] == "request")
        .unwrap()["packet"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        inner_vxlan.contains("192.168.56.12") && inner_vxlan.contains("10.2.2.50 > 10.2.0.42"),
        "{inner_vxlan}"
    );
    no_probe_tables_left(&lab);

    let (bb, master, n12) = (PROBE_BB, PROBE_MASTER, PROBE_N12);
    let cases = PROBE_FAULT_CASES;
    let mut wrong = Vec::new();
    for (fault, src, dst, extra, last) in cases {
        lab.kd(&["lab", "break", fault]);
        let mut args = vec![*src, *dst];
        args.extend_from_slice(extra);
        let (v, code) = probe(&args);
        let p = &v["probe"];
        let seen_last = p["judgement"]["last_seen"].as_str().unwrap_or("");
        // sep-stale: the kernel picks an endpoint at random; whichever it
        // took, the probe must fit that branch of the trace.
        let random = *fault == "sep-stale";
        if p["judgement"]["agrees"] != true
            || (!random && (code != Some(1) || p["judgement"]["reached"] != false))
            || (!random
                && seen_last != *last
                && !(last.ends_with("veth") && seen_last.starts_with(last)))
        {
            wrong.push(format!(
                "{fault}: {src} -> {dst}: exit {code:?}: {} (want last seen {last})",
                summary(&v)
            ));
        }
        if *fault == "forward-drop" {
            let drop = p["netfilter"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["node"] == "k8s-node-12")
                .flat_map(|n| n["hits"].as_array().unwrap())
                .any(|h| {
                    h["chain"] == "FORWARD"
                        && h["verdict"] == "drop"
                        && !h["reply"].as_bool().unwrap()
                });
            if !drop {
                wrong.push(format!(
                    "forward-drop: netfilter tracing did not show FORWARD's drop: {}",
                    p["netfilter"]
                ));
            }
        }
        lab.kd(&["lab", "heal"]);
    }
    // A NodePort nothing serves is refused, and the trace says so.
    let (v, code) = probe(&[bb, "k8s-master-10:30099"]);
    if code != Some(1) || v["probe"]["judgement"]["agrees"] != true {
        wrong.push(format!("unserved NodePort: exit {code:?}: {}", summary(&v)));
    }
    // A smaller flannel.1 MTU on the replying node: ICMP echo replies carry
    // no DF, so the kernel fragments them and they arrive; the trace agrees.
    lab.kd(&["lab", "break", "vtep-mtu"]);
    for _ in 0..5 {
        let (v, code) = probe(&[master, n12, "--proto", "icmp"]);
        let j = &v["probe"]["judgement"];
        if code != Some(0) || j["reached"] != true || j["agrees"] != true {
            wrong.push(format!(
                "vtep-mtu echo reply: exit {code:?}: {}",
                summary(&v)
            ));
        }
    }
    lab.kd(&["lab", "heal"]);
    no_probe_tables_left(&lab);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    a_probe_stopped_by_a_signal_leaves_no_table(&lab);
}

/// A probe waiting for its reply, stopped by Ctrl-C or `kill`, removes the
/// netfilter tracing tables it added on every node before it ends.
fn a_probe_stopped_by_a_signal_leaves_no_table(lab: &Lab) {
    use std::process::{Command, Stdio};
    lab.kd(&["lab", "break", "route-missing"]);
    for signal in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        let child = Command::new(BIN)
            .args([
                "trace",
                "test-net/busybox-deployment-5db9ff768-zrlxw",
                "test-svc-ns/nginx-56d58c56c7-zl6ms",
                "--proto",
                "icmp",
                "--probe",
                "--timeout",
                "30",
                "--lab",
                LAB,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let node = lab.node("k8s-node-12");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !in_ns_text(&node, &["nft", "list", "tables"])
            .1
            .contains("knetdoctor_probe")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the probe never added its table"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // The monitor subscribes and the echo goes out; then the signal.
        std::thread::sleep(std::time::Duration::from_millis(400));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "{signal}: the probe ran to its end");
        no_probe_tables_left(lab);
    }
    lab.kd(&["lab", "heal"]);
}
