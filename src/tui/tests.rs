//! The views drawn on ratatui's TestBackend from the seed cluster and the
//! node state captured from the seed lab's k8s-node-12, healthy and with
//! faults, compared with the screens stored in tests/fixtures/tui
//! (`KD_BLESS=1 cargo test` writes them anew).

use std::sync::Arc;

use super::app::{App, Job, View};
use super::snapshot::Snapshot;
use super::snapshot::{After, Blocks};
use super::view;
use crate::dataplane::NodeState;

fn snapshot(mutate: impl Fn(&mut NodeState)) -> Snapshot {
    let (cluster, mut state) = crate::check::fixtures::seed();
    mutate(&mut state);
    built(
        "lab seed",
        cluster,
        vec![("k8s-node-12".to_string(), state)],
    )
}

/// The snapshot of `states` with check's findings on them.
fn built(
    source: &str,
    cluster: crate::model::Cluster,
    states: Vec<(String, NodeState)>,
) -> Snapshot {
    let findings = crate::check::run(&cluster, &states);
    Snapshot::build(source.into(), Arc::new(cluster), Arc::new(states), findings)
}

fn screen(app: &App, w: u16, h: u16) -> String {
    view::to_text(app, w, h)
}

fn compare(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tui")
        .join(format!("{name}.txt"));
    if std::env::var_os("KD_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (KD_BLESS=1 writes it)", path.display()));
    assert_eq!(got, want, "{name} differs from {}", path.display());
}

fn app(s: Snapshot, view: View) -> App {
    let mut a = App::new();
    a.snapshot = Some(Arc::new(s));
    if view != View::Overview {
        a.stack.push(view);
    }
    a
}

#[test]
fn overview_of_a_healthy_node() {
    let got = screen(&app(snapshot(|_| {}), View::Overview), 170, 16);
    assert!(
        got.contains("k8s-node-12") && got.contains("0 findings, 0 errors"),
        "{got}"
    );
    compare("overview-healthy", &got);
}

#[test]
fn overview_and_node_with_a_missing_route_and_a_wrong_neighbour() {
    let s = snapshot(|st| {
        st.routes.retain(|r| r.dst.to_string() != "10.2.0.0/24");
        for n in st
            .neighs
            .iter_mut()
            .filter(|n| n.dst.to_string() == "10.2.1.0")
        {
            n.lladdr = Some("02:00:00:00:00:99".into());
        }
    });
    let over = screen(&app(s.clone(), View::Overview), 170, 16);
    assert!(
        over.contains("route-missing") && over.contains("neigh-wrong-mac"),
        "{over}"
    );
    compare("overview-faults", &over);
    let node = screen(&app(s, View::Node("k8s-node-12".into())), 110, 20);
    let line = |needle: &str| {
        node.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}:\n{node}"))
            .to_string()
    };
    assert!(line("route  10.2.0.0/24").contains("missing"), "{node}");
    assert!(line("10.2.1.0 lladdr").contains("wrong"), "{node}");
    assert!(line("route  10.2.1.0/24").contains("ok"), "{node}");
    compare("node-faults", &node);
}

/// A node kube-proxy programs in nftables mode: the node view lists its
/// table's Service elements and their DNATs (the real kube-proxy 1.32's
/// table), a Service with no element is listed as missing.
#[test]
fn the_node_view_shows_kube_proxys_nftables_table() {
    fn nftables(st: &mut NodeState) {
        st.iptables[0]
            .ruleset
            .tables
            .iter_mut()
            .for_each(|t| t.retain_chains(|c| !c.name.starts_with("KUBE-")));
        st.nft_tables = vec![crate::dataplane::nftables::NftTable {
            family: "ip".into(),
            name: "kube-proxy".into(),
        }]
        .into();
        st.kube_proxy_nft = Some(
            crate::dataplane::nftables::KubeProxyTable::parse_json(include_str!(
                "../../tests/fixtures/nftables/real/k8s-1.32-kube-proxy-node-12.ip-kube-proxy.json"
            ))
            .unwrap(),
        );
    }
    let node = screen(
        &app(snapshot(nftables), View::Node("k8s-node-12".into())),
        140,
        60,
    );
    let line = |needle: &str| {
        node.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}:\n{node}"))
            .to_string()
    };
    assert!(
        line("10.1.59.153 . tcp . 80 → service-ATYLZNHX").contains("ok"),
        "{node}"
    );
    assert!(line("→ dnat to 10.2.1.117:80").contains("ok"), "{node}");
    let missing = snapshot(|st| {
        nftables(st);
        if let Some(t) = st.kube_proxy_nft.as_mut() {
            t.service_ips
                .retain(|((ip, _, _), _)| ip.to_string() != "10.1.59.153");
        }
    });
    let node = screen(&app(missing, View::Node("k8s-node-12".into())), 140, 60);
    assert!(
        node.lines().any(
            |l| l.contains("linux0224-nginx (no element in service-ips)") && l.contains("missing")
        ),
        "{node}"
    );
}

#[test]
fn the_last_change_names_what_appeared_and_went() {
    let mut a = App::new();
    let epoch = std::time::UNIX_EPOCH;
    a.update(snapshot(|_| {}), epoch);
    assert_eq!(a.last_change, None);
    let broken = snapshot(|st| st.routes.retain(|r| r.dst.to_string() != "10.2.0.0/24"));
    a.update(broken, epoch + std::time::Duration::from_secs(3_723));
    assert_eq!(
        a.last_change.as_deref(),
        Some("01:02:03 UTC +route-missing (k8s-node-12)")
    );
    a.update(
        snapshot(|_| {}),
        epoch + std::time::Duration::from_secs(3_724),
    );
    assert_eq!(
        a.last_change.as_deref(),
        Some("01:02:04 UTC -route-missing (k8s-node-12)")
    );
    let got = screen(&a, 100, 16);
    assert!(
        got.contains("last change: 01:02:04 UTC -route-missing"),
        "{got}"
    );
}

