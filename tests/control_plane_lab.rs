//! The lab run by the real control plane, at both versions: etcd,
//! kube-apiserver and kube-controller-manager on k8s-master-10 (RBAC, the
//! default admission plugins, a per-lab PKI), the real kube-proxy on every
//! node, Endpoints from the real controllers. `check` is clean on it, every
//! path works (ping, curl, dig through `lab status`), the real kube-proxy's
//! own layout is what the nodes hold, a dataplane fault gives exactly its
//! finding and heals, and `lab down` stops every component. Under its
//! RBAC, users with no rights, wrong credentials, the reader role and one
//! namespace get what tests/control_plane_lab/rbac.rs says.

mod common;
use common::*;
#[path = "control_plane_lab/rbac.rs"]
mod rbac;

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
    dashboard_watches(name, version, &kubeconfig);
    // Real RBAC: per-test users, a refusal, the reader role, one namespace.
    rbac::under_rbac(&lab, name, version);
    // The trace outcomes of the embedded lab hold on the real rules.
    let mut unreachable = Vec::new();
    for src in PODS {
        for dst in PODS.iter().filter(|d| **d != src).copied().chain([
            "test-svc-ns/linux0224-nginx",
            "test-svc-ns/nodeport-service",
            "kube-system/kube-dns",
            "default/kubernetes",
            "linux0224-nginx.test-svc-ns",
        ]) {
            let out = kd(&["trace", src, dst, "--lab", name]);
            if out.status.code() != Some(0) {
                unreachable.push(format!("{src} -> {dst}"));
            }
        }
    }
    assert!(unreachable.is_empty(), "{version}: {unreachable:?}");
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
    // Every fault the lab can make here gives exactly its finding (once the
    // real controllers and kube-proxy have acted), and heal ends it.
    let n12 = "k8s-node-12";
    let cases: &[(&str, &[&str], &str, &str)] = &[
        ("route-missing", &[], "route-missing", n12),
        ("route-wrong-gw", &[], "route-wrong", n12),
        ("neigh-missing", &[], "neigh-missing", n12),
        ("neigh-wrong-mac", &[], "neigh-wrong-mac", n12),
        ("fdb-missing", &[], "fdb-missing", n12),
        ("fdb-stale-dst", &[], "fdb-wrong-dst", n12),
        (
            "vtep-down",
            &["--node", "k8s-node-11"],
            "vtep-down",
            "k8s-node-11",
        ),
        ("vtep-mtu", &[], "vtep-mtu-wrong", n12),
        ("cni0-addr-wrong", &[], "cni0-addr-wrong", n12),
        (
            "ip-forward-off",
            &["--node", "k8s-master-10"],
            "ip-forward-off",
            "k8s-master-10",
        ),
        ("pod-veth-down", &[], "pod-veth-down", n12),
        ("dns-down", &[], "kube-dns-no-endpoints", "cluster"),
        // kube-proxy stops on the node and its chains are left damaged.
        (
            "svc-chain-missing",
            &[],
            "kube-proxy-svc-chain-missing",
            n12,
        ),
        ("sep-stale", &[], "kube-proxy-endpoints-mismatch", n12),
        ("nodeport-missing", &[], "kube-proxy-nodeport-missing", n12),
        // flannel's chains, edited where the lab's node has them.
        ("forward-drop", &[], "forward-drop", n12),
        ("masq-missing", &[], "flannel-masq-missing", n12),
        (
            "ingress-backend-port",
            &[],
            "ingress-backend-port-missing",
            "cluster",
        ),
    ];
    let settle = |want: &[(String, String)]| {
        poll(
            std::time::Duration::from_secs(30),
            || check_findings(&["check", "--lab", name, "-o", "json"]).1,
            |got| got == want,
        )
    };
    let mut wrong = Vec::new();
    for (fault, extra, id, node) in cases {
        let mut args = vec!["lab", "break", fault];
        args.extend_from_slice(extra);
        lab.kd(&args);
        let want = vec![(id.to_string(), node.to_string())];
        let got = settle(&want);
        if got != want {
            wrong.push(format!("{version} {fault}: {got:?}"));
        }
        lab.kd(&["lab", "heal"]);
        let got = settle(&[]);
        if !got.is_empty() {
            wrong.push(format!("{version} {fault} healed: {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Every process the lab runs now (faults stopped and restarted some),
    // by PID and kernel start time: a PID the kernel gave to another
    // process since is not the lab's.
    let now: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("/run/knetdoctor/lab/{name}/state.json")).unwrap(),
    )
    .unwrap();
    let procs: Vec<(i32, u64)> = now["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pid"].as_i64().unwrap() as i32,
                p["start_time"].as_u64().unwrap(),
            )
        })
        .collect();
    drop(lab);
    let start_time = |pid: i32| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        if rest.trim_start().starts_with('Z') {
            return None;
        }
        rest.split_whitespace().nth(19)?.parse().ok()
    };
    for (pid, started) in procs {
        assert!(
            start_time(pid) != Some(started),
            "{version}: process {pid} outlived lab down"
        );
    }
}

