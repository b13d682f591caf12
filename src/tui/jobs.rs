//! The dashboard's work off the render thread: repairs, undos and the
//! repair history through the same typed session the command line uses
//! (journal, lock and re-check alike), probes through the same probe; a
//! static trace over the snapshot; the capture buffer written out. Each
//! job runs on a thread of its own and sends back a [`Done`]; a job that
//! panics says so instead of leaving the dashboard waiting.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use super::capture::{Buffer, pcapng_path};
use super::snapshot::Snapshot;
use crate::access::Source;
use crate::check::text::action_line;
use crate::error::Result;
use crate::repair::journal::{Journal, Restore};
use crate::repair::session::{Applied, Session};

/// What a job found.
#[derive(Debug)]
pub enum Done {
    /// A repair or undo ended: its verdict, for the status line.
    Repaired(String),
    /// A node's past repairs.
    History(String, Result<Vec<Journal>, String>),
    /// A trace's (or probe's) report, line by line.
    Traced(Vec<String>),
    /// Something for the status line.
    Status(String),
}

/// Runs `work` on a thread and sends what it returns; a panic becomes
/// `on_panic`'s message.
fn spawn(done: Sender<Done>, work: impl FnOnce() -> Done + Send + 'static, on_panic: Done) {
    std::thread::spawn(move || {
        let d = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or(on_panic);
        let _ = done.send(d);
    });
}