/// The snapshot a new one replaces is let go of on a thread of its own
/// (`snapshot::retire`), and freed there.
#[test]
fn a_replaced_snapshot_is_freed() {
    let mut a = App::new();
    let first = Arc::new(snapshot(|_| {}));
    let gone = Arc::downgrade(&first);
    a.update(first, std::time::UNIX_EPOCH);
    a.update(snapshot(|_| {}), std::time::UNIX_EPOCH);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gone.upgrade().is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(gone.upgrade().is_none(), "the first snapshot is still held");
}

/// The same shared findings are no change; a node's run that differs is
/// read for what it gained and lost, and only it.
#[test]
fn the_last_change_reads_only_the_nodes_whose_findings_changed() {
    use super::snapshot::changes;
    use crate::check::FindingId;
    let a = snapshot(|st| st.routes.retain(|r| r.dst.to_string() != "10.2.0.0/24"));
    let mut b = a.clone();
    assert_eq!(changes(&a, &b), Vec::<String>::new());
    let mut findings: Vec<_> = b.findings.iter().cloned().collect();
    let route = findings
        .iter()
        .position(|f| f.id == FindingId::RouteMissing)
        .expect("the route's finding");
    findings.remove(route);
    b.findings = findings.into();
    assert_eq!(changes(&a, &b), ["-route-missing (k8s-node-12)"]);
    assert_eq!(changes(&b, &a), ["+route-missing (k8s-node-12)"]);
}

#[test]
fn a_small_terminal_gets_a_message_not_a_garbled_screen() {
    let got = screen(&app(snapshot(|_| {}), View::Overview), 40, 8);
    assert!(got.starts_with("terminal too small: 40x8"), "{got}");
}

#[test]
fn no_cluster_says_why() {
    let mut a = App::new();
    a.error = Some("lab seed is not up: run `knetdoctor lab up`".into());
    let got = screen(&a, 80, 12);
    assert!(got.contains("lab seed is not up"), "{got}");
}

#[test]
fn the_repair_view_shows_the_plan_and_asks_before_applying() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let key = |a: &mut App, c: char| a.key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    let s = snapshot(|st| st.routes.retain(|r| r.dst.to_string() != "10.2.0.0/24"));
    let mut a = app(s, View::Node("k8s-node-12".into()));
    key(&mut a, 'r');
    assert_eq!(a.view(), &View::Repair("k8s-node-12".into()));
    let got = screen(&a, 110, 14);
    assert!(
        got.contains("1. ip route replace 10.2.0.0/24 via 10.2.0.0 dev flannel.1 onlink")
            && got.contains("why: route-missing"),
        "{got}"
    );
    compare("repair-route-missing", &got);
    key(&mut a, 'a');
    assert!(screen(&a, 110, 14).contains("apply the repair plan to k8s-node-12? (y/n)"));
    key(&mut a, 'n');
    assert_eq!(
        (a.jobs.as_slice(), a.status.as_deref()),
        (&[][..], Some("nothing changed"))
    );
    key(&mut a, 'a');
    key(&mut a, 'y');
    assert_eq!(a.jobs, vec![Job::Repair("k8s-node-12".into())]);
    // A clean node has nothing to apply.
    let mut clean = app(snapshot(|_| {}), View::Repair("k8s-node-12".into()));
    key(&mut clean, 'a');
    assert_eq!(
        clean.status.as_deref(),
        Some("nothing to repair on k8s-node-12")
    );
}

#[test]
fn kube_proxy_s_tree_is_drawn_and_a_missing_service_chain_marked() {
    let s = snapshot(|st| {
        for b in &mut st.iptables {
            let nat = b.ruleset.table_mut("nat");
            let svc: Vec<String> = nat
                .chains()
                .iter()
                .filter(|c| c.name.starts_with("KUBE-SVC-"))
                .filter(|c| c.rules.iter().any(|r| r.contains("linux0224-nginx")))
                .map(|c| c.name.clone())
                .collect();
            for c in svc {
                nat.remove_chain(&c);
            }
        }
    });
    let mut a = app(s, View::Node("k8s-node-12".into()));
    a.filter = "svc".into();
    let got = screen(&a, 120, 20);
    let line = got
        .lines()
        .find(|l| l.contains("not in KUBE-SERVICES"))
        .unwrap_or_else(|| panic!("{got}"));
    assert!(
        line.contains("missing") && line.contains("kube-proxy-svc-chain-missing"),
        "{line}"
    );
    assert!(
        got.contains("kube-system/kube-dns:dns cluster IP 10.1.0.10:53"),
        "{got}"
    );
}

/// Types `keys` (Enter as \n, Esc as \x1b, Down as \x02).
fn press(a: &mut App, keys: &str) {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    for c in keys.chars() {
        let code = match c {
            '\n' => KeyCode::Enter,
            '\x1b' => KeyCode::Esc,
            '\x02' => KeyCode::Down,
            c => KeyCode::Char(c),
        };
        a.key(KeyEvent::new(code, KeyModifiers::NONE));
    }
}

#[test]
fn resources_link_a_service_down_to_its_pods_and_nodes_and_mark_the_broken_link() {
    // k8s-node-12 lost its route to the master's pod CIDR: the nginx
    // Service's pod on the master is what that breaks.
    let s = snapshot(|st| st.routes.retain(|r| r.dst.to_string() != "10.2.0.0/24"));
    let mut a = app(s, View::Overview);
    press(&mut a, ":svc\n");
    assert_eq!(
        a.view(),
        &View::Resources(Some(super::resources::Kind::Service))
    );
    let got = screen(&a, 120, 16);
    assert!(got.contains("test-svc-ns/linux0224-nginx"), "{got}");
    compare("resources-svc", &got);
    press(&mut a, ":svc linux0224-nginx\n");
    assert_eq!(
        a.view(),
        &View::Object(
            super::resources::Kind::Service,
            "test-svc-ns/linux0224-nginx".into()
        )
    );
    let got = screen(&a, 130, 40);
    assert!(
        got.contains("Service  test-svc-ns/linux0224-nginx") && got.contains("Pod"),
        "{got}"
    );
    let broken = got
        .lines()
        .find(|l| l.contains("broken") && l.contains("from k8s-node-12"))
        .unwrap_or_else(|| panic!("no broken overlay link:\n{got}"));
    assert!(broken.contains("route 10.2.0.0/24 BROKEN"), "{broken}");
    assert!(got.contains("route-missing"), "{got}");
    compare("object-svc-route-missing", &got);
    // Enter on a Pod line opens the pod; Esc comes back.
    let pod_line = match &a.linked {
        Some(Ok(v)) => v.lines.iter().position(|l| l.kind == "Pod").unwrap(),
        _ => panic!("no linked view"),
    };
    a.selected = pod_line;
    press(&mut a, "\n");
    assert!(
        matches!(a.view(), View::Object(super::resources::Kind::Pod, _)),
        "{:?}",
        a.view()
    );
    press(&mut a, "\x1b");
    assert!(matches!(
        a.view(),
        View::Object(super::resources::Kind::Service, _)
    ));
}

