//! The knetdoctor agent on the lab run by the real control plane (issue 16):
//! the manifest applied to the real API server (its DaemonSet accepted by
//! a server-side dry run), one agent per node in the node's namespace with
//! a ServiceAccount token bound to its published pod, and the client run
//! with nothing but a kubeconfig (a copy in a directory of its own, no
//! --lab, not on a node). Judged against the local lab path and against
//! iproute2, ss and ping.

mod common;
use common::probe_cases::*;
use common::*;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const NODE: &str = "k8s-node-12";

/// The client: only a kubeconfig of its own reaches the cluster.
struct Client {
    _dir: tempfile::TempDir,
    kubeconfig: String,
    lab: String,
}

impl Client {
    fn new(lab: &str, user: &str) -> Client {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::copy(
            format!("/run/knetdoctor/lab/{lab}/cp/pki/{user}.kubeconfig"),
            &path,
        )
        .unwrap();
        Client {
            kubeconfig: path.to_str().unwrap().to_string(),
            _dir: dir,
            lab: lab.to_string(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).args(["--kubeconfig", &self.kubeconfig]);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `args` through the agents and on the lab's local path.
    fn both(&self, args: &[&str]) -> (Output, Output) {
        let local = kd(&[args, &["--lab", &self.lab]].concat());
        (self.run(args), local)
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// The node's overlay state as iproute2 prints it (independent of
/// knetdoctor's readers): main-table routes, flannel.1's neighbours and
/// FDB entries, each set in a fixed order (the kernel lists a re-added
/// entry last).
fn overlay(lab: &Lab) -> Vec<Vec<String>> {
    let ns = lab.node(NODE);
    [
        &["ip", "-j", "route", "show", "table", "main"][..],
        &[
            "ip",
            "-j",
            "neigh",
            "show",
            "dev",
            "flannel.1",
            "nud",
            "permanent",
        ],
        &["bridge", "-j", "fdb", "show", "dev", "flannel.1"],
    ]
    .iter()
    .map(|argv| {
        let (ok, out) = in_ns_text(&ns, argv);
        assert!(ok, "{argv:?}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let mut entries: Vec<String> = v
            .as_array()
            .map(|a| a.iter().map(|e| e.to_string()).collect())
            .unwrap_or_default();
        entries.sort();
        entries
    })
    .collect()
}

fn agent_pid(lab: &Lab, node: &str) -> i32 {
    lab.process_pid("knetdoctor-agent", node)
}

/// Restarts `node`'s agent, with `pause` (`POINT:FILE`) set for it, and
/// waits until the client reaches the node through it.
fn restart_agent(c: &Client, lab: &Lab, node: &str, pause: Option<&str>) {
    let mut start = Command::new(BIN);
    start.args(["lab", "agent", "start", "--node", node, "--name", &lab.name]);
    match pause {
        Some(p) => start.env("KNETDOCTOR_TEST_PAUSE", p),
        None => start.env_remove("KNETDOCTOR_TEST_PAUSE"),
    };
    let out = start.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    wait_until(
        "the agent announces itself",
        Duration::from_secs(10),
        || c.run(&["check", "--node", node]).status.code() != Some(3),
    );
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

fn wait_file(path: &std::path::Path) {
    wait_until(
        &format!("{} appears", path.display()),
        Duration::from_secs(30),
        || path.exists(),
    );
}

/// The findings of `check -o json` without their order.
fn findings(v: &serde_json::Value) -> Vec<String> {
    let mut f: Vec<String> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.to_string())
        .collect();
    f.sort();
    f
}

/// Compares what `read` gives through the agents and on the local path,
/// read again while they differ (kube-proxy and the controllers act on a
/// fault for a moment after it is injected): equal within 5 s and at
/// least three reads (a probe pair can take longer than 5 s by itself, and
/// a fault's effect can land between its two halves), or the parts that
/// differ.
fn agree(what: &str, mut read: impl FnMut() -> (serde_json::Value, serde_json::Value)) {
    let start = Instant::now();
    let mut reads = 0;
    loop {
        let (a, l) = read();
        reads += 1;
        if a == l {
            return;
        }
        if start.elapsed() > Duration::from_secs(5) && reads >= 3 {
            let keys: Vec<String> = match (a.as_object(), l.as_object()) {
                (Some(ao), Some(lo)) => ao
                    .keys()
                    .filter(|k| ao.get(*k) != lo.get(*k))
                    .map(|k| {
                        format!(
                            "{k}: agent {} / local {}",
                            ao[k.as_str()],
                            lo.get(k.as_str()).cloned().unwrap_or_default()
                        )
                    })
                    .collect(),
                _ => vec![format!("agent {a} / local {l}")],
            };
            panic!("{what}: the agents' answer differs:\n{}", keys.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// What the agents answer is what the local lab path answers: check,
/// inspect node (netns aside), and a trace across nodes.
fn same_answers(c: &Client, what: &str) {
    agree(&format!("{what}: check"), || {
        let (agent, local) = c.both(&["check", "-o", "json"]);
        let (a, l) = (json(&agent), json(&local));
        assert_eq!(a["not_read"], serde_json::json!([]), "{what}: {a}");
        let summary = |v: &serde_json::Value, o: &Output| serde_json::json!({"exit": o.status.code(), "nodes": v["nodes"], "findings": findings(v)});
        (summary(&a, &agent), summary(&l, &local))
    });
    agree(&format!("{what}: inspect node"), || {
        let (agent, local) = c.both(&["inspect", "node", NODE, "-o", "json"]);
        let (mut a, mut l) = (json(&agent), json(&local));
        for v in [&mut a, &mut l] {
            // Where it was read from, and what changes by the second.
            for k in ["netns", "conntrack_dns", "neighs"] {
                v.as_object_mut().unwrap().remove(k);
            }
        }
        (a, l)
    });
    let src = format!("test-net/{BUSYBOX}");
    let dst = format!("test-svc-ns/{NGINX_NODE11}");
    agree(&format!("{what}: trace"), || {
        let (agent, local) = c.both(&["trace", &src, &dst]);
        (text(&agent).into(), text(&local).into())
    });
}

/// What a probe found, without what changes from run to run (times,
/// source ports, counters, the order answers came in); for a Service
/// (`random`: the kernel picks the endpoint) only the verdict.
fn probe_shape(o: &Output, random: bool) -> serde_json::Value {
    let v = json(o);
    let p = &v["probe"];
    let j = &p["judgement"];
    if random {
        return serde_json::json!({"exit": o.status.code(), "reply": p["reply"]["kind"], "agrees": j["agrees"]});
    }
    let unanswered = p["reply"]["kind"] == "none";
    let sorted = |mut l: Vec<String>| {
        l.sort();
        l.dedup();
        l
    };
    let seen = sorted(
        p["seen"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{} {}", s["at_iface"], s["direction"]))
            .collect(),
    );
    let netfilter = sorted(
        p["netfilter"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|n| {
                // The rules that decided (a jump or return on the way is
                // detail a busy monitor may drop); without an answer only
                // the drops: a SYN retransmitted at the timeout's edge
                // passes as established where the reply got through.
                let decided = move |h: &&serde_json::Value| {
                    let verdicts: &[&str] = if unanswered {
                        &["drop", "reject"]
                    } else {
                        &["accept", "drop", "reject"]
                    };
                    verdicts.contains(&h["verdict"].as_str().unwrap_or(""))
                };
                n["hits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(decided)
                    .map(move |h| {
                        format!(
                            "{} reply={} {} {} {}",
                            n["node"], h["reply"], h["table"], h["chain"], h["verdict"]
                        )
                    })
            })
            .collect(),
    );
    serde_json::json!({
        "exit": o.status.code(),
        "reply": p["reply"]["kind"],
        "from": p["from_netns"],
        "judgement": [j["reached"], j["agrees"], j["last_seen"], j["lost_before"], j["disagreement"]],
        "seen": seen,
        "netfilter": netfilter,
        "not_captured": p["not_captured"],
    })
}

/// Puts the kernel state one probe leaves for the next back as it was:
/// waits until no namespace of the lab (node or pod) has a neighbour being
/// resolved (within 5 s), and forgets the path MTUs they learned.
fn settle(lab: &Lab) {
    let all = namespaces_with(&format!("kdlab-{}-", lab.name));
    for ns in &all {
        let _ = in_ns(ns, &["ip", "route", "flush", "cache"]);
    }
    wait_until(
        "no neighbour is being resolved",
        Duration::from_secs(5),
        || {
            all.iter().all(|ns| {
                let (ok, out) = in_ns_text(ns, &["ip", "neigh", "show", "nud", "incomplete"]);
                ok && out.trim().is_empty()
            })
        },
    );
}

/// `trace --probe` through the agents finds what the local probe finds,
/// healthy and under each fault that cuts a path from a pod: the same
/// frames on the same interfaces of every node, the same rules deciding,
/// the same reply; sent by the agent on the source's node. The outside
/// client's cases are left to the local probe test: it is on no node, and
/// two labs up at once reuse its address.
fn probes_agree(c: &Client, lab: &Lab, version: &str) {
    let owner = |src: &str| {
        if src == PROBE_BB {
            NODE
        } else {
            "k8s-master-10"
        }
    };
    let healthy: &[ProbeCase] = &[
        ("", PROBE_BB, PROBE_MASTER, &["--proto", "icmp"], ""),
        ("", PROBE_MASTER, PROBE_N12, &["--port", "80"], ""),
        ("", PROBE_BB, "test-svc-ns/linux0224-nginx", &[], ""),
        (
            "",
            PROBE_BB,
            "kube-system/kube-dns",
            &["--proto", "udp"],
            "",
        ),
    ];
    let cases = healthy
        .iter()
        .chain(PROBE_FAULT_CASES)
        .filter(|c| !c.1.starts_with(|ch: char| ch.is_ascii_digit()));
    let mut count = 0;
    for (fault, src, dst, extra, _) in cases {
        if !fault.is_empty() {
            lab.kd(&["lab", "break", fault, "--node", NODE]);
        }
        let mut args = vec!["trace", *src, *dst, "--probe", "-o", "json"];
        args.extend_from_slice(extra);
        let random = dst.contains("linux0224-nginx") || dst.contains("kube-dns");
        agree(&format!("{version} {fault} {src} -> {dst}: probe"), || {
            // Each from the same kernel state: a probe queued behind an
            // earlier one's unresolved neighbour gets that one's "host
            // unreachable" when its resolution fails.
            settle(lab);
            let agent = c.run(&args);
            settle(lab);
            let local = kd(&[&args[..], &["--lab", &c.lab]].concat());
            let v = json(&agent);
            assert_eq!(
                v["probe"]["via_agent"],
                owner(src),
                "{version} {fault}: {}",
                text(&agent)
            );
            // Every node watched (a device down is another matter).
            assert!(
                !v["probe"]["not_captured"]
                    .to_string()
                    .contains("not watched"),
                "{version} {fault}: {}",
                text(&agent)
            );
            let (mut a, mut l) = (probe_shape(&agent, random), probe_shape(&local, random));
            if *fault == "sep-stale" {
                // One endpoint of three is dead: whether the kernel picked
                // it is chance; whatever it picked, the probe must fit.
                (a, l) = (a["agrees"].clone(), l["agrees"].clone());
            }
            (a, l)
        });
        count += 1;
        if !fault.is_empty() {
            lab.kd(&["lab", "heal"]);
        }
    }
    eprintln!("{version}: {count} probes through the agents agree with the local probe");
    for node in ["k8s-master-10", "k8s-node-11", NODE] {
        let (_, tables) = in_ns_text(&lab.node(node), &["nft", "list", "tables"]);
        assert!(!tables.contains("knetdoctor_probe"), "{node}: {tables}");
    }
}

fn agents_on_the_real_control_plane(name: &str, version: &str) {
    let lab = Lab::up(name, &["--control-plane", "--k8s", version, "--agents"]);
    let c = Client::new(name, "admin");
    let dir_for_capture = tempfile::tempdir().unwrap();

    // No agent listens: every byte goes out to the API server.
    for node in ["k8s-master-10", "k8s-node-11", NODE] {
        let (ok, ss) = in_ns_text(&lab.node(node), &["ss", "-lntupH"]);
        assert!(ok);
        assert!(
            !ss.contains("knetdoctor"),
            "{version}: {node} listens: {ss}"
        );
        assert!(
            ss.contains("kube-proxy"),
            "{version}: ss sees no listener at all: {ss}"
        );
    }

    same_answers(&c, "healthy");
    let list = kd_ok(&["lab", "break", "--list", "--name", name]);
    for fault in list.lines().filter_map(|l| l.split_whitespace().next()) {
        lab.kd(&["lab", "break", fault, "--node", NODE]);
        same_answers(&c, fault);
        lab.kd(&["lab", "heal"]);
    }
    probes_agree(&c, &lab, version);

    let pods: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("/run/knetdoctor/lab/{name}/cluster/pods.json")).unwrap(),
    )
    .unwrap();
    let peer_ip = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == NGINX_NODE11)
        .and_then(|p| p["status"]["podIP"].as_str())
        .unwrap()
        .to_string();
    // A capture through the agents: the same frames, interface by
    // interface, as the local capture of the same pings, and a pcapng
    // that tshark reads.
    let ping_for = |secs: &str| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.pod(BUSYBOX),
                "ping",
                "-q",
                "-i",
                "0.2",
                "-w",
                secs,
                &peer_ip,
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let shape = |o: &Output| -> Vec<String> {
        let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                // Time and sequence numbers aside: the interface and what crossed it.
                let l = l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
                l.split(", seq").next().unwrap_or_default().to_string()
            })
            .collect();
        lines.sort();
        lines.dedup();
        lines
    };
    let mut pings = ping_for("6");
    std::thread::sleep(Duration::from_millis(500));
    let pcap = dir_for_capture.path().join("agent.pcapng");
    let agent = c.run(&[
        "capture",
        NODE,
        "-c",
        "8",
        "-f",
        "icmp",
        "-w",
        pcap.to_str().unwrap(),
    ]);
    let local = kd(&["capture", NODE, "-c", "8", "-f", "icmp", "--lab", name]);
    pings.wait().unwrap();
    assert_eq!(agent.status.code(), Some(0), "{version}: {}", text(&agent));
    assert_eq!(
        shape(&agent),
        shape(&local),
        "{version}: {}\n{}",
        text(&agent),
        text(&local)
    );
    assert!(
        shape(&agent)
            .iter()
            .any(|l| l.starts_with("flannel.1 IP 10.2.2.50 > ")),
        "{version}: {}",
        text(&agent)
    );
    let tshark = Command::new("tshark")
        .args([
            "-r",
            pcap.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
        ])
        .output()
        .unwrap();
    let ifaces = String::from_utf8_lossy(&tshark.stdout).to_string();
    assert_eq!(ifaces.lines().count(), 8, "{version}: {ifaces}");
    assert!(
        ifaces.lines().all(|l| l == "cni0" || l == "flannel.1"),
        "{ifaces}"
    );

    // The kernel's drops through the agent: with the FORWARD policy
    // dropping pod traffic on NODE, its agent names the reason, the device
    // and the packet; the agent of another node (another namespace on
    // this same kernel) claims none of it.
    lab.kd(&["lab", "break", "forward-drop", "--node", NODE]);
    // Pings for longer than the watches, which start once the agents take
    // the request.
    let mut pings = ping_for("9");
    let (on_node, elsewhere) = std::thread::scope(|s| {
        let on = s.spawn(|| c.run(&["drops", NODE, "-f", "icmp", "--duration", "3", "-o", "json"]));
        let off = s.spawn(|| {
            c.run(&[
                "drops",
                "k8s-node-11",
                "-f",
                "icmp",
                "--duration",
                "3",
                "-o",
                "json",
            ])
        });
        (on.join().unwrap(), off.join().unwrap())
    });
    pings.wait().unwrap();
    lab.kd(&["lab", "heal"]);
    let seen = json(&on_node);
    let dropped = seen["drops"].as_array().unwrap();
    assert!(
        dropped.iter().any(|d| d["reason"] == "NETFILTER_DROP"
            && d["place"]["node"] == NODE
            && d["place"]["device"] == "cni0"
            && d["packet"]
                .as_str()
                .unwrap()
                .contains(&format!("> {peer_ip}: ICMP echo request"))),
        "{version}: {seen}"
    );
    assert!(dropped.iter().all(|d| d["place"]["node"] == NODE), "{seen}");
    let other = json(&elsewhere);
    assert_eq!(
        other["drops"].as_array().unwrap().len(),
        0,
        "{version}: {other}"
    );
    let too_long = c.run(&["drops", NODE, "--duration", "400"]);
    assert_eq!(too_long.status.code(), Some(2), "{}", text(&too_long));
    assert!(
        text(&too_long).contains("1 to 300 seconds"),
        "{}",
        text(&too_long)
    );

    // Repairs through the agent: the path works again, check is clean,
    // and undo puts back exactly the broken state.
    let ping_peer = || ping(&lab.pod(BUSYBOX), &peer_ip);
    for fault in ["route-missing", "neigh-wrong-mac", "fdb-stale-dst"] {
        lab.kd(&[
            "lab",
            "break",
            fault,
            "--node",
            NODE,
            "--peer",
            "k8s-node-11",
        ]);
        let broken = overlay(&lab);
        assert!(
            !ping_peer(),
            "{version} {fault}: the fault should break the path"
        );
        let out = c.run(&["repair", "--node", NODE, "--apply", "--yes"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{version} {fault}: {}",
            text(&out)
        );
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            said.contains("kept by its agent")
                && said.contains("the findings it targeted are gone"),
            "{said}"
        );
        assert!(
            ping_peer(),
            "{version} {fault}: the path should work after the repair"
        );
        assert_eq!(
            kd(&["check", "--lab", name]).status.code(),
            Some(0),
            "{version} {fault}"
        );
        let id = said
            .split_whitespace()
            .nth(1)
            .unwrap()
            .trim_end_matches(':')
            .to_string();
        let hist = c.run(&["repair", "--node", NODE, "--history"]);
        assert!(
            String::from_utf8_lossy(&hist.stdout).contains(&id),
            "{}",
            text(&hist)
        );
        let out = c.run(&["repair", "--node", NODE, "--undo", &id]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{version} {fault}: {}",
            text(&out)
        );
        assert_eq!(
            overlay(&lab),
            broken,
            "{version} {fault}: undo must restore the broken state"
        );
        lab.kd(&["lab", "heal"]);
    }

    // A second repair while one holds the node is refused.
    lab.kd(&["lab", "break", "route-missing", "--node", NODE]);
    let dir = tempfile::tempdir().unwrap();
    let held = dir.path().join("held");
    restart_agent(
        &c,
        &lab,
        NODE,
        Some(&format!("journaled:{}", held.display())),
    );
    let first = c
        .cmd(&["repair", "--node", NODE, "--apply", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_file(&held);
    let second = c.run(&["repair", "--node", NODE, "--apply", "--yes"]);
    assert_eq!(
        second.status.code(),
        Some(3),
        "{version}: {}",
        text(&second)
    );
    assert!(
        text(&second).contains("another repair of k8s-node-12 is under way"),
        "{}",
        text(&second)
    );
    std::fs::remove_file(&held).unwrap();
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{version}: {}", text(&first));
    restart_agent(&c, &lab, NODE, None);
    lab.kd(&["lab", "heal"]);

    // A node changed after the plan was shown: the agent refuses the plan.
    lab.kd(&["lab", "break", "route-missing", "--node", NODE]);
    let planned = dir.path().join("planned");
    let client = c
        .cmd(&["repair", "--node", NODE, "--apply", "--yes"])
        .env(
            "KNETDOCTOR_TEST_PAUSE",
            format!("planned:{}", planned.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_file(&planned);
    let (ok, _) = in_ns_text(
        &lab.node(NODE),
        &[
            "ip",
            "route",
            "add",
            "10.2.0.0/24",
            "via",
            "10.2.0.1",
            "dev",
            "flannel.1",
            "onlink",
        ],
    );
    assert!(ok);
    let changed = overlay(&lab);
    std::fs::remove_file(&planned).unwrap();
    let out = client.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{version}: {}", text(&out));
    assert!(
        text(&out).contains("changed since the plan was made"),
        "{}",
        text(&out)
    );
    assert_eq!(
        overlay(&lab),
        changed,
        "{version}: a refused plan changes nothing"
    );
    let _ = in_ns(&lab.node(NODE), &["ip", "route", "del", "10.2.0.0/24"]);
    lab.kd(&["lab", "heal"]);

    // An agent killed mid-repair (the change made, its answer not yet
    // recorded) leaves a journal the next agent undoes.
    lab.kd(&["lab", "break", "ip-forward-off", "--node", NODE]);
    let forwarding = || in_ns_text(&lab.node(NODE), &["sysctl", "-n", "net.ipv4.ip_forward"]).1;
    assert_eq!(forwarding().trim(), "0");
    let made = dir.path().join("made");
    restart_agent(&c, &lab, NODE, Some(&format!("made-0:{}", made.display())));
    let client = c
        .cmd(&["repair", "--node", NODE, "--apply", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_file(&made);
    assert_eq!(forwarding().trim(), "1", "{version}: the change is made");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent_pid(&lab, NODE)),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = std::fs::remove_file(&made);
    restart_agent(&c, &lab, NODE, None);
    let out = client.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{version}: {}", text(&out));
    assert!(
        text(&out).contains("the agent stopped while at work"),
        "{}",
        text(&out)
    );
    let hist = json(&c.run(&["repair", "--node", NODE, "--history", "-o", "json"]));
    let last = hist.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "interrupted", "{hist}");
    let id = last["id"].as_str().unwrap();
    let out = c.run(&["repair", "--node", NODE, "--undo", id]);
    assert_eq!(out.status.code(), Some(0), "{version}: {}", text(&out));
    assert_eq!(
        forwarding().trim(),
        "0",
        "{version}: the next agent's undo restores the node"
    );
    lab.kd(&["lab", "heal"]);

    // The dashboard through the agents: a fault on one node shows within
    // 2 s (the agent publishes on the kernel's notification, the dashboard
    // watches what agents publish), with no --refresh-ms shorter than 10 s.
    let command = format!(
        "{BIN} tui --kubeconfig {} --refresh-ms 10000; echo dashboard-exited-$?; sleep 30",
        c.kubeconfig
    );
    let t = common::tmux::Tmux::start(
        &format!(
            "kdagent-{}-{}",
            version.replace('.', ""),
            std::process::id()
        ),
        &command,
    );
    common::tmux::expect_screen(&t, "k8s-node-12", 20);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !t.pane().contains("route-missing"),
        "{version}: {}",
        t.pane()
    );
    lab.kd(&["lab", "break", "route-missing", "--node", NODE]);
    let took = t.shows_within("route-missing", Duration::from_secs(2));
    eprintln!("{version}: the dashboard showed route-missing after {took:?}");
    t.keys(&["q"]);
    common::tmux::expect_screen(&t, "dashboard-exited-0", 5);
    drop(t);
    lab.kd(&["lab", "heal"]);

    // RBAC: a viewer checks but may not repair; a user with neither role
    // is told so.
    let viewer = Client::new(name, "viewer");
    lab.kd(&["lab", "break", "route-missing", "--node", NODE]);
    let out = viewer.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{version}: {}", text(&out));
    let out = viewer.run(&["repair", "--node", NODE, "--apply", "--yes"]);
    assert_eq!(out.status.code(), Some(3), "{version}: {}", text(&out));
    assert!(
        text(&out).contains("cannot create resource \"noderepairs\"")
            && text(&out).contains("knetdoctor-repairer"),
        "{}",
        text(&out)
    );
    lab.kd(&["lab", "heal"]);
    let outsider = Client::new(name, "outsider");
    let started = Instant::now();
    let out = outsider.run(&["check"]);
    assert_eq!(out.status.code(), Some(3), "{version}: {}", text(&out));
    assert!(
        text(&out).contains("refused") && text(&out).contains("knetdoctor-viewer"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a refusal must be fast: {:?}",
        started.elapsed()
    );
    // The reader role (`knetdoctor rbac`) reads the cluster but may not
    // ask the agents: the cluster's verdicts, and every node not read,
    // saying why.
    let admin = format!("/run/knetdoctor/lab/{name}/cp/pki/admin.kubeconfig");
    let yaml = kd_ok(&["rbac", "--user", "lab-reader"]);
    let out = kubectl(&admin, &["apply", "-f", "-"], Some(&yaml));
    assert!(out.status.success(), "{version}: {}", text(&out));
    let reader = Client::new(name, "reader");
    let v = poll(
        Duration::from_secs(20),
        || json(&reader.run(&["check", "-o", "json"])),
        |v| v["not_read"].as_array().is_some_and(|n| n.len() == 3),
    );
    let reasons: Vec<&str> = v["not_read"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["why"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["agents-forbidden"; 3], "{version}: {v}");
    assert_eq!(v["unread"], serde_json::json!([]), "{version}: {v}");
    assert_eq!(v["nodes"], serde_json::json!([]), "{version}: {v}");
    let out = reader.run(&["check"]);
    assert!(
        text(&out).contains("you may not ask the knetdoctor agents"),
        "{version}: {}",
        text(&out)
    );

    // A stopped agent is "no agent" at once, a killed one within three
    // heartbeats; the other nodes are read all along.
    let not_read = |why: &str| {
        let v = json(&c.run(&["check", "-o", "json"]));
        v["not_read"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node"] == "k8s-node-11" && n["why"]["reason"] == why)
            && v["nodes"].as_array().unwrap().len() == 2
    };
    lab.kd(&["lab", "agent", "stop", "--node", "k8s-node-11"]);
    assert!(not_read("no-agent"), "{version}");
    // A probe across it: sent and seen on the other nodes, the node
    // without an agent named as not watched; from a pod there: refused,
    // with what to install.
    let nginx11 = format!("test-svc-ns/{NGINX_NODE11}");
    let out = c.run(&[
        "trace", PROBE_BB, &nginx11, "--port", "80", "--probe", "-o", "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{version}: {}", text(&out));
    let nc = json(&out)["probe"]["not_captured"].to_string();
    assert!(
        nc.contains("k8s-node-11: not watched: no knetdoctor agent runs there"),
        "{version}: {nc}"
    );
    let out = c.run(&["trace", &nginx11, PROBE_BB, "--proto", "icmp", "--probe"]);
    assert_eq!(out.status.code(), Some(3), "{version}: {}", text(&out));
    assert!(
        text(&out).contains("the source runs on k8s-node-11")
            && text(&out).contains("knetdoctor agent manifest"),
        "{version}: {}",
        text(&out)
    );
    restart_agent(&c, &lab, "k8s-node-11", None);
    wait_until("the agent is back", Duration::from_secs(10), || {
        json(&c.run(&["check", "-o", "json"]))["nodes"]
            .as_array()
            .unwrap()
            .len()
            == 3
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent_pid(&lab, "k8s-node-11")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let took = wait_until(
        "a killed agent is called silent",
        Duration::from_secs(10),
        || not_read("agent-silent"),
    );
    eprintln!("{version}: a killed agent was called silent after {took:?}");
}

#[test]
fn agents_at_1_32() {
    agents_on_the_real_control_plane("ag32", "1.32");
}

#[test]
fn agents_at_1_20() {
    agents_on_the_real_control_plane("ag20", "1.20");
}