/// The dashboard over a lab run by the real control plane watches its API
/// server (`--lab` alone, no `--kubeconfig`): a Service created there is in
/// a snapshot within seconds, while the periodic re-read is ten minutes
/// away (before, the objects were listed again only on a reading of the
/// nodes).
fn dashboard_watches(name: &str, version: &str, kubeconfig: &str) {
    use knetdoctor::tui::{Options, Wake, run_on};
    use std::sync::{Arc, Mutex, mpsc};
    use std::time::{Duration, Instant};
    // Per snapshot: whether it holds the Service.
    type Seen = Arc<Mutex<Vec<bool>>>;
    let seen: Seen = Arc::default();
    let (wake_tx, wake) = mpsc::channel::<Wake>();
    let quit = wake_tx.clone();
    let frames = seen.clone();
    let lab = name.to_string();
    let dashboard = std::thread::spawn(move || {
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
        let options = Options {
            source: knetdoctor::access::Source {
                lab,
                ..Default::default()
            },
            refresh: Duration::from_secs(600),
            namespace: None,
        };
        let mut last = None;
        run_on(&mut terminal, options, (wake_tx, wake), |app| {
            let Some(s) = &app.snapshot else { return };
            if last.as_ref().is_some_and(|l| Arc::ptr_eq(l, s)) {
                return;
            }
            last = Some(s.clone());
            let probe = s
                .cluster
                .services
                .iter()
                .any(|v| v.metadata.name.as_deref() == Some("watch-probe"));
            frames.lock().unwrap().push(probe);
        })
    });
    let until = |what: &str, done: &dyn Fn(&[bool]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&seen.lock().unwrap()) {
            assert!(Instant::now() < deadline, "{version}: {what} in 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    until("no first snapshot", &|s| !s.is_empty());
    let out = kubectl(
        kubeconfig,
        &[
            "create",
            "service",
            "clusterip",
            "watch-probe",
            "--tcp=80:80",
            "-n",
            "default",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = Instant::now();
    until("the new Service never reached the dashboard", &|s| {
        s.iter().any(|probe| *probe)
    });
    let took = created.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{version}: the Service took {took:?} to reach the dashboard"
    );
    let _ = quit.send(Wake::Input(crossterm::event::Event::Key(
        crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Char('q'),
            crossterm::event::KeyModifiers::NONE,
        ),
    )));
    dashboard.join().unwrap().unwrap();
    let out = kubectl(
        kubeconfig,
        &["delete", "service", "watch-probe", "-n", "default"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs knetdoctor as it runs on a node of a real cluster: inside the
/// node's namespace, under the node's host name (a UTS namespace of its
/// own), as root, with a kubeconfig that reaches the API server over the
/// underlay, journals under `state_dir`.
fn on_node(lab: &Lab, node: &str, state_dir: &str, args: &[&str]) -> std::process::Output {
    let ns = lab.node(node);
    std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "unshare", "--uts", "sh", "-c"])
        .arg(format!("hostname {node} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .env("KNETDOCTOR_STATE_DIR", state_dir)
        .output()
        .expect("run knetdoctor on the node")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The simplest real use (issue 15): on k8s-node-12 itself, with a
/// kubeconfig for the real API server and a route missing on this node,
/// check, inspect node, trace, capture and repair (plan, apply, history,
/// undo) read and act on this host and say which nodes they did not read.
fn on_a_node_of_the_cluster(lab: &Lab, name: &str, version: &str) {
    let state_dir = tempfile::tempdir().unwrap();
    let sd = state_dir.path().to_str().unwrap();
    let admin = std::fs::read_to_string(format!(
        "/run/knetdoctor/lab/{name}/cp/pki/admin.kubeconfig"
    ))
    .unwrap();
    let kubeconfig = state_dir.path().join("node.kubeconfig");
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    std::fs::write(
        &kubeconfig,
        admin.replace(&server, "https://192.168.56.10:6443"),
    )
    .unwrap();
    let k = kubeconfig.to_str().unwrap();
    lab.kd(&[
        "lab",
        "break",
        "route-missing",
        "--node",
        "k8s-node-12",
        "--peer",
        "k8s-node-11",
    ]);
    let run = |args: &[&str]| on_node(lab, "k8s-node-12", sd, args);

    let out = run(&["check", "--kubeconfig", k]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{version}: {t}");
    assert!(
        t.contains("k8s-node-12") && t.contains("route-missing"),
        "{version}: {t}"
    );
    assert!(
        t.contains("not read: k8s-master-10, k8s-node-11"),
        "{version}: {t}"
    );
    assert!(!t.contains("no node states"), "{version}: {t}");
    let json: serde_json::Value =
        serde_json::from_slice(&run(&["check", "--kubeconfig", k, "-o", "json"]).stdout).unwrap();
    assert_eq!(json["nodes"], serde_json::json!(["k8s-node-12"]), "{json}");
    let not_read: Vec<&str> = json["not_read"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(not_read, ["k8s-master-10", "k8s-node-11"], "{json}");
    // No agent is installed on this cluster: each says so.
    assert!(
        json["not_read"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["why"]["reason"] == "agent-not-installed"),
        "{json}"
    );

    // This host's own dataplane, under its name.
    let t = text(&run(&["inspect", "node", "k8s-node-12"]));
    assert!(
        t.starts_with("exit Some(0)") && t.contains("192.168.56.12"),
        "{t}"
    );

    // The path from a pod here to one on k8s-node-11 stops at the missing route.
    let t = text(&run(&[
        "trace",
        &format!("test-svc-ns/{NGINX_NODE12}"),
        &format!("test-svc-ns/{NGINX_NODE11}"),
        "--kubeconfig",
        k,
    ]));
    assert!(
        t.starts_with("exit Some(1)") && t.contains("route-missing"),
        "{t}"
    );

    // The dashboard on this host: its own finding, the other nodes "not read".
    let command = format!(
        "ip netns exec {} unshare --uts sh -c 'hostname k8s-node-12 && KNETDOCTOR_STATE_DIR={sd} exec {BIN} tui --kubeconfig {k}'; echo dashboard-exited-$?; sleep 30",
        lab.node("k8s-node-12")
    );
    let t = common::tmux::Tmux::start(&format!("kdnode-{}", std::process::id()), &command);
    assert!(
        t.wait_for("route-missing", std::time::Duration::from_secs(15))
            .is_some(),
        "{version}: the dashboard on the node never showed its finding:\n{}",
        t.pane()
    );
    let pane = t.pane();
    assert!(pane.contains("not read"), "{version}: {pane}");
    t.keys(&["q"]);
    assert!(
        t.wait_for("dashboard-exited-0", std::time::Duration::from_secs(5))
            .is_some(),
        "{}",
        t.pane()
    );
    drop(t);

    // Capture on this host's interfaces.
    let t = text(&run(&["capture", "k8s-node-12", "--duration", "0.3"]));
    assert!(
        t.starts_with("exit Some(0)") && t.contains("in the current network namespace"),
        "{t}"
    );

    // `repair --node NODE --kubeconfig K ARGS` on the node, as text.
    let repair = |node: &str, args: &[&str]| {
        let mut a = vec!["repair", "--node", node, "--kubeconfig", k];
        a.extend_from_slice(args);
        run(&a)
    };
    // The plan, then another node: out of reach, said so.
    let t = text(&repair("k8s-node-12", &[]));
    assert!(
        t.starts_with("exit Some(1)") && t.contains("ip route replace 10.2.1.0/24"),
        "{t}"
    );
    let t = text(&repair("k8s-node-11", &[]));
    assert!(
        t.starts_with("exit Some(3)") && t.contains("out of reach"),
        "{t}"
    );

    // Apply, verified with iproute2; the history; undo, verified again.
    let has_route = || {
        let (_, r) = in_ns_text(
            &lab.node("k8s-node-12"),
            &["ip", "-j", "route", "show", "10.2.1.0/24"],
        );
        r.contains("10.2.1.0/24")
    };
    assert!(!has_route());
    let t = text(&repair("k8s-node-12", &["--apply", "--yes"]));
    assert!(
        t.starts_with("exit Some(0)") && t.contains("the findings it targeted are gone"),
        "{t}"
    );
    assert!(has_route(), "the repair did not put the route back");
    assert!(
        std::fs::read_dir(state_dir.path().join("repair/k8s-node-12"))
            .unwrap()
            .count()
            > 1,
        "no journal under the state directory"
    );
    let past: serde_json::Value =
        serde_json::from_slice(&repair("k8s-node-12", &["--history", "-o", "json"]).stdout)
            .unwrap();
    let id = past[0]["id"].as_str().unwrap().to_string();
    let t = text(&repair("k8s-node-12", &["--undo", &id]));
    assert!(t.starts_with("exit Some(0)") && t.contains("undone"), "{t}");
    assert!(!has_route(), "the undo did not take the route away again");
    lab.kd(&["lab", "heal"]);
    assert_eq!(kd(&["check", "--lab", name]).status.code(), Some(0));
}

#[test]
fn the_real_control_plane_at_1_20() {
    cp_lab("cpa", "1.20");
}

#[test]
fn the_real_control_plane_at_1_32() {
    cp_lab("cpb", "1.32");
}

#[test]
fn knetdoctor_on_a_node_of_a_real_cluster() {
    let lab = Lab::up("cpc", &["--control-plane", "--k8s", "1.32"]);
    on_a_node_of_the_cluster(&lab, "cpc", "1.32");
}

/// The real kube-proxy 1.32 in nftables mode is the judge: it programs
/// `table ip kube-proxy` and no KUBE-* iptables chains, and every path
/// works (`lab status` pings, curls and digs them; a pod curls a ClusterIP
/// itself). check reads its table and finds it as kube-proxy would program
/// it; trace follows Services and a NodePort through the table's own maps
/// and DNATs; a Service's element taken out of `service-ips` (as a damaged
/// table would lack it) is found, and breaks the path for real.
#[test]
fn the_real_kube_proxy_in_nftables_mode() {
    let name = "cpn";
    let lab = Lab::up(
        name,
        &[
            "--control-plane",
            "--k8s",
            "1.32",
            "--kube-proxy-mode",
            "nftables",
            "--without-endpoints",
        ],
    );
    let n12 = lab.node("k8s-node-12");
    // A cluster without v1 Endpoints (the controller off): only the API
    // server's own for default/kubernetes, as Debian's kubectl sees it.
    let admin = format!("/run/knetdoctor/lab/{name}/cp/pki/admin.kubeconfig");
    let eps = std::process::Command::new("/var/cache/knetdoctor/kubernetes-client/usr/bin/kubectl")
        .args([
            "--kubeconfig",
            &admin,
            "get",
            "endpoints",
            "-A",
            "-o",
            "json",
        ])
        .output()
        .expect("Debian's kubectl (scripts/setup.sh unpacks it)");
    let eps: serde_json::Value = serde_json::from_slice(&eps.stdout).unwrap();
    let names: Vec<String> = eps["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["metadata"]["namespace"].as_str().unwrap(),
                e["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["default/kubernetes"]);
    let (ok, table) = in_ns_text(&n12, &["nft", "list", "table", "ip", "kube-proxy"]);
    assert!(ok && table.contains("10.1.59.153"), "{table}");
    let (_, nat) = in_ns_text(&n12, &["iptables-save", "-t", "nat"]);
    assert!(!nat.contains("KUBE-SERVICES"), "{nat}");
    let status = kd(&["lab", "status", "--name", name]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert!(
        curl(&lab.pod(BUSYBOX), "http://10.1.59.153/", None).is_some(),
        "the ClusterIP does not answer"
    );
    let out = kd(&["check", "--lab", name]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The objects read from the live API (EndpointSlices alone) agree.
    let out = kd(&["check", "--kubeconfig", &admin, "--lab", name]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let real_table = nft_snapshot(&n12);
    // Both of kube-proxy's tables are read: on this IPv4 cluster its IPv6
    // proxier's holds the skeleton (its `services` chain, no elements).
    let node = kd(&[
        "inspect",
        "node",
        "k8s-node-12",
        "--lab",
        name,
        "-o",
        "json",
    ]);
    let node: serde_json::Value = serde_json::from_slice(&node.stdout).unwrap();
    assert_eq!(node["kube_proxy_nft6"]["family"], "ip6", "{node}");
    assert!(node["kube_proxy_nft6"]["chains"]["services"].is_object());
    assert!(
        node["kube_proxy_nft6"]["sets"]["service-ips"]["elem"]
            .as_array()
            .is_some_and(|e| e.is_empty())
    );

    for (src, dst, via) in [
        (
            BUSYBOX_POD,
            "test-svc-ns/linux0224-nginx",
            "service-ips 10.1.59.153 . tcp . 80",
        ),
        (
            BUSYBOX_POD,
            "kube-system/kube-dns",
            "service-ips 10.1.0.10 . tcp . 53",
        ),
        (
            "192.168.56.254",
            "k8s-node-12:30005",
            "service-nodeports tcp . 30005",
        ),
    ] {
        let out = kd(&["trace", src, dst, "--lab", name]);
        assert_eq!(out.status.code(), Some(0), "{src} -> {dst}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("nftables ip kube-proxy {via} -> ")),
            "{src} -> {dst}: {}",
            text(&out)
        );
    }

    // Through the live API, a bare pod name is looked up in the
    // kubeconfig context's namespace, as kubectl does (and not found in
    // `default` when the context names none).
    let with_ns = std::env::temp_dir().join(format!("kd-{name}-ns.kubeconfig"));
    let mut kc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&admin).unwrap()).unwrap();
    kc["contexts"][0]["context"]["namespace"] = "test-net".into();
    std::fs::write(&with_ns, serde_yaml_ng::to_string(&kc).unwrap()).unwrap();
    let bare = "busybox-deployment-5db9ff768-zrlxw";
    let dst = "test-svc-ns/linux0224-nginx";
    // (The nodes are not read through the live API here: this lab runs no
    // agents, so the trace itself is partial; the name is what is judged.)
    let through = kd(&[
        "trace",
        bare,
        dst,
        "--lab",
        name,
        "--kubeconfig",
        with_ns.to_str().unwrap(),
    ]);
    assert!(
        text(&through).contains(&format!("trace pod test-net/{bare} ")),
        "{}",
        text(&through)
    );
    let plain = kd(&["trace", bare, dst, "--lab", name, "--kubeconfig", &admin]);
    assert_eq!(plain.status.code(), Some(2), "{}", text(&plain));
    let _ = std::fs::remove_file(&with_ns);

    // A Service's element deleted from service-ips on node-12: kube-proxy
    // is stopped first so it does not put it back (as when it crashed).
    let pid = lab.process_pid("kube-proxy", "k8s-node-12");
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let deleted = in_ns(
        &n12,
        &[
            "nft",
            "delete",
            "element",
            "ip",
            "kube-proxy",
            "service-ips",
            "{",
            "10.1.59.153",
            ".",
            "tcp",
            ".",
            "80",
            "}",
        ],
    );
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert!(curl(&lab.pod(BUSYBOX), "http://10.1.59.153/", None).is_none());
    let out = kd(&["check", "--lab", name, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<String> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["id"].as_str().unwrap(),
                f["node"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        ids,
        ["kube-proxy-nftables-service-missing k8s-node-12"],
        "{}",
        text(&out)
    );
    let out = kd(&[
        "trace",
        BUSYBOX_POD,
        "test-svc-ns/linux0224-nginx",
        "--lab",
        name,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no element 10.1.59.153 . tcp . 80"),
        "{}",
        text(&out)
    );

    // Repaired with --include kube-proxy: knetdoctor writes the table
    // kube-proxy writes, and the kernel then holds exactly the table the
    // real kube-proxy wrote (nft's own listing, handles aside).
    let broken = nft_snapshot(&n12);
    let repair = |extra: &[&str]| {
        let mut a = vec!["repair", "--node", "k8s-node-12", "--lab", name];
        a.extend_from_slice(extra);
        kd(&a)
    };
    let left = repair(&["--apply", "--yes"]);
    assert_eq!(left.status.code(), Some(1), "{}", text(&left));
    assert_eq!(nft_snapshot(&n12), broken, "changed without --include");
    let fixed = repair(&["--apply", "--yes", "--include", "kube-proxy"]);
    assert_eq!(fixed.status.code(), Some(0), "{}", text(&fixed));
    assert!(curl(&lab.pod(BUSYBOX), "http://10.1.59.153/", None).is_some());
    assert_eq!(
        normalized(&nft_snapshot(&n12)),
        normalized(&real_table),
        "the repaired table is not the one the real kube-proxy wrote"
    );
    let out = kd(&["check", "--lab", name]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Undone: the broken table again.
    let journal = std::fs::read_dir(format!("/run/knetdoctor/lab/{name}/repair/k8s-node-12"))
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .max()
        .unwrap();
    let undo = repair(&["--undo", &journal]);
    assert_eq!(undo.status.code(), Some(0), "{}", text(&undo));
    assert_eq!(normalized(&nft_snapshot(&n12)), normalized(&broken));

    // `lab break` with the real kube-proxy in nftables mode: it stops and
    // its table is damaged; heal starts it and its first sync rewrites it.
    kd_ok(&["lab", "heal", "--name", name]);
    kd_ok(&[
        "lab",
        "break",
        "nodeport-missing",
        "--node",
        "k8s-node-12",
        "--name",
        name,
    ]);
    let out = kd(&["check", "--lab", name]);
    assert!(
        text(&out).contains("kube-proxy-nftables-service-missing")
            && text(&out).contains("tcp . 30005"),
        "{}",
        text(&out)
    );
    assert!(curl(&lab.outside(), "http://192.168.56.12:30005/", None).is_none());
    kd_ok(&["lab", "heal", "--name", name]);
    assert!(curl(&lab.outside(), "http://192.168.56.12:30005/", None).is_some());
    let out = kd(&["check", "--lab", name]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A table snapshot as a set of lines: a table written anew lists its
/// objects in another order than one built up sync by sync. Set comments
/// are left out: nft 1.0.6 takes none from JSON input (the one thing a
/// repaired table lacks; kube-proxy reads none of them).
fn normalized(lines: &[String]) -> Vec<String> {
    let mut v: Vec<String> = lines
        .iter()
        .map(|l| {
            let mut item: serde_json::Value = serde_json::from_str(l).unwrap();
            for kind in ["set", "map"] {
                if let Some(o) = item.get_mut(kind).and_then(|s| s.as_object_mut()) {
                    o.remove("comment");
                }
            }
            item.to_string()
        })
        .collect();
    v.sort();
    v
}

const BUSYBOX_POD: &str = "test-net/busybox-deployment-5db9ff768-zrlxw";