#[test]
fn t_picks_the_other_end_by_fuzzy_search_and_queues_the_trace() {
    let s = snapshot(|_| {});
    let mut a = app(s, View::Overview);
    press(&mut a, ":pods\n/busybox\n");
    press(&mut a, "t");
    assert_eq!(a.view(), &View::Trace);
    assert!(a.trace.from.as_deref().unwrap().contains("busybox"));
    press(&mut a, "0224ngx");
    let got = screen(&a, 110, 16);
    assert!(
        got.contains("svc  test-svc-ns/linux0224-nginx") && got.contains("match \"0224ngx\""),
        "{got}"
    );
    compare("trace-pick", &got);
    press(&mut a, "\n");
    assert_eq!(a.trace.to.as_deref(), Some("test-svc-ns/linux0224-nginx"));
    assert!(matches!(a.jobs.last(), Some(Job::Trace { .. })));
    assert_eq!(a.trace.running, Some("trace"));
    // p queues a probe only once the trace is back.
    press(&mut a, "p");
    assert_eq!(a.status.as_deref(), Some("a trace is running"));
    a.trace.running = None;
    press(&mut a, "p");
    assert!(matches!(a.jobs.last(), Some(Job::Probe { .. })));
}

#[test]
fn c_captures_on_the_selected_node_and_leaving_stops_it() {
    let mut a = app(snapshot(|_| {}), View::Node("k8s-node-12".into()));
    press(&mut a, "c");
    assert_eq!(a.view(), &View::Capture("k8s-node-12".into()));
    assert_eq!(a.jobs, vec![Job::CaptureStart("k8s-node-12".into())]);
    press(&mut a, "w\x1b");
    assert_eq!(a.jobs[1..], [Job::CaptureWrite, Job::CaptureStop]);
}

#[test]
fn the_capture_view_shows_the_kernels_drops_beside_the_frames() {
    use crate::capture::drops::KernelDrop;
    use crate::capture::link::Link;
    use crate::tui::capture::{Buffer, Packet};
    let mut a = app(snapshot(|_| {}), View::Node("k8s-node-12".into()));
    press(&mut a, "c");
    let echo = crate::capture::test_frames::icmp_echo([10, 2, 2, 50], [10, 2, 0, 42], 7);
    let mut b = Buffer {
        node: "k8s-node-12".into(),
        interfaces: vec!["cni0".into()],
        running: true,
        ..Default::default()
    };
    let at = std::time::Duration::from_secs(1_700_000_000);
    b.push(Packet::new("cni0".into(), 0.5, at, 98, echo.clone()));
    let drop = KernelDrop {
        reason: "NETFILTER_DROP".into(),
        function: "nf_hook_slow".into(),
        protocol: 0x0800,
        netns: 1,
        ifindex: 5,
        ts_nanos: 0,
        link: Link::Ethernet,
        header: echo,
    };
    b.push_drop(0.5012, "cni0", &drop);
    b.push_drop(0.7, "cni0", &drop);
    a.capture = Some(std::sync::Arc::new(std::sync::Mutex::new(b)));
    let got = screen(&a, 120, 16);
    assert!(
        got.contains("kernel drops on k8s-node-12: NETFILTER_DROP 2×"),
        "{got}"
    );
    assert!(
        got.contains(
            " 0.501200  cni0  NETFILTER_DROP in nf_hook_slow: IP 10.2.2.50 > 10.2.0.42: ICMP echo request, id 7, seq 1"
        ),
        "{got}"
    );
    // Without the kernel's drops, the pane says why rather than nothing.
    if let Some(c) = &a.capture {
        c.lock().unwrap().drops_note = Some("not root".into());
    }
    assert!(screen(&a, 120, 16).contains("not read: not root"));
}

#[test]
fn the_history_lists_repairs_newest_first_and_u_asks_before_undoing() {
    use crate::repair::journal::Journal;
    let mut a = app(snapshot(|_| {}), View::Repair("k8s-node-12".into()));
    press(&mut a, "h");
    assert_eq!(a.view(), &View::History("k8s-node-12".into()));
    assert_eq!(a.jobs, vec![Job::History("k8s-node-12".into())]);
    let mut old = Journal::new("k8s-node-12", Vec::new());
    old.id = "20261122T100000-1".into();
    old.undone = true;
    let route = crate::repair::journal::Entry {
        action: crate::check::RepairAction::RouteReplace {
            dst: "10.2.0.0/24".parse().unwrap(),
            gateway: "10.2.0.0".parse().unwrap(),
            dev: "flannel.1".into(),
            onlink: true,
        },
        finding: crate::check::FindingId::RouteMissing,
        before: crate::repair::plan::Before::Route { route: None },
        applied: true,
        error: None,
        unanswered: false,
        restore: Default::default(),
    };
    old.status = crate::repair::journal::Status::Undone;
    let mut new = Journal::new("k8s-node-12", vec![route]);
    new.status = crate::repair::journal::Status::Finished;
    new.id = "20261122T110000-2".into();
    a.history = Some(("k8s-node-12".into(), Ok(vec![old, new])));
    let got = screen(&a, 100, 12);
    let first = got.lines().position(|l| l.contains("T110000")).unwrap();
    let second = got.lines().position(|l| l.contains("T100000")).unwrap();
    assert!(first < second && got.contains("undone"), "{got}");
    // The selected repair's journal: each change and whether it was made.
    assert!(
        got.contains("made     ip route replace 10.2.0.0/24 via 10.2.0.0 dev flannel.1 onlink  (route-missing)"),
        "{got}"
    );
    compare("history", &got);
    press(&mut a, "u");
    assert!(screen(&a, 100, 12).contains("undo repair 20261122T110000-2 on k8s-node-12"));
    press(&mut a, "y");
    assert_eq!(
        a.jobs.last(),
        Some(&Job::Undo {
            node: "k8s-node-12".into(),
            id: "20261122T110000-2".into()
        })
    );
    a.applying = false;
    // Moving past the last line keeps the last one selected, as drawn.
    press(&mut a, "\x02\x02\x02u");
    assert_eq!(
        a.status.as_deref(),
        Some("repair 20261122T100000-1 is already undone")
    );
}

