//! `cargo bench --bench tui_render`: the dashboard on the 5,000-node
//! synthetic cluster (150,000 pods, 10,000 Services), 200x60 screen
//! (ratatui's TestBackend), target < 16 ms per frame:
//! - the reader thread's work per change (check, snapshot);
//! - the overview (5,000 node lines, the findings) and node 0's view
//!   (15,000 flannel entries and kube-proxy's tree of 10,000 Services and
//!   30,000 endpoint chains), plain and filtered;
//! - key to frame while typing: the pods view's filter over 150,000 pods
//!   beside `grep -F`, the trace picker's fuzzy search over 175,000 targets
//!   beside `fzf --filter` (same lines, from a file; ratio printed);
//! - Enter on a Service, a DNS name, a node and a pod (the linked view is
//!   built on the render thread);
//! - a node's state changing, and an endpoint going NotReady (a watch
//!   event), each to the frame showing it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use knetdoctor::check::incremental::Verdicts;
use knetdoctor::dataplane::iptables::save;
use knetdoctor::dataplane::state::IptablesBackendState;
use knetdoctor::synthetic::{self, Size};
use knetdoctor::tui::app::{App, View};
use knetdoctor::tui::snapshot::{After, Snapshot};
use knetdoctor::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn main() {
    knetdoctor::without_huge_pages();
    let t0 = Instant::now();
    let cluster = synthetic::cluster(Size::LARGE);
    let mut state = synthetic::node_state(&cluster, 0);
    // A few faults, so that marks and findings are drawn too.
    state
        .routes
        .retain(|r| !r.dst.to_string().starts_with("100.65."));
    state.iptables.push(IptablesBackendState {
        backend: "legacy".into(),
        ruleset: save::parse(&synthetic::iptables_text(&cluster, 0)).expect("ruleset"),
        raw: None,
    });
    let mut states = vec![("node-00000".to_string(), state)];
    // KD_BENCH_LAB_LIKE=1: as `tui_watch`'s lab reads it — three read
    // nodes whose kernels know two peers each, beside 5,000 nodes known
    // from the API only (15,000 findings a node: each peer's route, neigh
    // and FDB entry missing).
    if std::env::var_os("KD_BENCH_LAB_LIKE").is_some() {
        states = (0..3)
            .map(|i| {
                let mut s = synthetic::node_state(&cluster, i);
                let mut peers = 0;
                s.routes.retain(|r| {
                    peers += usize::from(r.gateway.is_some());
                    r.gateway.is_none() || peers <= 2
                });
                s.neighs.truncate(2);
                s.fdb.truncate(2);
                s.iptables.push(IptablesBackendState {
                    backend: "legacy".into(),
                    ruleset: save::parse(&synthetic::iptables_text(&cluster, i)).expect("ruleset"),
                    raw: None,
                });
                (format!("node-{i:05}"), s)
            })
            .collect();
    }
    let made = t0.elapsed();
    let t = Instant::now();
    let findings = knetdoctor::check::run(&cluster, &states);
    let checked = t.elapsed();
    let t = Instant::now();
    let snapshot = Arc::new(Snapshot::build(
        "synthetic".into(),
        Arc::new(cluster),
        Arc::new(states),
        findings,
    ));
    println!(
        "cluster made in {:.2} s; check {:.2} s; snapshot of {} nodes, {} findings, {} entries on node 0, {} resources built in {:.2} s (the reader thread's work per change)",
        made.as_secs_f64(),
        checked.as_secs_f64(),
        snapshot.nodes.len(),
        snapshot.findings.len(),
        snapshot.entries["node-00000"].len(),
        snapshot.resources.len(),
        t.elapsed().as_secs_f64()
    );
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).expect("backend");
    // KD_BENCH_ONLY=changes: only the live path (for a profiler).
    if std::env::var("KD_BENCH_ONLY").as_deref() == Ok("changes") {
        changes(&snapshot, &mut terminal);
        return;
    }
    if std::env::var("KD_BENCH_ONLY").as_deref() == Ok("objects") {
        for what in [Change::Endpoint, Change::Pod] {
            object_changes(&snapshot, &mut terminal, false, what);
            object_changes(&snapshot, &mut terminal, true, what);
        }
        return;
    }
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
    typing(&snapshot, &mut terminal);
    opening(&snapshot, &mut terminal);
    changes(&snapshot, &mut terminal);
    for what in [Change::Endpoint, Change::Pod] {
        object_changes(&snapshot, &mut terminal, false, what);
        object_changes(&snapshot, &mut terminal, true, what);
    }
}

