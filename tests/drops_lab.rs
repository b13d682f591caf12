//! The kernel's drop reasons (a BPF program on the kfree_skb tracepoint)
//! in the lab: `trace --probe` names the node, the reason and the function
//! where the kernel freed the probe's own packet for the FORWARD policy
//! drop, a missing route and a packet too big for flannel.1, and
//! `knetdoctor drops NODE -f FILTER` shows them live on that node only.
//! Witnessed independently by the node's own counters: the FORWARD
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

/// Whether `name` is a function of the running kernel, by /proc/kallsyms.
fn kernel_function(name: &str) -> bool {
    std::fs::read_to_string("/proc/kallsyms")
        .unwrap()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 3 && matches!(f[1], "T" | "t") && f[2] == name
        })
}

/// The probe's kernel drops as `NODE DIRECTION REASON function`.
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
                "{} {} {} {}",
                d["node"].as_str().unwrap(),
                d["direction"].as_str().unwrap(),
                d["reason"].as_str().unwrap(),
                d["function"].as_str().unwrap()
            )
        })
        .collect();
    (drops, v)
}

/// Without the privilege to load a BPF program the watch says why and
/// what to do, exit 3, rather than showing no drops.
#[test]
fn without_privilege_the_watch_says_why() {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["drops", "--duration", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("the kernel's drop reasons cannot be read") && err.contains("run as root"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn the_kernel_says_why_it_dropped_the_probe() {
    let lab = Lab::up(LAB, &[]);
    let healthy = probe_drops(&[PROBE_BB, PROBE_MASTER, "--port", "80"]).0;
    assert!(healthy.is_empty(), "{healthy:?}");

    lab.kd(&["lab", "break", "forward-drop", "--node", NODE]);
    let before = forward_policy_drops(&lab);
    let (drops, v) = probe_drops(&[PROBE_BB, PROBE_MASTER, "--port", "80"]);
    let netfilter = drops
        .iter()
        .find(|d| d.starts_with(&format!("{NODE} request NETFILTER_DROP ")))
        .unwrap_or_else(|| panic!("{drops:?} {v}"));
    // The function is the kernel's own (nf_hook_slow, or nft_do_chain
    // where nftables frees it): a text symbol of /proc/kallsyms.
    let function = netfilter.rsplit(' ').next().unwrap();
    assert!(kernel_function(function), "{function}");
    assert!(
        forward_policy_drops(&lab) > before,
        "the FORWARD policy dropped it"
    );
    // `drops NODE -f` shows what the kernel drops there while pings are
    // refused; a filter for other traffic, and another node, see none of it.
    // Each watch says on stderr once the kernel reports to it: the pings
    // start after all three have.
    let watch = |args: &[&str]| {
        let mut a = vec!["drops", "--lab", LAB, "--duration", "8", "-o", "json"];
        a.extend_from_slice(args);
        let mut child = std::process::Command::new(BIN)
            .args(a)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stderr = child.stderr.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut line).unwrap();
        assert!(line.starts_with("watching the kernel's drops"), "{line}");
        child
    };
    let on_node = watch(&[NODE, "-f", "icmp and host 10.2.0.42"]);
    let other_traffic = watch(&[NODE, "-f", "tcp port 9"]);
    let other_node = watch(&["k8s-node-11", "-f", "icmp"]);
    assert!(!ping(&lab.pod(BUSYBOX), "10.2.0.42"));
    let json = |c: std::process::Child| -> serde_json::Value {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let seen = json(on_node);
    let drops = seen["drops"].as_array().unwrap();
    assert!(
        drops.iter().any(|d| d["reason"] == "NETFILTER_DROP"
            && d["function"] == function
            && d["place"]["node"] == NODE
            && d["place"]["device"] == "cni0"
            && d["packet"]
                .as_str()
                .unwrap()
                .contains("> 10.2.0.42: ICMP echo request")),
        "{seen}"
    );
    assert!(drops.iter().all(|d| d["place"]["node"] == NODE), "{seen}");
    for quiet in [json(other_traffic), json(other_node)] {
        assert_eq!(quiet["drops"].as_array().unwrap().len(), 0, "{quiet}");
    }
    lab.kd(&["lab", "heal"]);

    lab.kd(&["lab", "break", "route-missing", "--node", NODE]);
    let before = counter(&lab, "/proc/net/netstat", "IpExt:", "InNoRoutes");
    let (drops, v) = probe_drops(&[PROBE_BB, PROBE_MASTER, "--port", "80"]);
    assert!(
        drops
            .iter()
            .any(|d| d.starts_with(&format!("{NODE} request IP_INNOROUTES "))),
        "{drops:?} {v}"
    );
    assert!(counter(&lab, "/proc/net/netstat", "IpExt:", "InNoRoutes") > before);
    lab.kd(&["lab", "heal"]);

    lab.kd(&["lab", "break", "vtep-mtu", "--node", NODE]);
    let before = counter(&lab, "/proc/net/snmp", "Ip:", "FragFails");
    let (drops, v) = probe_drops(&[PROBE_BB, PROBE_MASTER, "--proto", "icmp"]);
    assert!(
        drops
            .iter()
            .any(|d| d.starts_with(&format!("{NODE} request PKT_TOO_BIG "))),
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
}