#[test]
fn a_click_selects_the_line_under_the_mouse_and_the_wheel_moves() {
    use crossterm::event::{KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
    let mut a = app(snapshot(|_| {}), View::Overview);
    press(&mut a, ":pods\n");
    let _ = screen(&a, 100, 20);
    let at = a.list_at.get();
    let click = |row| MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 5,
        row,
        modifiers: KeyModifiers::NONE,
    };
    a.mouse(click(at.top + 2));
    assert_eq!(a.selected, 2);
    a.mouse(click(0));
    assert_eq!(a.selected, 2, "a click outside the list selects nothing");
    a.mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        ..click(0)
    });
    assert_eq!(a.selected, 5);
}

#[test]
fn in_ipvs_mode_the_node_view_lists_virtual_servers_marked_by_check() {
    let (cluster, mut state) = crate::check::fixtures::ipvs_seed();
    for v in state.ipvs.iter_mut().filter(|v| v.addr == "10.1.59.153:80") {
        v.reals.retain(|r| r.addr != "10.2.2.132:80");
    }
    state
        .ipvs
        .retain(|v| v.addr != "10.1.0.10:53" || v.proto != "tcp");
    let states = vec![("k8s-node-12".to_string(), state)];
    let findings = crate::check::run(&cluster, &states);
    let s = Snapshot::build(
        "lab seed".into(),
        Arc::new(cluster),
        Arc::new(states),
        findings,
    );
    let mut a = app(s, View::Node("k8s-node-12".into()));
    a.filter = "10.".into();
    let got = screen(&a, 130, 40);
    let line = |what: &str| {
        got.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?}:\n{got}"))
            .to_string()
    };
    assert!(
        line("tcp 10.1.59.153:80 rr  (2 real)").contains("wrong"),
        "{got}"
    );
    assert!(line("tcp 10.1.59.153:80 rr").contains("ipvs-real-servers-mismatch"));
    assert!(line("tcp 10.1.0.1:443 rr").starts_with("│ok"), "{got}");
    let missing = line("tcp/10.1.0.10:53");
    assert!(
        missing.contains("missing") && missing.contains("not on the node"),
        "{missing}"
    );
    assert!(
        !got.contains("KUBE-SVC-"),
        "IPVS mode draws no iptables tree:\n{got}"
    );
    compare("node-ipvs", &got);
}

/// The cluster-faults bundle (tests/fixtures/README.md): on k8s-node-12
/// `sep-stale` left the nginx Service's chain picking an endpoint chain of
/// a pod that is gone, and missing the one of the pod that replaced it.
fn bundle_snapshot(bundle: &str) -> Snapshot {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bundles")
        .join(bundle);
    let cluster = crate::inspect::bundle::read_cluster(&dir).unwrap();
    let states: Vec<(String, NodeState)> = crate::inspect::bundle::node_names(&dir)
        .unwrap()
        .into_iter()
        .map(|n| {
            let s = crate::inspect::bundle::read_node(&dir, &n).unwrap();
            (n, s)
        })
        .collect();
    built("bundle", cluster, states)
}

#[test]
fn a_stale_endpoint_chain_reads_stale_and_a_missing_one_is_listed_missing() {
    use super::snapshot::Mark;
    let s = bundle_snapshot("cluster-faults");
    let entries = &s.entries["k8s-node-12"];
    let line = |chain: &str| {
        entries
            .iter()
            .find(|e| e.kind == "sep" && e.expected.contains(chain))
            .unwrap_or_else(|| panic!("no line for {chain}: {entries:#?}"))
    };
    assert_eq!(line("KUBE-SEP-HTFKAUWJFJMOGJXH").mark, Mark::Stale);
    assert_eq!(line("KUBE-SEP-36QPZ33L7ZOWITBF").mark, Mark::Missing);
    assert!(
        line("KUBE-SEP-36QPZ33L7ZOWITBF")
            .expected
            .contains("not on the node")
    );
    // The endpoints that are right stay ok, the Service's line is wrong.
    assert_eq!(line("KUBE-SEP-F2LHLJVM5R2J2AS3").mark, Mark::Ok);
    let svc = entries
        .iter()
        .find(|e| e.kind == "svc" && e.expected.contains("KUBE-SVC-K2WYTW5CBKHCXKSG"))
        .unwrap();
    assert_eq!(svc.mark, Mark::Wrong);
}