/// What an apply came to, in one line.
fn applied_line(node: &str, a: Applied) -> String {
    match a {
        Applied::NothingToDo(_) => format!("{node}: nothing to repair"),
        Applied::Declined => "nothing changed".to_string(),
        Applied::Failed(j) => {
            let made = j.entries.iter().filter(|e| e.applied).count();
            let failed = j.entries.iter().find(|e| e.error.is_some());
            format!(
                "repair {} stopped: {made} of {} applied; failed: {}; `u` undoes the applied part",
                j.id,
                j.entries.len(),
                failed
                    .map(|e| format!(
                        "{} ({})",
                        action_line(&e.action),
                        e.error.clone().unwrap_or_default()
                    ))
                    .unwrap_or_default()
            )
        }
        Applied::Done { journal, left } if left.is_empty() => format!(
            "{} action(s) applied ({}); the findings it targeted are gone",
            journal.entries.len(),
            journal.id
        ),
        Applied::Done { journal, left } => format!(
            "{} action(s) applied ({}); still there: {}",
            journal.entries.len(),
            journal.id,
            left.iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What an undo came to, in one line.
fn undone_line(j: &Journal) -> String {
    let back = j
        .entries
        .iter()
        .filter(|e| e.restore == Restore::Restored)
        .count();
    match j.entries.iter().find_map(|e| match &e.restore {
        Restore::Failed(m) => Some((e, m)),
        _ => None,
    }) {
        None => format!("repair {} undone: {back} change(s) put back", j.id),
        Some((e, why)) => format!(
            "undo of {} stopped after {back} change(s): {} ({why}); `u` again puts back the rest",
            j.id,
            action_line(&e.action)
        ),
    }
}

/// A repair session on `node` of what the dashboard reads.
fn session(source: &Source, node: &str) -> Result<Session> {
    Session::open(source.target()?, node, Default::default())
}

/// Applies node `node`'s plan (asked and answered `y` on screen), or
/// undoes repair `undo`.
pub fn repair(source: Source, node: String, undo: Option<String>, done: Sender<Done>) {
    let what = match &undo {
        Some(id) => format!("undo of {id} on {node}"),
        None => format!("repair of {node}"),
    };
    let panicked = Done::Repaired(format!("{what}: stopped by an internal error"));
    spawn(
        done,
        move || {
            let line = session(&source, &node).and_then(|s| match &undo {
                Some(id) => s.undo(id).map(|j| undone_line(&j)),
                None => s.apply(|_| true).map(|a| applied_line(&node, a)),
            });
            Done::Repaired(match line {
                Ok(l) => format!("{what}: {l}"),
                Err(e) => format!("{what}: {}", e.to_string().replace('\n', " ")),
            })
        },
        panicked,
    );
}

/// The past repairs of `node`.
pub fn history(source: Source, node: String, done: Sender<Done>) {
    let n = node.clone();
    spawn(
        done,
        move || {
            let past = session(&source, &node)
                .and_then(|s| s.history())
                .map_err(|e| e.to_string());
            Done::History(node, past)
        },
        Done::History(
            n,
            Err("reading the history stopped by an internal error".into()),
        ),
    );
}

/// The static trace from `from` to `to` over the snapshot, as `trace`
/// prints it.
pub fn trace(s: Arc<Snapshot>, from: String, to: String, done: Sender<Done>) {
    report(done, "trace", from, to, move |from, to| {
        trace_text(&s, from, to)
    });
}

/// Runs a trace or probe from `from` to `to` on a thread; its text (or
/// why it could not run) line by line.
fn report(
    done: Sender<Done>,
    what: &'static str,
    from: String,
    to: String,
    run: impl FnOnce(&str, &str) -> Result<String> + Send + 'static,
) {
    spawn(
        done,
        move || {
            let text =
                run(&from, &to).unwrap_or_else(|e| format!("cannot {what} {from} → {to}: {e}"));
            Done::Traced(text.lines().map(str::to_string).collect())
        },
        Done::Traced(vec![format!("the {what} stopped by an internal error")]),
    );
}

fn trace_text(s: &Snapshot, from: &str, to: &str) -> Result<String> {
    use crate::trace::{resolve, sim, text};
    let src = resolve::resolve(&s.cluster, from, "default")?;
    let dst = resolve::resolve(&s.cluster, to, "default")?;
    let findings = s.findings.to_vec();
    let world = sim::World::new(&s.cluster, &s.states, &findings);
    let t = sim::trace(&world, &src, &dst, crate::trace::Proto::Tcp, None);
    // The text carries the terminal styles `trace` prints with; the
    // dashboard draws its own.
    Ok(anstream::adapter::strip_str(&text::render(&t)).to_string())
}

/// `trace FROM TO --probe`: a real packet from the source pod's
/// namespace, captured on the nodes in reach; the report first, then the
/// static trace it was compared with.
pub fn probe(source: Source, from: String, to: String, done: Sender<Done>) {
    report(done, "probe", from, to, move |from, to| {
        probe_text(&source, from, to)
    });
}

fn probe_text(source: &Source, from: &str, to: &str) -> Result<String> {
    use crate::trace::{probe, resolve, sim, text};
    let target = source.target()?;
    let g = target.gather(None)?;
    let src = resolve::resolve(&g.cluster, from, "default")?;
    let dst = resolve::resolve(&g.cluster, to, "default")?;
    let world = sim::World::new(&g.cluster, &g.states, &g.findings);
    let t = sim::trace(&world, &src, &dst, crate::trace::Proto::Tcp, None);
    let opts = target.probe_options(std::time::Duration::from_secs(1), None)?;
    let p = probe::run(&t, &src, &opts)?;
    let report = format!("{}\n{}", probe::text::render_probe(&p), text::render(&t));
    Ok(anstream::adapter::strip_str(&report).to_string())
}

/// Writes the capture buffer to a pcapng file in the working directory.
pub fn write_capture(buffer: Arc<Mutex<Buffer>>, done: Sender<Done>) {
    std::thread::spawn(move || {
        let msg = match buffer.lock() {
            Ok(b) => {
                let path = pcapng_path(&b.node);
                match b.write(&path) {
                    Ok(n) => format!(
                        "{n} frames written to {}",
                        std::fs::canonicalize(&path).unwrap_or(path).display()
                    ),
                    Err(e) => format!("writing the capture: {e}"),
                }
            }
            Err(_) => "the capture buffer is unreadable".to_string(),
        };
        let _ = done.send(Done::Status(msg));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_of_the_seed_cluster_names_its_hops() {
        let (cluster, state) = crate::check::fixtures::seed();
        let states = vec![("k8s-node-12".to_string(), state)];
        let findings = crate::check::run(&cluster, &states);
        let s = Snapshot::build("test".into(), Arc::new(cluster), Arc::new(states), findings);
        let pod = s
            .trace_targets
            .iter()
            .find(|t| t.kind == super::super::resources::Kind::Pod && t.text.contains("busybox"))
            .expect("a busybox pod")
            .text
            .clone();
        let text = trace_text(&s, &pod, "test-svc-ns/linux0224-nginx").unwrap();
        assert!(
            text.contains("KUBE-SVC-") && !text.contains('\x1b'),
            "{text}"
        );
        assert!(trace_text(&s, &pod, "nope/nothing").is_err());
    }
}
