//! `capture` in the lab: a ping and an HTTP request across nodes are seen on
//! cni0, flannel.1 and eth0 of the source node, VXLAN decoded (VNI 1, the
//! nodes' eth0 addresses outside, the pods' inside), with tcpdump capturing
//! beside it as an independent witness.

mod common;
use common::tshark;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn start_capture(args: &[&str]) -> (std::process::Child, std::process::ChildStdout) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Wait until every interface is open.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("capturing on"), "{line}");
    std::thread::spawn(move || for _ in err.lines() {});
    (child, stdout)
}

/// One JSON value per line of a capture's output.
fn json_lines(out: std::process::ChildStdout) -> Vec<serde_json::Value> {
    BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect()
}

#[test]
fn cross_node_ping_and_http_are_seen_on_every_interface_with_vxlan_decoded() {
    let lab = Lab::up("cap", &[]);
    let node = lab.node("k8s-node-12");
    let bb = lab.pod(BUSYBOX);
    let tcpdump = Command::new("ip")
        .args([
            "netns",
            "exec",
            &node,
            "tcpdump",
            "-nn",
            "-i",
            "eth0",
            "-c",
            "2",
            "udp port 8472",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut cap, out) = start_capture(&[
        "capture",
        "k8s-node-12",
        "--lab",
        "cap",
        "-f",
        "icmp or udp port 8472",
        "-c",
        "6",
        "--duration",
        "8",
        "-o",
        "json",
        "--group",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(ping(&bb, "10.2.0.42"));
    let objects: Vec<serde_json::Value> = json_lines(out);
    assert!(cap.wait().unwrap().success());
    let (groups, frames): (Vec<serde_json::Value>, Vec<serde_json::Value>) =
        objects.into_iter().partition(|o| o.get("group").is_some());
    assert_eq!(frames.len(), 6, "{frames:#?}");
    // Request and reply: each one packet, followed across the three interfaces in order.
    assert_eq!(groups.len(), 2, "{groups:#?}");
    let hops_of = |needle: &str| -> Vec<String> {
        let g = groups
            .iter()
            .find(|g| g["group"]["packet"].as_str().unwrap().contains(needle))
            .unwrap();
        g["group"]["sightings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["iface"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(hops_of("echo request"), ["cni0", "flannel.1", "eth0"]);
    assert_eq!(hops_of("echo reply"), ["eth0", "flannel.1", "cni0"]);
    for iface in ["cni0", "flannel.1", "eth0"] {
        assert_eq!(
            frames.iter().filter(|f| f["iface"] == iface).count(),
            2,
            "{iface}"
        );
    }
    let request = frames
        .iter()
        .find(|f| f["iface"] == "eth0" && f["frame"]["net"]["src"] == "192.168.56.12")
        .expect("outbound VXLAN frame");
    assert_eq!(request["frame"]["net"]["dst"], "192.168.56.10");
    assert_eq!(request["frame"]["vxlan"]["vni"], 1);
    let inner = &request["frame"]["vxlan"]["inner"];
    assert_eq!(
        (inner["net"]["src"].as_str(), inner["net"]["dst"].as_str()),
        (Some("10.2.2.50"), Some("10.2.0.42"))
    );
    assert_eq!(inner["transport"]["kind"], "echo request");
    let on_cni0 = frames
        .iter()
        .find(|f| f["iface"] == "cni0" && f["frame"]["net"]["src"] == "10.2.2.50")
        .unwrap();
    assert_eq!(
        on_cni0["frame"]["transport"]["id"], inner["transport"]["id"],
        "the same packet on cni0 and inside VXLAN"
    );
    // tcpdump saw the same two encapsulated frames on eth0.
    let witness = String::from_utf8(tcpdump.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(
        witness.lines().filter(|l| l.contains(".8472:")).count(),
        2,
        "{witness}"
    );

    // An HTTP request: the request line decoded on cni0 and inside VXLAN on eth0.
    let (mut cap, out) = start_capture(&[
        "capture",
        "k8s-node-12",
        "--lab",
        "cap",
        "-f",
        "tcp port 80 or udp port 8472",
        "--duration",
        "3",
        "-o",
        "json",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        curl(&bb, "http://10.2.0.42/hello", None).as_deref(),
        Some("nginx-56d58c56c7-zl6ms")
    );
    let frames: Vec<serde_json::Value> = json_lines(out);
    assert!(cap.wait().unwrap().success());
    assert!(
        frames
            .iter()
            .any(|f| f["iface"] == "cni0" && f["frame"]["app"]["path"] == "/hello"),
        "{frames:#?}"
    );
    assert!(
        frames.iter().any(
            |f| f["iface"] == "eth0" && f["frame"]["vxlan"]["inner"]["app"]["path"] == "/hello"
        )
    );
    assert!(
        frames
            .iter()
            .any(|f| f["frame"]["vxlan"]["inner"]["app"]["status"] == 200
                || f["frame"]["app"]["status"] == 200)
    );
    drop(lab);
}

#[test]
fn a_missing_interface_is_a_clear_error() {
    let _lab = Lab::up("capbad", &[]);
    let out = kd(&[
        "capture",
        "k8s-node-12",
        "--lab",
        "capbad",
        "-i",
        "eth9",
        "-c",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot capture on eth9"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pcapng_written_is_read_by_tshark_and_tcpdump_and_back() {
    let lab = Lab::up("capfile", &[]);
    let file = std::env::temp_dir().join(format!("knetdoctor-{}.pcapng", std::process::id()));
    let path = file.to_str().unwrap();
    let (mut cap, out) = start_capture(&[
        "capture",
        "k8s-node-12",
        "--lab",
        "capfile",
        "-f",
        "icmp or udp port 8472",
        "-c",
        "6",
        "--duration",
        "8",
        "-w",
        path,
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(ping(&lab.pod(BUSYBOX), "10.2.0.42"));
    let live_lines = BufReader::new(out).lines().count();
    assert!(cap.wait().unwrap().success());
    assert_eq!(live_lines, 6);
    // tshark: the same six frames, each with its interface's name.
    let t = Command::new("tshark")
        .args(["-r", path, "-T", "fields", "-e", "frame.interface_name"])
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&t.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["cni0", "cni0", "eth0", "eth0", "flannel.1", "flannel.1"],
        "{}",
        String::from_utf8_lossy(&t.stderr)
    );
    // tcpdump counts the same frames.
    let d = Command::new("tcpdump")
        .args(["-nn", "-r", path])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&d.stdout)
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .count(),
        6
    );
    // Reading it back gives the same decode and the same groups.
    let back = kd_ok(&["capture", "--read", path, "--group", "-o", "json"]);
    let objects: Vec<serde_json::Value> = back
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        objects.iter().filter(|o| o.get("frame").is_some()).count(),
        6
    );
    let groups: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| o.get("group").is_some())
        .collect();
    assert_eq!(groups.len(), 2);
    assert!(
        groups
            .iter()
            .all(|g| g["group"]["sightings"].as_array().unwrap().len() == 3)
    );
    let _ = std::fs::remove_file(&file);
    let bad = kd(&["capture", "--read", "/nonexistent.pcapng"]);
    assert_eq!(bad.status.code(), Some(3));
}

#[test]
fn pod_filter_keeps_only_that_pod_also_inside_vxlan() {
    let lab = Lab::up("cappod", &[]);
    let bb = lab.pod(BUSYBOX);
    let (mut cap, out) = start_capture(&[
        "capture",
        "k8s-node-12",
        "--lab",
        "cappod",
        "--pod",
        "test-svc-ns/nginx-56d58c56c7-zl6ms",
        "--duration",
        "3",
        "-o",
        "json",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(ping(&bb, "10.2.0.42"));
    assert!(ping(&bb, "10.2.1.117"), "traffic the filter must leave out");
    let frames: Vec<serde_json::Value> = json_lines(out);
    assert!(cap.wait().unwrap().success());
    assert_eq!(frames.len(), 6, "{frames:#?}");
    for f in &frames {
        let inner = if f["frame"]["vxlan"].is_null() {
            &f["frame"]
        } else {
            &f["frame"]["vxlan"]["inner"]
        };
        let addrs = [
            inner["net"]["src"].as_str().unwrap(),
            inner["net"]["dst"].as_str().unwrap(),
        ];
        assert!(addrs.contains(&"10.2.0.42"), "{f}");
    }
    let bad = kd(&[
        "capture",
        "k8s-node-12",
        "--lab",
        "cappod",
        "--pod",
        "test-svc-ns/linux0224-nginx",
        "-c",
        "1",
    ]);
    assert_eq!(bad.status.code(), Some(2), "a Service is not a pod");
}

#[test]
fn both_nodes_in_one_capture_follow_ping_and_http_from_pod_to_pod() {
    let lab = Lab::up("cap2", &[]);
    let bb = lab.pod(BUSYBOX);
    let (mut cap, out) = start_capture(&[
        "capture",
        "k8s-node-12,k8s-master-10",
        "--lab",
        "cap2",
        "-f",
        "icmp or udp port 8472",
        "-c",
        "12",
        "--duration",
        "8",
        "-o",
        "json",
        "--group",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(ping(&bb, "10.2.0.42"));
    let objects = json_lines(out);
    assert!(cap.wait().unwrap().success());
    let (groups, frames): (Vec<_>, Vec<_>) =
        objects.into_iter().partition(|o| o.get("group").is_some());
    assert_eq!(frames.len(), 12, "{frames:#?}");
    for f in frames.iter().filter(|f| f["frame"]["vxlan"].is_object()) {
        assert_eq!(f["frame"]["vxlan"]["vni"], 1);
        let outer = (
            f["frame"]["net"]["src"].as_str(),
            f["frame"]["net"]["dst"].as_str(),
        );
        assert!(
            outer == (Some("192.168.56.12"), Some("192.168.56.10"))
                || outer == (Some("192.168.56.10"), Some("192.168.56.12")),
            "{f}"
        );
    }
    let hops_of = |needle: &str| -> Vec<String> {
        let g = groups
            .iter()
            .find(|g| g["group"]["packet"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no group for {needle}: {groups:#?}"));
        g["group"]["sightings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["iface"].as_str().unwrap().to_string())
            .collect()
    };
    let there = [
        "k8s-node-12/cni0",
        "k8s-node-12/flannel.1",
        "k8s-node-12/eth0",
        "k8s-master-10/eth0",
        "k8s-master-10/flannel.1",
        "k8s-master-10/cni0",
    ];
    assert_eq!(groups.len(), 2, "{groups:#?}");
    assert_eq!(hops_of("10.2.2.50 > 10.2.0.42 icmp echo request"), there);
    let mut back = there.to_vec();
    back.reverse();
    assert_eq!(hops_of("10.2.0.42 > 10.2.2.50 icmp echo reply"), back);

    // HTTP: the request line inside VXLAN on both nodes' eth0, plain on both cni0.
    let (mut cap, out) = start_capture(&[
        "capture",
        "k8s-node-12,k8s-master-10",
        "--lab",
        "cap2",
        "-f",
        "tcp port 80 or udp port 8472",
        "--duration",
        "3",
        "-o",
        "json",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        curl(&bb, "http://10.2.0.42/both", None).as_deref(),
        Some("nginx-56d58c56c7-zl6ms")
    );
    let frames = json_lines(out);
    assert!(cap.wait().unwrap().success());
    let path_on = |iface: &str| {
        frames.iter().any(|f| {
            f["iface"] == iface
                && (f["frame"]["app"]["path"] == "/both"
                    || f["frame"]["vxlan"]["inner"]["app"]["path"] == "/both")
        })
    };
    for iface in there {
        assert!(path_on(iface), "GET /both not seen on {iface}");
    }
    drop(lab);
}

#[test]
fn a_dns_query_without_answer_is_flagged_and_an_answered_one_is_not() {
    let lab = Lab::up("capdns", &[]);
    let bb = lab.pod(BUSYBOX);
    let run = |expect_answer: bool| -> Vec<serde_json::Value> {
        let (mut cap, out) = start_capture(&[
            "capture",
            "k8s-node-12",
            "--lab",
            "capdns",
            "-i",
            "cni0",
            "-f",
            "udp port 53",
            "--dns-timeout",
            "1",
            "--duration",
            "3",
            "-o",
            "json",
        ]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let answers = dig(&bb, "kubernetes.default.svc.cluster.local");
        assert_eq!(!answers.is_empty(), expect_answer, "{answers:?}");
        let objects: Vec<serde_json::Value> = json_lines(out);
        assert!(cap.wait().unwrap().success());
        objects
    };
    // Healthy: query and answer, nothing flagged.
    let objects = run(true);
    assert!(
        objects
            .iter()
            .any(|o| o["frame"]["app"]["response"] == true)
    );
    assert!(
        !objects.iter().any(|o| o.get("dns_unanswered").is_some()),
        "{objects:#?}"
    );
    // kube-dns without endpoints: kube-proxy rejects, no DNS answer comes.
    lab.kd(&["lab", "break", "dns-down"]);
    let objects = run(false);
    let flagged: Vec<&serde_json::Value> = objects
        .iter()
        .filter_map(|o| o.get("dns_unanswered"))
        .collect();
    assert!(!flagged.is_empty(), "{objects:#?}");
    assert!(
        flagged
            .iter()
            .all(|q| q["client"].as_str().unwrap().starts_with("10.2.2.50:")
                && q["server"] == "10.1.0.10:53"
                && q["name"] == "kubernetes.default.svc.cluster.local.")
    );
    drop(lab);
}

#[test]
fn tcpdump_any_captures_decode_as_tshark_decodes_them() {
    let lab = Lab::up("capany", &[]);
    let node = lab.node("k8s-node-12");
    let bb = lab.pod(BUSYBOX);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("any.pcap");
    let path = file.to_str().unwrap().to_string();
    // tcpdump -i any writes LINUX_SLL2 (libpcap 1.10): what people hand over.
    // Not in immediate mode: there libpcap falls back to TPACKET_V2, one
    // snaplen-sized slot per frame, and its 2 MiB ring held too few frames
    // for the HTTP exchange seen on four interfaces (5 runs in 12 lost the
    // GET or the DNS query). TPACKET_V3 hands frames over a block at a time,
    // at the latest when tcpdump's 1 s block timeout runs out: hence the
    // wait after the traffic, before SIGINT.
    let mut td = Command::new("ip")
        .args([
            "netns", "exec", &node, "tcpdump", "-i", "any", "-U", "-w", &path,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    // ARP for the gateway, ICMP across VXLAN, HTTP to a NodePort, DNS over TCP.
    let _ = in_ns(&bb, &["ip", "neigh", "flush", "all"]);
    assert!(ping(&bb, "10.2.0.42"));
    assert!(curl(&bb, "http://192.168.56.12:30005/", None).is_some());
    let (ok, answer) = in_ns_text(
        &bb,
        &[
            "dig",
            "+tcp",
            "+short",
            "+time=1",
            "+tries=1",
            "@10.1.0.10",
            "linux0224-nginx.test-svc-ns.svc.cluster.local",
        ],
    );
    assert!(ok && !answer.trim().is_empty(), "{answer}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(td.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    td.wait().unwrap();
    let link = Command::new("tcpdump")
        .args(["-r", &path, "-c", "1"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&link.stderr).contains("LINUX_SLL2"),
        "{}",
        String::from_utf8_lossy(&link.stderr)
    );
    let ours: Vec<serde_json::Value> = kd_ok(&["capture", "--read", &path, "-o", "json"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("frame").is_some())
        .collect();
    let theirs = tshark::frames(&path);
    assert_eq!(ours.len(), theirs.len());
    let mut wrong = Vec::new();
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        let mine = tshark::ours(o);
        if &mine != t {
            wrong.push(format!("frame {}: ours {mine:?} / tshark {t:?}", i + 1));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} frames differ:\n{}",
        wrong.len(),
        ours.len(),
        wrong.join("\n")
    );
    // What the capture had to hold, decoded.
    let has = |f: &dyn Fn(&Vec<String>) -> bool| theirs.iter().any(f);
    assert!(has(&|t| !t[3].is_empty()), "no VXLAN frame");
    assert!(
        has(&|t| t[8] == "GET" && (t[5] == "30005" || t[4] == "30005")),
        "no HTTP on the NodePort"
    );
    assert!(
        has(&|t| t[7].starts_with("linux0224-nginx") && (t[5] == "53" || t[4] == "53")),
        "no DNS over TCP"
    );
    assert!(has(&|t| t[10] == "2"), "no ARP reply");
    // tcpdump's text for ARP and the cooked direction.
    let text = kd_ok(&["capture", "--read", &path]);
    assert!(text.contains(" is-at "), "{text}");
    assert!(
        text.contains(" In IP ") && text.contains(" Out IP "),
        "{text}"
    );
    // The packet followed across the interfaces by index.
    let groups = kd_ok(&["capture", "--read", &path, "--group", "-o", "json"]);
    assert!(groups.contains("ifindex"), "{groups}");
}