/// `tui -n NS`: that namespace's objects and the nodes; a finding about
/// another namespace's Service is not shown or counted, a node's own is.
#[test]
fn one_namespace_shows_its_objects_and_the_nodes() {
    use super::resources::Kind;
    let s = snapshot(|st| {
        // A missing overlay route (the node's) and kube-dns's chain gone
        // (kube-system's Service).
        st.routes.retain(|r| r.dst.to_string() != "10.2.0.0/24");
        for t in &mut st.iptables[0].ruleset.tables {
            t.retain_chains(|c| {
                c.name != crate::model::hash::svc_chain("kube-system/kube-dns:dns", "udp")
            });
        }
    });
    let all_ids: Vec<_> = s.findings.iter().map(|f| f.id).collect();
    assert!(
        all_ids.contains(&crate::check::FindingId::KubeProxySvcChainMissing),
        "{all_ids:?}"
    );
    let scoped = s.clone().in_namespace("test-svc-ns");
    let ids: Vec<_> = scoped.findings.iter().map(|f| f.id).collect();
    assert!(
        ids.contains(&crate::check::FindingId::RouteMissing),
        "{ids:?}"
    );
    assert!(!ids.contains(&crate::check::FindingId::KubeProxySvcChainMissing));
    let row = |s: &Snapshot| {
        s.nodes
            .iter()
            .find(|n| n.name == "k8s-node-12")
            .map(|n| (n.node_findings, n.proxy_findings))
            .unwrap()
    };
    assert_eq!(row(&scoped).0, row(&s).0, "the node's own findings stay");
    assert!(row(&scoped).1.iter().sum::<usize>() < row(&s).1.iter().sum::<usize>());
    assert!(scoped.resources.rows().all(|r| match r.kind {
        Kind::Node => true,
        Kind::Dns => r.name.contains(".test-svc-ns."),
        _ => r.name.starts_with("test-svc-ns/"),
    }));
    assert!(scoped.resources.rows().any(|r| r.kind == Kind::Service));
    assert_eq!(
        scoped
            .resources
            .rows()
            .filter(|r| r.kind == Kind::Node)
            .count(),
        s.resources.rows().filter(|r| r.kind == Kind::Node).count()
    );
    assert!(scoped.source.ends_with("namespace test-svc-ns"));
    // Each line kept keeps its mark; the node, marked by its route, too.
    let marks = |s: &Snapshot| -> Vec<(String, Option<crate::check::FindingId>)> {
        s.listed()
            .map(|l| (l.name.to_string(), l.finding))
            .collect()
    };
    let all = marks(&s);
    for line in marks(&scoped) {
        assert!(all.contains(&line), "{line:?}");
    }
    assert!(
        scoped
            .listed()
            .any(|l| l.name == "k8s-node-12" && l.finding.is_some())
    );
    let svc = scoped
        .listed()
        .position(|l| l.kind == Kind::Service)
        .unwrap();
    assert_eq!(
        scoped
            .listed()
            .find(|l| l.name.starts_with("test-svc-ns/") && l.kind == Kind::Service),
        scoped.listed().nth(svc)
    );
}

/// Two snapshots show the same: entries, plans, resources and marks.
fn assert_same_views(a: &Snapshot, b: &Snapshot) {
    assert_eq!(a.entries, b.entries);
    assert_eq!(
        a.plans.keys().collect::<Vec<_>>(),
        b.plans.keys().collect::<Vec<_>>()
    );
    for n in a.plans.keys() {
        assert_eq!(a.plan(n), b.plan(n), "{n}'s plan");
    }
    assert_eq!(a.resources, b.resources);
    assert_eq!(a.marks(), b.marks());
    assert_eq!(a.trace_targets, b.trace_targets);
    assert_eq!(a.nodes, b.nodes);
    assert_eq!(a.totals, b.totals);
}

/// Object changes as the live reader sees them (an endpoint NotReady, a
/// pod gone, a node's lease gone), each built after the snapshot before
/// with the kinds that changed: the same as built anew, and what the
/// change did not touch is taken over, not built again.
#[test]
fn a_snapshot_after_an_object_change_equals_one_built_anew() {
    use crate::check::incremental::Verdicts;
    use crate::dataplane::iptables::save;
    use crate::dataplane::state::IptablesBackendState;
    use crate::model::reading::ApiKind;
    use crate::synthetic::{self, Size};
    let cluster = synthetic::cluster(Size {
        nodes: 6,
        pods: 12,
        services: 3,
        endpoints_per_service: 2,
    });
    let states: Arc<Vec<(String, NodeState)>> = Arc::new(
        (0..3)
            .map(|i| {
                let mut s = synthetic::node_state(&cluster, i);
                s.iptables = vec![IptablesBackendState {
                    backend: "nft".into(),
                    ruleset: save::parse(&synthetic::iptables_text(&cluster, i)).unwrap(),
                    raw: None,
                }]
                .into();
                (format!("node-{i:05}"), s)
            })
            .collect(),
    );
    let mut verdicts = Verdicts::new();
    let all = ApiKind::ALL.into_iter().collect();
    let findings = verdicts.update(&cluster, &all, &states);
    let mut last = Snapshot::build_after(
        "s".into(),
        Arc::new(cluster),
        states.clone(),
        findings,
        None,
    );
    type Change = fn(&mut crate::model::Cluster);
    let changes: [(&str, Change); 5] = [
        ("an endpoint NotReady", |c| {
            let e = &mut c.endpoint_slices[0].endpoints[0];
            e.conditions.get_or_insert_with(Default::default).ready = Some(false);
        }),
        ("a pod NotReady", |c| {
            let status = c.pods[5].status.get_or_insert_default();
            for r in status.conditions.iter_mut().flatten() {
                r.status = "False".into();
            }
        }),
        ("a pod's IP changed", |c| {
            c.pods[5].status.get_or_insert_default().pod_ip = Some("10.244.9.9".into());
        }),
        ("a pod gone", |c| {
            c.pods.remove(5);
        }),
        ("a node's lease gone", |c| {
            c.nodes[4].metadata.annotations = None;
        }),
    ];
    for (what, change) in changes {
        let mut c = (*last.cluster).clone();
        change(&mut c);
        c.invalidate_index();
        c.reuse_index_of(&last.cluster);
        let changed = c.changed_kinds(&last.cluster);
        assert_eq!(changed.len(), 1, "{what}: one kind changed");
        let c = Arc::new(c);
        let findings = verdicts.update(&c, &changed, &states);
        let full = crate::check::run(&c, &states);
        assert!(
            findings.iter().map(|f| &**f).eq(&full),
            "{what}: the kept verdicts"
        );
        let s = Snapshot::build_after(
            "s".into(),
            c.clone(),
            states.clone(),
            findings,
            Some(After {
                snapshot: &last,
                changed: &changed,
                verdicts: Some(&verdicts),
            }),
        );
        let anew = Snapshot::build("s".into(), c, states.clone(), full);
        assert_same_views(&s, &anew);
        let kept = |f: fn(&super::snapshot::NodeEntries) -> &super::snapshot::Blocks| {
            f(&s.entries["node-00000"]).same(f(&last.entries["node-00000"]))
        };
        let proxy = |s: &Snapshot| s.entries["node-00000"].proxy.clone();
        match what {
            "a node's lease gone" => {
                assert!(
                    proxy(&s).same(&proxy(&last)),
                    "{what}: kube-proxy's lines kept"
                );
                assert!(!kept(|e| &e.overlay), "{what}: flannel's built again");
            }
            _ => assert!(kept(|e| &e.overlay), "{what}: flannel's lines kept"),
        }
        if what == "an endpoint NotReady" {
            // The Service whose chains the finding names, and the block
            // of chains no rule jumps to, are marked again; the others
            // are kept.
            let (kept, blocks) = proxy(&s).kept_from(&proxy(&last));
            assert_eq!(kept, blocks - 2, "{what}: one Service marked again");
        }
        // A ClusterIP Service's endpoints are not in its DNS name, a pod's
        // status is not in its line: the resources list is kept whole.
        let status_only = ["an endpoint NotReady", "a pod NotReady"].contains(&what);
        assert_eq!(
            s.resources.same(&last.resources),
            status_only,
            "{what}: the resources list"
        );
        // An unread node's row, its findings unchanged, is shared while
        // the nodes and what the pods' index reads are the same.
        assert_eq!(
            Arc::ptr_eq(&s.nodes[5], &last.nodes[5]),
            status_only,
            "{what}: an unread node's row"
        );
        let tree = |s: &Snapshot| s.entries["node-00000"].tree.clone().expect("iptables mode");
        assert!(
            Arc::ptr_eq(&tree(&s), &tree(&last)),
            "{what}: kube-proxy's chains as read are kept (the rules did not change)"
        );
        last = s;
    }
    assert!(
        last.findings.iter().any(|f| f.id.is_kube_proxy()),
        "the NotReady endpoint's chain is found stale"
    );
}

