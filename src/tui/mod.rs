//! The live dashboard (`knetdoctor`, `knetdoctor tui`): ratatui over
//! crossterm. A reader thread takes snapshots (cluster, node states,
//! `check`'s findings) and hands them over — again when a lab node's kernel
//! reports a change (rtnetlink notifications: that node's kernel tables
//! alone are read again), when a watch or the bundle says the objects
//! changed, and every `--refresh-ms` for what sends none (iptables). Keys,
//! snapshots and jobs' results wake the render loop on one channel, so it
//! draws whichever comes first at once and never waits on I/O. The
//! terminal is restored on every way out, a panic included (ratatui's
//! hook).

pub mod app;
pub mod capture;
pub mod jobs;
pub mod pick;
pub mod resources;
pub mod snapshot;
pub mod view;
pub mod watch;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event, KeyEventKind};

use crate::access::Source;
use crate::dataplane::NodeState;
use crate::error::{Error, Result};
use crate::inspect::live::Reflected;
use crate::model::reading::ApiKind;
use crate::signal::Signal;
use app::{App, Job};
use jobs::Done;
use snapshot::Snapshot;

/// What the dashboard reads and how often.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    /// How often node states are read again (iptables sends no
    /// notification); kernel notifications and watches wake it sooner.
    pub refresh: Duration,
    /// Only this namespace's objects and findings (`-n`).
    pub namespace: Option<String>,
}

/// What the reader keeps between snapshots so that a change is judged and
/// drawn at the cost of what it touches: the verdicts per node, and the
/// last snapshot (its entries and plans are kept for nodes whose state and
/// findings did not change).
#[derive(Default)]
struct Kept {
    verdicts: crate::check::incremental::Verdicts,
    /// Shared with the render thread, not copied.
    last: Option<Arc<Snapshot>>,
    /// The nodes the last whole reading could not read (a reading of
    /// notified kernels alone does not ask again).
    /// Shared with each snapshot's reading: at scale 5,000 nodes, each
    /// name and reason copied twice a reading when it was a list.
    not_read: Arc<Vec<crate::check::reach::NotRead>>,
}

