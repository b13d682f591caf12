//! The views drawn on ratatui's TestBackend from the seed cluster and the
//! node state captured from the seed lab's k8s-node-12, healthy and with
//! faults, compared with the screens stored in tests/fixtures/tui
//! (`KD_BLESS=1 cargo test` writes them anew).

use std::sync::Arc;

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{App, View};
use super::snapshot::Snapshot;
use super::view;
use crate::dataplane::NodeState;

fn snapshot(mutate: impl Fn(&mut NodeState)) -> Snapshot {
    let (cluster, mut state) = crate::check::tests::seed();
    mutate(&mut state);
    let states = vec![("k8s-node-12".to_string(), state)];
    let findings = crate::check::run(&cluster, &states);
    Snapshot::build("lab seed".into(), &cluster, &states, findings)
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::render(f, app)).unwrap();
    let buf = t.backend().buffer();
    (0..h)
        .map(|y| {
            (0..w)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
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
    let got = screen(&app(snapshot(|_| {}), View::Overview), 100, 16);
    assert!(
        got.contains("k8s-node-12") && got.contains("0 findings, 0 errors"),
        "{got}"
    );
    compare("overview-healthy", &got);
}

#[test]
fn overview_and_node_with_a_missing_route_and_a_wrong_neighbour() {
    let s = snapshot(|st| {
        st.routes.retain(|r| r.dst != "10.2.0.0/24");
        for n in st
            .neighs
            .iter_mut()
            .filter(|n| n.dst.to_string() == "10.2.1.0")
        {
            n.lladdr = Some("02:00:00:00:00:99".into());
        }
    });
    let over = screen(&app(s.clone(), View::Overview), 100, 16);
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

#[test]
fn the_last_change_names_what_appeared_and_went() {
    let mut a = App::new();
    let epoch = std::time::UNIX_EPOCH;
    a.update(snapshot(|_| {}), epoch);
    assert_eq!(a.last_change, None);
    let broken = snapshot(|st| st.routes.retain(|r| r.dst != "10.2.0.0/24"));
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
    let s = snapshot(|st| st.routes.retain(|r| r.dst != "10.2.0.0/24"));
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
        (a.apply.as_deref(), a.status.as_deref()),
        (None, Some("nothing changed"))
    );
    key(&mut a, 'a');
    key(&mut a, 'y');
    assert_eq!(a.apply.as_deref(), Some("k8s-node-12"));
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