#[test]
fn a_snapshot_built_after_another_equals_one_built_anew() {
    use crate::synthetic::{self, Size};
    let cluster = synthetic::cluster(Size {
        nodes: 6,
        pods: 12,
        services: 3,
        endpoints_per_service: 2,
    });
    let states = |c: &crate::model::Cluster| -> Vec<(String, NodeState)> {
        (0..3)
            .map(|i| (format!("node-{i:05}"), synthetic::node_state(c, i)))
            .collect()
    };
    let before = built("synthetic", cluster.clone(), states(&cluster));
    // Node 1 loses a route to a peer; nodes 0 and 2 stay as they were.
    let mut changed = states(&cluster);
    let gone = changed[1]
        .1
        .routes
        .iter()
        .position(|r| r.gateway.is_some())
        .unwrap();
    changed[1].1.routes.remove(gone);
    let findings = crate::check::run(&cluster, &changed);
    let cluster = Arc::new(cluster);
    let changed = Arc::new(changed);
    let nothing = Default::default();
    let after = Snapshot::build_after(
        "synthetic".into(),
        cluster.clone(),
        changed.clone(),
        crate::check::share(findings.clone()).into(),
        Some(After {
            snapshot: &before,
            changed: &nothing,
            verdicts: None,
        }),
    );
    // The reader's way: kept verdicts judge the change and hand the
    // snapshot what they compared (node 1's state and rulesets), so it
    // compares nothing again; the snapshot is the same.
    let mut kept = crate::check::incremental::Verdicts::new();
    let first = Arc::new(states(&cluster));
    let judged = kept.update(
        &cluster,
        &crate::model::reading::ApiKind::ALL.into_iter().collect(),
        &first,
    );
    let previous = Snapshot::build_after(
        "synthetic".into(),
        cluster.clone(),
        first.clone(),
        judged,
        None,
    );
    let judged = kept.update(&cluster, &Default::default(), &changed);
    assert!(judged.iter().map(|f| &**f).eq(&findings));
    let node1 = kept.compared(&first, "node-00001").unwrap();
    assert!(!node1.state_same && node1.rules_same == Some(true));
    assert!(kept.compared(&first, "node-00000").unwrap().state_same);
    assert_eq!(
        kept.compared(&changed, "node-00000"),
        None,
        "not what it compared with"
    );
    let via_kept = Snapshot::build_after(
        "synthetic".into(),
        cluster.clone(),
        changed.clone(),
        judged,
        Some(After {
            snapshot: &previous,
            changed: &nothing,
            verdicts: Some(&kept),
        }),
    );
    let anew = Snapshot::build(
        "synthetic".into(),
        cluster.clone(),
        changed.clone(),
        findings,
    );
    assert_same_views(&via_kept, &anew);
    assert_same_views(&after, &anew);
    assert!(
        after
            .listed()
            .any(|l| l.name == "node-00001" && l.finding.is_some()),
        "the node is marked by its finding"
    );
    assert!(
        before.listed().all(|l| l.finding.is_none()),
        "nothing marked before"
    );
    assert_eq!(after.entries["node-00000"], before.entries["node-00000"]);
    assert_ne!(after.entries["node-00001"], before.entries["node-00001"]);
    assert!(
        after.entries["node-00001"]
            .iter()
            .any(|e| e.kind == "route" && e.mark == super::snapshot::Mark::Missing),
        "the route is marked missing"
    );
}