/// A node's state changing 200 times (a peer route deleted, then put
/// back): the reader's kept verdicts and snapshot, then the app's update
/// and the overview's frame — the work from a re-read node state to the
/// frame showing it. p50 and p99.
fn changes(snapshot: &Arc<Snapshot>, terminal: &mut Terminal<TestBackend>) {
    let cluster = snapshot.cluster.clone();
    let healthy = snapshot.states[0].1.clone();
    let mut broken = healthy.clone();
    let gone = broken
        .routes
        .iter()
        .position(|r| r.gateway.is_some())
        .expect("a peer route");
    broken.routes.remove(gone);
    let name = snapshot.states[0].0.clone();
    let (mut verdicts, mut last, mut app) = live(snapshot);
    let mut took = Vec::new();
    let mut parts = Vec::new();
    for i in 0..200 {
        let state = if i % 2 == 0 { &broken } else { &healthy };
        // The node re-read; the others' states kept.
        let mut states = (*last.states).clone();
        states[0] = (name.clone(), state.clone());
        let states = Arc::new(states);
        let t = Instant::now();
        let findings = verdicts.update(&cluster, &Default::default(), &states);
        let judged = t.elapsed();
        let s = Snapshot::build_after(
            "synthetic".into(),
            cluster.clone(),
            states,
            findings,
            Some(After {
                snapshot: &last,
                changed: &Default::default(),
                verdicts: Some(&verdicts),
            }),
        );
        let s = Arc::new(s);
        let built = t.elapsed();
        last = s.clone();
        app.update(s, std::time::SystemTime::now());
        terminal.draw(|f| view::render(f, &app)).expect("draw");
        took.push(t.elapsed().as_secs_f64() * 1e3);
        parts.push((judged, built - judged));
        if std::env::var_os("KD_BENCH_DEBUG").is_some() {
            eprintln!(
                "{i}: {:?} {:?} {:?}",
                judged,
                built - judged,
                t.elapsed() - built
            );
        }
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    parts.sort();
    let (judged, built) = parts[parts.len() / 2];
    println!(
        "  of which (the median change): verdicts {:.1} ms, snapshot {:.1} ms",
        ms(judged),
        ms(built)
    );
    took.sort_by(f64::total_cmp);
    println!(
        "a node's state changed 200 times (a peer route gone, then back): kept verdicts + snapshot + frame p50 {:.1} ms, p99 {:.1} ms (target <= 100 ms; the reading of the state itself not included)",
        took[took.len() / 2],
        took[took.len() * 99 / 100]
    );
}

/// The reader's kept verdicts and last snapshot, and the app showing it,
/// as the live path has them after its first reading.
fn live(snapshot: &Arc<Snapshot>) -> (Verdicts, Arc<Snapshot>, App) {
    let mut verdicts = Verdicts::new();
    verdicts.update(&snapshot.cluster, &all_kinds(), &snapshot.states);
    let mut app = App::new();
    app.snapshot = Some(snapshot.clone());
    (verdicts, snapshot.clone(), app)
}

/// The kinds of objects all changed (the first reading).
fn all_kinds() -> std::collections::BTreeSet<knetdoctor::model::reading::ApiKind> {
    knetdoctor::model::reading::ApiKind::ALL
        .into_iter()
        .collect()
}

/// Which object a watch event changes in [`object_changes`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    /// An EndpointSlice's endpoint's readiness (the endpoint controller).
    Endpoint,
    /// A pod's Ready condition (its kubelet): a pod's most common change.
    Pod,
}