/// Reads the cluster and its nodes, as `check` does (the live cluster from
/// the watches' stores), and judges what changed since the last snapshot.
fn take(
    source: &Source,
    live: Option<&Reflected>,
    namespace: Option<&str>,
    kept: &mut Kept,
    reread: &watch::Reread,
) -> std::result::Result<Arc<Snapshot>, String> {
    let began = std::time::Instant::now();
    let cpu_before = crate::sched::thread_cpu_time();
    let wait_before = crate::sched::thread_run_wait();
    let faults_before = crate::sched::thread_page_faults();
    let target = source.target().map_err(|e| e.to_string())?;
    let mut kinds_copied = BTreeSet::new();
    let cluster = match &kept.last {
        // Only node states changed: the objects are the last snapshot's.
        Some(last) if !reread.objects => last.cluster.clone(),
        _ => {
            let mut c = match live {
                Some(r) => {
                    let (c, copied) = r.cluster_noting();
                    kinds_copied = copied;
                    c
                }
                None => target.cluster().map_err(|e| e.to_string())?,
            };
            // The kinds the watches kept keep their index too.
            if let Some(last) = &kept.last {
                c.reuse_index_of(&last.cluster);
            }
            Arc::new(c)
        }
    };
    let objects_read = std::time::Instant::now();
    // Only kernels said their tables changed: theirs are read again, every
    // other node's state (and every node's rules) is the last reading's —
    // shared as it is when no kernel spoke (a watch event alone). A node
    // come or gone is read, or said unread, by a whole reading.
    let noticed = match (&reread.kernels, &kept.last) {
        (Some(_), Some(last)) if !same_nodes(&cluster, &last.cluster) => None,
        (Some(nodes), Some(last)) if nodes.is_empty() => Some(last.states.clone()),
        (Some(nodes), Some(last)) => target
            .states_after_notice(&last.states, nodes)
            .ok()
            .map(Arc::new),
        _ => None,
    };
    let mut changed = BTreeSet::new();
    let mut judged = std::time::Duration::ZERO;
    let whole = noticed.is_none();
    // (A whole reading asks again.)
    let kept_not_read = noticed.as_ref().map(|_| kept.not_read.clone());
    let mut judge = |cluster: &crate::model::Cluster, states: &Arc<Vec<(String, NodeState)>>| {
        // The same Arc is the same objects; a re-read is compared,
        // kind by kind (a kind the watches kept, at no cost).
        changed = match &kept.last {
            None => ApiKind::ALL.into_iter().collect(),
            Some(s) if std::ptr::eq(&*s.cluster, cluster) => BTreeSet::new(),
            Some(s) => cluster.changed_kinds(&s.cluster),
        };
        let t = std::time::Instant::now();
        let findings = kept.verdicts.update(cluster, &changed, states);
        judged = t.elapsed();
        findings
    };
    let g = match noticed {
        Some(states) => crate::access::Gathered {
            findings: judge(&cluster, &states),
            cluster,
            states,
            not_read: Vec::new(),
        },
        None => target
            .gather_judged(cluster, None, judge)
            .map_err(|e| e.to_string())?,
    };
    let gathered = std::time::Instant::now();
    let not_read = kept_not_read.unwrap_or_else(|| Arc::new(g.not_read));
    kept.not_read = not_read.clone();
    let previous = kept.last.take();
    let reading = snapshot::Reading {
        at: std::time::SystemTime::now(),
        via: g
            .states
            .iter()
            .map(|(n, _)| (n.clone(), target.read_via(n)))
            .collect(),
        not_read,
    };
    let mut s = Snapshot::build_after(
        source.describe(),
        g.cluster,
        g.states,
        g.findings,
        previous.as_deref().map(|snapshot| snapshot::After {
            snapshot,
            changed: &changed,
            verdicts: Some(&kept.verdicts),
        }),
    )
    .with_reading(&reading);
    let cost = snapshot::ReadingCost {
        objects: objects_read - began,
        gather: gathered - objects_read,
        judge: judged,
        build: gathered.elapsed(),
        cpu: crate::sched::thread_cpu_time().saturating_sub(cpu_before),
        waited: crate::sched::thread_run_wait()
            .zip(wait_before)
            .map(|(now, before)| now.saturating_sub(before)),
        faults: crate::sched::thread_page_faults().saturating_sub(faults_before),
        indexed: match &previous {
            Some(p) => s.cluster.index_built_again(&p.cluster),
            None => BTreeSet::new(),
        },
        changed,
        whole,
        kinds_copied,
    };
    tracing::debug!(target: "knetdoctor::reading", ?cost, took = ?began.elapsed(), "reading");
    s.reading_began = Some(began);
    s.reading_cost = Some(cost);
    let s = Arc::new(s);
    kept.last = Some(s.clone());
    Ok(match namespace {
        Some(ns) => Arc::new((*s).clone().in_namespace(ns)),
        None => s,
    })
}

/// Whether two readings of the cluster name the same nodes (the same
/// objects, or the same names in the same order: the watches' copies are
/// sorted by name).
fn same_nodes(a: &crate::model::Cluster, b: &crate::model::Cluster) -> bool {
    a.nodes.same(&b.nodes)
        || a.nodes.len() == b.nodes.len()
            && a.nodes
                .iter()
                .zip(b.nodes.iter())
                .all(|(x, y)| x.metadata.name == y.metadata.name)
}

/// What wakes the dashboard's loop: a key or the mouse, a snapshot from
/// the reader, a job's result. One channel, so that whichever comes first
/// is drawn at once (waiting on the terminal alone, a snapshot waited up
/// to 200 ms for the next poll to end).
pub enum Wake {
    Input(Event),
    /// The terminal could not be read.
    InputFailed(String),
    Snapshot(std::result::Result<Arc<Snapshot>, String>),
    Done(Done),
}

/// Runs the dashboard until `q`.
pub fn run(a: Options) -> Result<u8> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(Error::usage(
            "the dashboard needs a terminal",
            Some("run it in a terminal, or use `knetdoctor check` for text".to_string()),
        ));
    }
    let (wake_tx, wake) = mpsc::channel::<Wake>();
    // Keys and the mouse, read on a thread of their own (it ends with the
    // process: a read cannot be interrupted).
    let input = wake_tx.clone();
    std::thread::spawn(move || {
        loop {
            let w = match event::read() {
                Ok(e) => Wake::Input(e),
                Err(e) => Wake::InputFailed(e.to_string()),
            };
            let failed = matches!(w, Wake::InputFailed(_));
            if input.send(w).is_err() || failed {
                return;
            }
        }
    });
    let mut terminal = ratatui::init();
    // ratatui's hook restores the screen on a panic; the mouse too.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
        hook(info);
    }));
    let _ = crossterm::execute!(std::io::stdout(), EnableMouseCapture);
    let result = run_on(&mut terminal, a, (wake_tx, wake), |_| {});
    let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    result.map(|()| 0)
}