/// A node of 150 (149 peers: three blocks of flannel's lines) changing
/// as the kernel tells it, through the kept verdicts: a route to a peer
/// of the second block gone, then back, then a stale FDB entry (a line
/// no peer explains), then flannel.1 down. Each snapshot equals one built
/// anew; a peer's change marks its block again and shares the others.
#[test]
fn a_peers_change_marks_its_block_of_flannels_lines_again() {
    use crate::synthetic::{self, Size};
    let cluster = Arc::new(synthetic::cluster(Size {
        nodes: 150,
        pods: 150,
        services: 3,
        endpoints_per_service: 2,
    }));
    let healthy = synthetic::node_state(&cluster, 1);
    let peer = 100;
    let gw = crate::model::flannel::Lease::from_node(&cluster.nodes[peer])
        .unwrap()
        .gateway();
    let mut no_route = healthy.clone();
    no_route
        .routes
        .retain(|r| r.gateway != Some(std::net::IpAddr::V4(gw)));
    assert_eq!(no_route.routes.len() + 1, healthy.routes.len());
    let mut stale_fdb = healthy.clone();
    let mut extra = stale_fdb.fdb[0].clone();
    extra.mac = "02:00:00:00:99:99".parse().unwrap();
    stale_fdb.fdb.push(extra);
    let mut vtep_down = healthy.clone();
    for l in &mut vtep_down.links {
        if l.name == crate::model::flannel::VTEP_DEVICE {
            l.up = false;
        }
    }
    let mut verdicts = crate::check::incremental::Verdicts::new();
    let states = Arc::new(vec![("node-00001".to_string(), healthy.clone())]);
    let all = crate::model::reading::ApiKind::ALL.into_iter().collect();
    let found = verdicts.update(&cluster, &all, &states);
    let mut last = Arc::new(Snapshot::build_after(
        "s".into(),
        cluster.clone(),
        states,
        found,
        None,
    ));
    let blocks = last.entries["node-00001"]
        .overlay
        .kept_from(&Blocks::default())
        .1;
    assert_eq!(
        blocks, 5,
        "the devices, three blocks of peers, the unexpected"
    );
    for (what, state, kept) in [
        ("a route gone", &no_route, blocks - 1),
        ("the route back", &healthy, blocks - 1),
        ("a stale FDB entry", &stale_fdb, 0),
        ("back again", &healthy, 0),
        ("flannel.1 down", &vtep_down, 0),
    ] {
        let states = Arc::new(vec![("node-00001".to_string(), state.clone())]);
        let found = verdicts.update(&cluster, &Default::default(), &states);
        let s = Arc::new(Snapshot::build_after(
            "s".into(),
            cluster.clone(),
            states.clone(),
            found,
            Some(After {
                snapshot: &last,
                changed: &Default::default(),
                verdicts: Some(&verdicts),
            }),
        ));
        let anew = built("s", (*cluster).clone(), (*states).clone());
        assert_same_views(&s, &anew);
        let overlay = |s: &Snapshot| s.entries["node-00001"].overlay.clone();
        assert_eq!(
            overlay(&s).kept_from(&overlay(&last)).0,
            kept,
            "{what}: the blocks shared"
        );
        last = s;
    }
    let summary = last.entries["node-00001"].summary;
    assert_eq!((summary.peers_ok, summary.peers), (0, 149));
}

/// The overview says, per node, what was read and how, or why nothing was:
/// a node not read is never a blank "ok".
#[test]
fn the_overview_says_what_was_read_and_why_the_others_were_not() {
    use crate::access::ReadVia;
    use crate::check::reach::{NotRead, Unreached};
    let s = snapshot(|_| {}).with_reading(&super::snapshot::Reading {
        at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(3600 * 5 + 61),
        via: vec![("k8s-node-12".into(), ReadVia::Lab)],
        not_read: std::sync::Arc::new(vec![
            NotRead {
                node: "k8s-master-10".into(),
                why: Unreached::OutOfReach,
            },
            NotRead {
                node: "k8s-node-11".into(),
                why: Unreached::AgentSilent { seconds: 40 },
            },
        ]),
    });
    let got = screen(&app(s, View::Overview), 220, 12);
    let line = |node: &str| {
        got.lines()
            .find(|l| l.contains(node))
            .unwrap_or_else(|| panic!("no {node}:\n{got}"))
            .to_string()
    };
    let n12 = line("k8s-node-12");
    for part in [
        "    2 10.2.2.0/24",
        "peers 2/2",
        "iptables 5 svc",
        "iptables-nft",
        " lab ",
        "vtep e2:0a:fd:42:02:2e 192.168.56.12",
    ] {
        assert!(n12.contains(part), "{part:?} in {n12}");
    }
    assert!(
        line("k8s-master-10").contains("not read: out of reach from here"),
        "{got}"
    );
    assert!(
        line("k8s-node-11").contains("not read: its agent has not renewed for 40 s"),
        "{got}"
    );
    assert!(got.contains("1 read at 05:01:01 UTC"), "{got}");
    assert!(
        got.contains("3 nodes, 7 pods, 4 Services, 9/9 endpoints ready, 1 Ingress"),
        "{got}"
    );
    compare("overview-reading", &got);
}

/// A snapshot built after another, from the same rows, with the same
/// reading (the reader keeps the list of unread nodes) or another: its
/// rows are those of a snapshot built anew with that reading.
#[test]
fn rows_after_a_change_and_a_reading_equal_rows_built_anew() {
    use crate::access::ReadVia;
    use crate::check::reach::{NotRead, Unreached};
    use crate::model::reading::ApiKind;
    let reading = |why: Unreached| super::snapshot::Reading {
        at: std::time::UNIX_EPOCH,
        via: vec![("k8s-node-12".into(), ReadVia::Lab)],
        not_read: Arc::new(vec![NotRead {
            node: "k8s-node-11".into(),
            why,
        }]),
    };
    let (cluster, state) = crate::check::fixtures::seed();
    let states = Arc::new(vec![("k8s-node-12".to_string(), state)]);
    let first = reading(Unreached::OutOfReach);
    let last = built("s", cluster.clone(), (*states).clone()).with_reading(&first);
    // A peer's route gone from the read node: its row's counts change.
    let mut broken = (*states).clone();
    let gone = (broken[0].1.routes.iter())
        .position(|r| r.gateway.is_some())
        .expect("a peer route");
    broken[0].1.routes.remove(gone);
    let broken = Arc::new(broken);
    let cluster = last.cluster.clone();
    for (what, r) in [
        ("the same reading", first.clone()),
        (
            "another reason",
            reading(Unreached::AgentSilent { seconds: 9 }),
        ),
    ] {
        let findings = crate::check::run(&cluster, &broken);
        let after = Snapshot::build_after(
            "s".into(),
            cluster.clone(),
            broken.clone(),
            crate::check::Findings::of_sorted(crate::check::share(findings.clone())),
            Some(After {
                snapshot: &last,
                changed: &std::collections::BTreeSet::<ApiKind>::new(),
                verdicts: None,
            }),
        )
        .with_reading(&r);
        let anew =
            Snapshot::build("s".into(), cluster.clone(), broken.clone(), findings).with_reading(&r);
        assert_eq!(after.nodes, anew.nodes, "{what}");
        assert_ne!(after.nodes, last.nodes, "{what}: a row changed");
        let n11 = after.nodes.iter().find(|r| r.name == "k8s-node-11");
        assert_eq!(
            n11.and_then(|r| r.not_read.as_ref()),
            Some(&r.not_read[0].why),
            "{what}: the reason said"
        );
    }
}