/// An endpoint or a pod going NotReady and back (a watch event), 200 times: the
/// reader's work from the watches' stores to the frame — the
/// EndpointSlices' or the pods' list brought up to date in place and every other kind
/// kept, as the live reader does, the kept verdicts, the snapshot after the last
/// one, the app's update and the overview's frame. p50 and p99, and the
/// median change by part. `cold`: the CPU's caches overwritten before
/// each change (64 MiB written, twice the L3 of this machine), as the API
/// server, etcd and kube-proxy overwrite them between two readings when
/// they share the dashboard's two cores (`tui_watch`).
fn object_changes(
    snapshot: &Arc<Snapshot>,
    terminal: &mut Terminal<TestBackend>,
    cold: bool,
    what: Change,
) {
    let (mut verdicts, mut last, mut app) = live(snapshot);
    let mut evict = cold.then(|| vec![0u8; 64 << 20]);
    // As the live reader says how the nodes were read: the read nodes
    // through the lab, every other node not read (a list it keeps while
    // no whole reading asks again).
    let reading = knetdoctor::tui::snapshot::Reading {
        at: std::time::SystemTime::now(),
        via: (last.states.iter())
            .map(|(n, _)| (n.clone(), knetdoctor::access::ReadVia::Lab))
            .collect(),
        not_read: Arc::new(
            (last.nodes.iter())
                .filter(|r| !r.read)
                .map(|r| knetdoctor::check::reach::NotRead {
                    node: r.name.clone(),
                    why: knetdoctor::check::reach::Unreached::OutOfReach,
                })
                .collect(),
        ),
    };
    let mut took = Vec::new();
    let mut parts = Vec::new();
    // KD_BENCH_CHANGES: more rounds, for a profiler.
    let rounds = std::env::var("KD_BENCH_CHANGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    for i in 0..rounds {
        if let Some(b) = &mut evict {
            b.iter_mut()
                .step_by(64)
                .for_each(|x| *x = x.wrapping_add(1));
            std::hint::black_box(&b);
            // The retired snapshot is dropped on its own thread.
            std::thread::sleep(Duration::from_millis(1));
        }
        let t = Instant::now();
        // As the live reader brings the list up to date: the one slice
        // replaced in its place, the other 9,999 the same objects. A
        // different Service's slice each pair of changes, as in
        // `tui_watch` (one Service's again and again stays in the cache).
        let mut slices = last.cluster.endpoint_slices.clone();
        let mut pods = last.cluster.pods.clone();
        match what {
            Change::Endpoint => {
                let slice = (42 + i / 2 * 97) % slices.len();
                slices[slice].endpoints[0]
                    .conditions
                    .as_mut()
                    .unwrap()
                    .ready = Some(i % 2 == 1);
            }
            // As the kubelet writes a pod's status: its Ready condition.
            Change::Pod => {
                let pod = (42 + i / 2 * 997) % pods.len();
                let status = pods[pod].status.as_mut().unwrap();
                let ready = status.conditions.iter_mut().flatten();
                for c in ready.filter(|c| c.type_ == "Ready") {
                    c.status = if i % 2 == 1 { "True" } else { "False" }.into();
                }
            }
        }
        let mut c = knetdoctor::model::Cluster::default();
        c.nodes = last.cluster.nodes.clone();
        c.pods = pods;
        c.services = last.cluster.services.clone();
        c.ingresses = last.cluster.ingresses.clone();
        c.ingress_classes = last.cluster.ingress_classes.clone();
        c.config_maps = last.cluster.config_maps.clone();
        c.network_policies = last.cluster.network_policies.clone();
        c.endpoint_slices = slices;
        c.reuse_index_of(&last.cluster);
        let changed = c.changed_kinds(&last.cluster);
        let copied = t.elapsed();
        let c = Arc::new(c);
        let findings = verdicts.update(&c, &changed, &last.states);
        let judged = t.elapsed();
        let s = Arc::new(
            Snapshot::build_after(
                "synthetic".into(),
                c,
                last.states.clone(),
                findings,
                Some(After {
                    snapshot: &last,
                    changed: &changed,
                    verdicts: Some(&verdicts),
                }),
            )
            .with_reading(&reading),
        );
        let built = t.elapsed();
        last = s.clone();
        app.update(s, std::time::SystemTime::now());
        terminal.draw(|f| view::render(f, &app)).expect("draw");
        let all = t.elapsed();
        if what == Change::Endpoint {
            assert_eq!(
                last.findings.iter().any(|f| f.id.is_kube_proxy()),
                i % 2 == 0,
                "the NotReady endpoint's chain is found stale, then not"
            );
        }
        took.push(all.as_secs_f64() * 1e3);
        parts.push((copied, judged - copied, built - judged, all - built));
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let median = |f: fn(&(Duration, Duration, Duration, Duration)) -> Duration| {
        let mut v: Vec<Duration> = parts.iter().map(f).collect();
        v.sort();
        ms(v[v.len() / 2])
    };
    let caches = if cold { ", caches cold" } else { "" };
    println!(
        "  of which (medians{caches}): objects copied and compared {:.2} ms, verdicts {:.2} ms, snapshot {:.2} ms, frame {:.2} ms",
        median(|p| p.0),
        median(|p| p.1),
        median(|p| p.2),
        median(|p| p.3)
    );
    took.sort_by(f64::total_cmp);
    println!(
        "{} NotReady and back {rounds} times (a watch event{caches}): store to frame p50 {:.1} ms, p99 {:.1} ms (target <= 100 ms; the watch's own delivery not included)",
        match what {
            Change::Endpoint => "an endpoint",
            Change::Pod => "a pod",
        },
        took[took.len() / 2],
        took[took.len() * 99 / 100]
    );
}

/// Enter on a Service and on a node in the resources view: the linked
/// view is built on the render thread, so it must fit in a frame too.
fn opening(snapshot: &Arc<Snapshot>, terminal: &mut Terminal<TestBackend>) {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    for command in [
        ":svc ns-042/svc-00042",
        ":dns svc-00042.ns-042.svc.cluster.local",
        ":node node-00007",
        ":po pod-000123",
    ] {
        let mut app = App::new();
        app.snapshot = Some(snapshot.clone());
        for c in command.chars() {
            app.key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        let t = Instant::now();
        app.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        terminal.draw(|f| view::render(f, &app)).expect("draw");
        println!(
            "{command} Enter: {:.2} ms to the linked view's frame ({:?})",
            t.elapsed().as_secs_f64() * 1e3,
            app.view()
        );
    }
}

/// The resources view of 150,000 pods filtered key by key, and the trace
/// picker's fuzzy search over every pod, Service, DNS name and node, each
/// key to drawn frame — beside `grep -F` and `fzf --filter` doing the same
/// search over the same lines from a file.
fn typing(snapshot: &Arc<Snapshot>, terminal: &mut Terminal<TestBackend>) {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let press =
        |app: &mut App, c: char| app.key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    let dir = std::env::temp_dir().join(format!("kd-bench-tui-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pods: String = snapshot
        .resources
        .rows()
        .filter(|r| r.kind == knetdoctor::tui::resources::Kind::Pod)
        .map(|r| format!("{}  {}\n", r.name, r.detail))
        .collect();
    let targets: String = snapshot
        .trace_targets
        .iter()
        .map(|t| format!("{}\n", t.text))
        .collect();
    std::fs::write(dir.join("pods"), &pods).expect("write");
    std::fs::write(dir.join("targets"), &targets).expect("write");
    let rounds = 5;

    // `/pod-0012` in `:pods`: one filtered frame per key.
    let query = "pod-0012";
    let mut app = App::new();
    app.snapshot = Some(snapshot.clone());
    for c in ":pods".chars() {
        press(&mut app, c);
    }
    app.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let t = Instant::now();
    for _ in 0..rounds {
        press(&mut app, '/');
        for c in query.chars() {
            press(&mut app, c);
            terminal.draw(|f| view::render(f, &app)).expect("draw");
        }
        app.key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
        app.key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    }
    let ours = t.elapsed().as_secs_f64() / (rounds * query.len()) as f64;
    let grep = per_run(rounds, || {
        std::process::Command::new("grep")
            .args(["-F", "-c", query])
            .arg(dir.join("pods"))
            .output()
            .expect("grep")
    });
    println!(
        "pods view ({} pods), filter typed key by key: {:.2} ms per key to frame; grep -F over the same lines: {:.2} ms; ratio {:.2}",
        pods.lines().count(),
        ours * 1e3,
        grep * 1e3,
        ours / grep
    );

    // `t` then `p12ngx`: the picker ranks every target per key.
    let query = "p0012s3";
    let t = Instant::now();
    for _ in 0..rounds {
        let mut app = App::new();
        app.snapshot = Some(snapshot.clone());
        for c in ":trace\n".chars() {
            if c == '\n' {
                app.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
            } else {
                press(&mut app, c);
            }
        }
        for c in query.chars() {
            press(&mut app, c);
            terminal.draw(|f| view::render(f, &app)).expect("draw");
        }
    }
    let ours = t.elapsed().as_secs_f64() / (rounds * query.len()) as f64;
    let fzf = per_run(rounds, || {
        std::process::Command::new("fzf")
            .args(["--filter", query])
            .stdin(std::fs::File::open(dir.join("targets")).expect("targets"))
            .output()
            .expect("fzf (apt-get install fzf)")
    });
    println!(
        "trace picker ({} targets), fuzzy search typed key by key: {:.2} ms per key to frame; fzf --filter over the same lines: {:.2} ms; ratio {:.2}",
        snapshot.trace_targets.len(),
        ours * 1e3,
        fzf * 1e3,
        ours / fzf
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Seconds per run of `f`, the median of `rounds`.
fn per_run(rounds: usize, f: impl Fn() -> std::process::Output) -> f64 {
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            let out = f();
            assert!(out.status.success() || out.status.code() == Some(1));
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[rounds / 2]
}