/// The dashboard's loop on `terminal` until `q`: the reader's snapshots,
/// keys and jobs' results (all on `wake`, keys sent there by the caller)
/// drawn as they come. `drawn` sees the app after each frame: a bench
/// times a change's way to the screen through it.
pub fn run_on<B: ratatui::backend::Backend>(
    terminal: &mut ratatui::Terminal<B>,
    a: Options,
    (wake_tx, wake): (mpsc::Sender<Wake>, mpsc::Receiver<Wake>),
    mut drawn: impl FnMut(&App),
) -> Result<()> {
    // The loop draws each change as it comes (its caller's thread).
    crate::sched::latency_sensitive();
    let source = a.source.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(a, wake_tx.clone(), stop.clone())
        .map_err(|e| Error::env(format!("cannot start the dashboard's reader: {e}"), None))?;
    // Jobs report on a channel of their own, forwarded.
    let (done_tx, done) = mpsc::channel::<Done>();
    std::thread::Builder::new()
        .name("kd-jobs".into())
        .spawn(move || {
            for d in done {
                if wake_tx.send(Wake::Done(d)).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| {
            Error::env(
                format!("cannot start the dashboard's job thread: {e}"),
                None,
            )
        })?;
    let mut capture: Option<capture::Session> = None;
    let mut app = App::new();
    let result = (|| -> Result<()> {
        // A frame is drawn when something changed: a key, the mouse, a
        // resize, a snapshot, a job's result — and 5 times a second while
        // a capture is on screen. An idle dashboard draws nothing.
        let mut dirty = true;
        while !app.quit {
            for job in std::mem::take(&mut app.jobs) {
                start(job, &mut app, &source, &mut capture, &done_tx);
                dirty = true;
            }
            let capturing = matches!(app.view(), app::View::Capture(_));
            if dirty || capturing {
                terminal
                    .draw(|f| view::render(f, &app))
                    .map_err(|e| Error::env(format!("drawing the dashboard: {e}"), None))?;
                drawn(&app);
                dirty = false;
            }
            let first = match wake.recv_timeout(if capturing {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(3600)
            }) {
                Ok(w) => w,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            // Whatever else came meanwhile is taken before the next frame.
            for w in std::iter::once(first).chain(wake.try_iter()) {
                match w {
                    Wake::Input(Event::Key(k)) if k.kind == KeyEventKind::Press => app.key(k),
                    // Motion alone changes nothing on screen.
                    Wake::Input(Event::Mouse(m)) if m.kind == event::MouseEventKind::Moved => {
                        continue;
                    }
                    Wake::Input(Event::Mouse(m)) => app.mouse(m),
                    Wake::Input(_) => {}
                    Wake::InputFailed(e) => {
                        return Err(Error::env(format!("reading the terminal: {e}"), None));
                    }
                    Wake::Snapshot(Ok(s)) => app.update(s, std::time::SystemTime::now()),
                    Wake::Snapshot(Err(e)) => app.error = Some(e),
                    Wake::Done(d) => finish(d, &mut app),
                }
                dirty = true;
            }
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    drop(capture);
    // The reader may be in the middle of a slow read: it is not waited for.
    drop(reader);
    result
}

/// The reader thread: a snapshot now, again on every change notification
/// (lab nodes' kernels, the live cluster's watches, the bundle directory)
/// and, when node states were read (or the read failed), every
/// `--refresh-ms` for what sends none (iptables). A cluster without node
/// states is read only when it changes.
fn spawn_reader(
    a: Options,
    tx: mpsc::Sender<Wake>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // Named, as every long-lived thread of the dashboard is: `top -H`,
    // perf and the benches tell them apart.
    std::thread::Builder::new()
        .name("kd-reader".into())
        .spawn(move || {
            crate::sched::latency_sensitive();
            let every = a.refresh;
            let (changed_tx, changed) = mpsc::channel::<watch::Wake>();
            let objects_tx = Signal::to(changed_tx.clone(), watch::Wake::Objects);
            let nodes_tx = Signal::to(changed_tx.clone(), watch::Wake::Nodes);
            if let Some(b) = &a.source.bundle {
                watch::bundle(
                    b.clone(),
                    Signal::to(changed_tx.clone(), watch::Wake::Bundle),
                );
            }
            // A live cluster's agents publish their nodes' states: each new
            // one wakes the reader (the connection lives as long as it does).
            let _agents = a.source.live.as_ref().and_then(|live| {
                let agents =
                    crate::agent::remote::Agents::connect(live, live.agent_namespace()).ok()?;
                agents.watch_published(nodes_tx.clone());
                Some(agents)
            });
            let plans = plan_worker();
            let mut watching_source = None;
            let mut live: Option<Reflected> = None;
            let mut watching = false;
            let mut kept = Kept::default();
            // The first reading: everything.
            let mut reread = watch::Reread::everything(false);
            while !stop.load(Ordering::Relaxed) {
                // Asked once it is known (the lab's state is read to know it).
                if watching_source.is_none() {
                    watching_source = watched(&a.source);
                }
                if live.is_none()
                    && let Some(Some(src)) = &watching_source
                {
                    match Reflected::start(src, objects_tx.clone()) {
                        Ok(r) => live = Some(r),
                        Err(e) => {
                            if tx.send(Wake::Snapshot(Err(e.to_string()))).is_err() {
                                return;
                            }
                            std::thread::sleep(every);
                            continue;
                        }
                    }
                }
                let s = take(
                    &a.source,
                    live.as_ref(),
                    a.namespace.as_deref(),
                    &mut kept,
                    &reread,
                );
                // Node states (iptables) and errors (no lab yet) are read again
                // periodically.
                let poll = s.as_ref().map_or(true, |s| s.nodes.iter().any(|n| n.read));
                if !watching
                    && a.source.bundle.is_none()
                    && let Ok(s) = &s
                {
                    let target = a.source.target();
                    for n in s.nodes.iter().filter(|n| n.read) {
                        if let Some(netns) = target
                            .as_ref()
                            .ok()
                            .and_then(|t| t.node(&n.name).ok())
                            .and_then(|n| n.netns().ok())
                        {
                            let node = watch::Wake::Kernel(n.name.clone());
                            // Unwatched, the node is still read every refresh.
                            let _ = watch::spawn(netns, Signal::to(changed_tx.clone(), node));
                        }
                    }
                    watching = true;
                }
                if let Ok(s) = &s {
                    let _ = plans.send(s.clone());
                }
                if tx.send(Wake::Snapshot(s)).is_err() {
                    return;
                }
                let first = if poll {
                    changed.recv_timeout(every).ok()
                } else {
                    // Nothing to poll: wait for a change (checking for the
                    // end now and then).
                    loop {
                        match changed.recv_timeout(Duration::from_millis(500)) {
                            Ok(w) => break Some(w),
                            Err(mpsc::RecvTimeoutError::Timeout)
                                if !stop.load(Ordering::Relaxed) => {}
                            Err(_) => return,
                        }
                    }
                };
                // The bundle's inotify and the live cluster's watches say when
                // the objects change; a source that sends no word (a lab's
                // files) has them read every time.
                let notified = a.source.bundle.is_some() || live.is_some();
                reread = match first {
                    None => watch::Reread::everything(notified),
                    Some(w) => {
                        // A bundle's files are read once kubectl is done
                        // writing them. A watch event or a kernel notification
                        // is read at once (the 30 ms this waited counted
                        // against every change's way to the screen): what
                        // arrives while it is read — the rest of a repair's
                        // thousands — is read together next.
                        if a.source.bundle.is_some() {
                            std::thread::sleep(Duration::from_millis(30));
                        }
                        let woke: Vec<watch::Wake> =
                            std::iter::once(w).chain(changed.try_iter()).collect();
                        watch::Reread::after(&woke, notified)
                    }
                };
            }
        })
}

/// The API server whose objects the reader watches: `--kubeconfig`'s, or
/// that of a lab run by the real control plane; `Some(None)`: the objects
/// are not read live; `None`: not known yet (the lab is not up).
fn watched(source: &Source) -> Option<Option<crate::inspect::live::LiveSource>> {
    match &source.live {
        Some(src) => Some(Some(src.clone())),
        None if source.bundle.is_none() => Some(source.target().ok()?.live_cluster().cloned()),
        None => Some(None),
    }
}

/// A thread that works out the repair plans of the latest snapshot sent
/// to it, beside the reader: a plan that restores kube-proxy's chains
/// takes the node's whole expected ruleset (0.25 s for 10,000 Services),
/// which neither a change on its way to the screen nor the next change
/// waits for. Snapshots overtaken by a newer one are skipped; the repair
/// view works out a plan itself if it comes first.
///
/// It runs under `SCHED_IDLE` (sched(7)): only on a core nothing else
/// wants. On two cores at 5,000 nodes its plans took a tenth of the CPU
/// while changes arrived a hundred a second, in the reader's way. And it
/// waits for the changes to pause ([`PLANS_AFTER`]): in a burst each
/// snapshot is overtaken within milliseconds, and the lab's three nodes'
/// plans (10,000 Services' chains each) kept a core busy for plans no one
/// would see.
fn plan_worker() -> mpsc::Sender<Arc<Snapshot>> {
    let (tx, rx) = mpsc::channel::<Arc<Snapshot>>();
    let spawned = std::thread::Builder::new()
        .name("kd-plans".into())
        .spawn(move || {
            let idle = libc::sched_param { sched_priority: 0 };
            // SAFETY: sets the calling thread's (0) policy from a valid
            // parameter; a refusal leaves it as it was, which is only slower.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) };
            while let Ok(mut latest) = rx.recv() {
                loop {
                    match rx.recv_timeout(PLANS_AFTER) {
                        Ok(newer) => latest = newer,
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                latest.work_out_plans();
            }
        });
    // A worker that cannot start leaves the plans to the repair view,
    // which works a missing one out itself.
    drop(spawned);
    tx
}

/// How long the snapshots must pause before the plan worker works out the
/// latest one's plans (a person opens the repair view after a change
/// settles; one opened sooner works its plan out itself).
const PLANS_AFTER: Duration = Duration::from_millis(300);

/// Starts a job the keys queued.
fn start(
    job: Job,
    app: &mut App,
    source: &Source,
    capture: &mut Option<capture::Session>,
    done: &mpsc::Sender<Done>,
) {
    let source = source.clone();
    match job {
        Job::Repair(node) => {
            app.status = Some(format!("repairing {node}…"));
            jobs::repair(source, node, None, done.clone());
        }
        Job::Undo { node, id } => {
            app.status = Some(format!("undoing {id} on {node}…"));
            jobs::repair(source, node, Some(id), done.clone());
        }
        Job::History(node) => jobs::history(source, node, done.clone()),
        Job::Trace { from, to } => match &app.snapshot {
            Some(s) => jobs::trace(s.clone(), from, to, done.clone()),
            None => app.trace.running = None,
        },
        Job::Probe { from, to } => jobs::probe(source, from, to, done.clone()),
        Job::CaptureStart(node) => {
            let session = capture::Session::start(&node, source);
            app.capture = Some(session.buffer.clone());
            *capture = Some(session);
        }
        Job::CaptureStop => {
            if let Some(c) = capture.take() {
                c.stop();
            }
        }
        Job::CaptureWrite => match &app.capture {
            Some(b) => jobs::write_capture(b.clone(), done.clone()),
            None => app.status = Some("nothing captured yet".into()),
        },
    }
}

/// Takes what a job found into the state.
fn finish(d: Done, app: &mut App) {
    match d {
        Done::Repaired(report) => {
            app.applying = false;
            app.status = Some(report);
            // The history changed: read it again if it is on screen.
            if let app::View::History(n) = app.view().clone() {
                app.jobs.push(Job::History(n));
            }
        }
        Done::History(node, past) => app.history = Some((node, past)),
        Done::Traced(lines) => {
            app.trace.running = None;
            app.trace.lines = lines;
            app.selected = 0;
        }
        Done::Status(s) => app.status = Some(s),
    }
}

#[cfg(test)]
mod tests;