/// The 5,000-node synthetic cluster's overview: every node a line, the
/// read one with its 4,999 peers, the others saying they were not read.
/// (Its frame time is tui_render's: the overview draws only the lines on
/// screen.)
#[test]
fn the_overview_of_five_thousand_nodes_says_what_each_is() {
    use crate::synthetic::{self, Size};
    let cluster = synthetic::cluster(Size {
        nodes: 5000,
        pods: 10_000,
        services: 20,
        endpoints_per_service: 2,
    });
    let mut state = synthetic::node_state(&cluster, 0);
    let gone = state
        .routes
        .iter()
        .position(|r| r.gateway.is_some())
        .unwrap();
    state.routes.remove(gone);
    let s = built("synthetic", cluster, vec![("node-00000".into(), state)]);
    assert_eq!(s.nodes.len(), 5000);
    let row = &s.nodes[0];
    let summary = row.summary.unwrap();
    assert_eq!((summary.peers_ok, summary.peers), (4998, 4999));
    assert_eq!(row.pods, 2);
    let got = screen(&app(s, View::Overview), 220, 12);
    assert!(got.contains("5000 nodes, 10000 pods, 20 Services"), "{got}");
    assert!(got.contains("peers 4998/4999"), "{got}");
    let other = got.lines().find(|l| l.contains("node-00001")).unwrap();
    assert!(other.contains("not read"), "{got}");
}

/// A reading the API server refused in part says so in the header, and
/// each refused list is a finding on the overview (api-unreadable).
#[test]
fn a_reading_refused_in_part_says_so() {
    use crate::model::reading::{ApiKind, Unreadable};
    let (mut cluster, state) = crate::check::fixtures::seed();
    cluster.nodes.clear();
    cluster.unread = vec![Unreadable {
        kind: ApiKind::Nodes,
        namespace: None,
        code: 403,
        message: "nodes is forbidden: User \"lab-team\" cannot list resource \"nodes\"".into(),
        read_instead: None,
    }];
    cluster.invalidate_index();
    let s = built(
        "lab seed",
        cluster,
        vec![("k8s-node-12".to_string(), state)],
    );
    let text = screen(&app(s, View::Overview), 200, 40);
    assert!(text.contains("read in part: 1 list refused"), "{text}");
    assert!(text.contains("api-unreadable"), "{text}");
    // A complete reading says nothing of it.
    let text = screen(&app(snapshot(|_| {}), View::Overview), 200, 40);
    assert!(!text.contains("read in part"), "{text}");
}

/// A headless Service's name resolves to its ready endpoints: one of them
/// going NotReady lists the DNS names again (the name loses that
/// address); a ClusterIP Service's endpoint leaves the list as it was.
#[test]
fn a_headless_services_endpoint_lists_its_dns_name_again() {
    use crate::check::incremental::Verdicts;
    use crate::model::reading::ApiKind;
    use crate::synthetic::{self, Size};
    let mut cluster = synthetic::cluster(Size {
        nodes: 3,
        pods: 12,
        services: 3,
        endpoints_per_service: 2,
    });
    let headless = cluster.services[0].metadata.name.clone().unwrap();
    let spec = cluster.services[0].spec.as_mut().unwrap();
    spec.cluster_ip = Some("None".into());
    spec.cluster_ips = Some(vec!["None".into()]);
    cluster.invalidate_index();
    let slice_of = |c: &crate::model::Cluster, svc: &str| {
        c.endpoint_slices
            .iter()
            .position(|s| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(crate::model::cluster::SERVICE_NAME_LABEL))
                    == Some(&svc.to_string())
            })
            .unwrap()
    };
    let states = Arc::new(Vec::new());
    let mut verdicts = Verdicts::new();
    let all = ApiKind::ALL.into_iter().collect();
    let findings = verdicts.update(&cluster, &all, &states);
    let mut last = Snapshot::build_after(
        "s".into(),
        Arc::new(cluster),
        states.clone(),
        findings,
        None,
    );
    let other = last.cluster.services[1].metadata.name.clone().unwrap();
    for (svc, listed_again) in [(other, false), (headless, true)] {
        let mut c = (*last.cluster).clone();
        let at = slice_of(&c, &svc);
        let e = &mut c.endpoint_slices[at].endpoints[0];
        e.conditions.get_or_insert_with(Default::default).ready = Some(false);
        c.reuse_index_of(&last.cluster);
        let changed = c.changed_kinds(&last.cluster);
        let c = Arc::new(c);
        let findings = verdicts.update(&c, &changed, &states);
        let s = Snapshot::build_after(
            "s".into(),
            c.clone(),
            states.clone(),
            findings,
            Some(After {
                snapshot: &last,
                changed: &changed,
                verdicts: Some(&verdicts),
            }),
        );
        let anew = Snapshot::build(
            "s".into(),
            c,
            states.clone(),
            crate::check::run(&s.cluster, &states),
        );
        assert_same_views(&s, &anew);
        assert_eq!(!s.resources.same(&last.resources), listed_again, "{svc}");
        last = s;
    }
}
