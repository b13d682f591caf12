//! `cargo bench --bench tui_render`: the dashboard's busiest views drawn
//! for the 5,000-node synthetic cluster (150,000 pods, 10,000 Services):
//! the overview (5,000 node lines, the findings) and node 0's view (15,000
//! flannel entries and kube-proxy's tree of 10,000 Services and 30,000
//! endpoint chains), plain and filtered as a user types, on a 200x60
//! screen (ratatui's TestBackend). Time per frame; target < 16 ms.

use std::sync::Arc;
use std::time::Instant;

use knetdoctor::dataplane::iptables::save;
use knetdoctor::dataplane::state::IptablesBackendState;
use knetdoctor::synthetic::{self, Size};
use knetdoctor::tui::app::{App, View};
use knetdoctor::tui::snapshot::Snapshot;
use knetdoctor::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn main() {
    let t = Instant::now();
    let cluster = synthetic::cluster(Size::LARGE);
    let mut state = synthetic::node_state(&cluster, 0);
    // A few faults, so that marks and findings are drawn too.
    state.routes.retain(|r| !r.dst.starts_with("100.65."));
    state.iptables.push(IptablesBackendState {
        backend: "legacy".into(),
        ruleset: save::parse(&synthetic::iptables_text(&cluster, 0)).expect("ruleset"),
    });
    let states = vec![("node-00000".to_string(), state)];
    let findings = knetdoctor::check::run(&cluster, &states);
    let snapshot = Arc::new(Snapshot::build(
        "synthetic".into(),
        Arc::new(cluster),
        Arc::new(states),
        findings,
    ));
    println!(
        "snapshot of {} nodes, {} findings, {} entries on node 0 built in {:.2} s",
        snapshot.nodes.len(),
        snapshot.findings.len(),
        snapshot.entries["node-00000"].len(),
        t.elapsed().as_secs_f64()
    );
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).expect("backend");
    let frames = 200;
    for (name, view, filter, selected) in [
        ("overview", View::Overview, "", 2500),
        ("node 0", View::Node("node-00000".into()), "", 7000),
        (
            "node 0, filter \"missing\"",
            View::Node("node-00000".into()),
            "missing",
            0,
        ),
        (
            "node 0, filter \"100.83.\"",
            View::Node("node-00000".into()),
            "100.83.",
            3,
        ),
    ] {
        let mut app = App::new();
        app.snapshot = Some(snapshot.clone());
        if view != View::Overview {
            app.stack.push(view);
        }
        app.filter = filter.into();
        app.selected = selected;
        let t = Instant::now();
        for _ in 0..frames {
            terminal.draw(|f| view::render(f, &app)).expect("draw");
        }
        let per = t.elapsed().as_secs_f64() / frames as f64;
        println!(
            "{name}: {:.2} ms per frame over {frames} frames (target < 16 ms)",
            per * 1e3
        );
    }
}
