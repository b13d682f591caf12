//! The kernel's drop reasons (skb:kfree_skb through tracefs) in the lab:
//! `trace --probe` names the reason and the function where the kernel
//! freed the probe's packet for the FORWARD policy drop, a missing route
//! and a packet too big for flannel.1, and `knetdoctor drops` counts them
//! live. Witnessed independently by the node's own counters: the FORWARD
//! policy's packet count, IpExt InNoRoutes, Ip FragFails.

mod common;
use common::probe_cases::*;
use common::*;

const LAB: &str = "drops";
const NODE: &str = "k8s-node-12";

/// A counter of the node's network stack (`/proc/net/snmp` or `netstat`).
fn counter(lab: &Lab, file: &str, group: &str, name: &str) -> u64 {
    let (ok, text) = in_ns_text(&lab.node(NODE), &["cat", file]);
    assert!(ok);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with(group)).collect();
    let (names, values) = (rows[0], rows[1]);
    let i = names.split_whitespace().position(|n| n == name).unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

fn forward_policy_drops(lab: &Lab) -> u64 {
    let (_, text) = in_ns_text(
        &lab.node(NODE),
        &["iptables", "-L", "FORWARD", "-v", "-x", "-n"],
    );
    let first = text.lines().next().unwrap_or_default().to_string();
    first
        .split("policy DROP ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The probe's kernel drops as `REASON function`.
fn probe_drops(args: &[&str]) -> (Vec<String>, serde_json::Value) {
    let mut a = vec!["trace"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--lab", LAB, "--probe", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&kd(&a).stdout).unwrap();
    let drops = v["probe"]["kernel_drops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["reason"].as_str().unwrap(),
                d["function"].as_str().unwrap()
            )
        })
        .collect();
    (drops, v)
}

#[test]
fn the_kernel_says_why_it_dropped_the_probe() {
    let lab = Lab::up(LAB, &[]);
    let healthy = probe_drops(&[PROBE_BB, PROBE_MASTER, "--port", "80"]).0;
    assert!(
        !healthy
            .iter()
            .any(|d| d.starts_with("NETFILTER_DROP") || d.contains("NOROUTES")),
        "{healthy:?}"
    );

    lab.kd(&["lab", "break", "forward-drop", "--node", NODE]);
    let before = forward_policy_drops(&lab);
    let (drops, v) = probe_drops(&[PROBE_BB, PROBE_MASTER, "--port", "80"]);
    assert!(
        drops.iter().any(|d| d.starts_with("NETFILTER_DROP ")),
        "{drops:?} {v}"
    );
    assert!(
        forward_policy_drops(&lab) > before,
        "the FORWARD policy dropped it"
    );
    // `drops` counts what the kernel drops while pings are refused.
    let watch = std::process::Command::new(BIN)
        .args(["drops", "--duration", "3", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(!ping(&lab.pod(BUSYBOX), "10.2.0.42"));
    let out = watch.wait_with_output().unwrap();
    let counts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        counts["counts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["reason"] == "NETFILTER_DROP" && c["count"].as_u64() >= Some(1)),
        "{counts}"
    );
    lab.kd(&["lab", "heal"]);

    lab.kd(&["lab", "break", "route-missing", "--node", NODE]);
    let before = counter(&lab, "/proc/net/netstat", "IpExt:", "InNoRoutes");
    let (drops, v) = probe_drops(&[PROBE_BB, PROBE_MASTER, "--port", "80"]);
    assert!(
        drops.iter().any(|d| d.starts_with("IP_INNOROUTES ")),
        "{drops:?} {v}"
    );
    assert!(counter(&lab, "/proc/net/netstat", "IpExt:", "InNoRoutes") > before);
    lab.kd(&["lab", "heal"]);

    lab.kd(&["lab", "break", "vtep-mtu", "--node", NODE]);
    let before = counter(&lab, "/proc/net/snmp", "Ip:", "FragFails");
    let (drops, v) = probe_drops(&[PROBE_BB, PROBE_MASTER, "--proto", "icmp"]);
    assert!(
        drops.iter().any(|d| d.starts_with("PKT_TOO_BIG ")),
        "{drops:?} {v}"
    );
    assert!(counter(&lab, "/proc/net/snmp", "Ip:", "FragFails") > before);
    let out = kd(&[
        "trace",
        PROBE_BB,
        PROBE_MASTER,
        "--proto",
        "icmp",
        "--lab",
        LAB,
        "--probe",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    // The second full-size probe is refused by the source's own kernel
    // (it learned the MTU): still the drop the trace predicts.
    assert!(
        text.contains("the real packet agrees with the trace"),
        "{text}"
    );
    lab.kd(&["lab", "heal"]);

    // Nothing of ours stays in tracefs.
    let left: Vec<String> = std::fs::read_dir("/sys/kernel/tracing/instances")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("knetdoctor-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
