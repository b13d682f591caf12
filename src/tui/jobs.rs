//! The dashboard's work off the render thread: repairs, undos, the repair
//! history and probes run as `knetdoctor` child processes (journal, lock
//! and re-check exactly as on the command line); a static trace is computed
//! in a thread over the snapshot; the capture buffer is written in one.
//! Each sends back what it found as a [`Done`].

use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use super::capture::{Buffer, pcapng_path};
use super::snapshot::Snapshot;
use crate::repair::journal::Journal;

/// What a job found.
#[derive(Debug)]
pub enum Done {
    /// A repair or undo ended: its verdict line.
    Repaired(String),
    /// A node's past repairs.
    History(String, Result<Vec<Journal>, String>),
    /// A trace's (or probe's) report, line by line.
    Traced(Vec<String>),
    /// Something for the status line.
    Status(String),
}

/// Runs `knetdoctor ARGS` and returns (success, stdout, stderr).
fn knetdoctor(args: &[&str]) -> Result<(bool, String, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find knetdoctor: {e}"))?;
    let out = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run knetdoctor: {e}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The last non-empty line of a command's report (its verdict).
fn verdict(ok: bool, out: &str, err: &str) -> String {
    let text = if ok || err.trim().is_empty() {
        out
    } else {
        err
    };
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_string()
}

/// Why a job that changes or probes nodes needs a lab.
fn lab_only(what: &str, node_hint: &str) -> String {
    format!("{what}: from the dashboard only on a lab; run `knetdoctor {node_hint}` on the node")
}

/// `repair --apply --yes` (or `--undo ID`) on a lab node.
pub fn repair(node: String, undo: Option<String>, lab: Option<String>, done: Sender<Done>) {
    std::thread::spawn(move || {
        let what = match &undo {
            Some(id) => format!("undo of {id} on {node}"),
            None => format!("repair of {node}"),
        };
        let report = match lab {
            None => lab_only(&what, &format!("repair --node {node} --apply")),
            Some(lab) => {
                let mut args = vec!["repair", "--node", &node, "--lab", &lab];
                match &undo {
                    Some(id) => args.extend(["--undo", id.as_str()]),
                    None => args.extend(["--apply", "--yes"]),
                }
                match knetdoctor(&args) {
                    Ok((ok, out, err)) => format!("{what}: {}", verdict(ok, &out, &err)),
                    Err(e) => format!("{what} could not start: {e}"),
                }
            }
        };
        let _ = done.send(Done::Repaired(report));
    });
}

/// `repair --history -o json` of a node.
pub fn history(node: String, lab: Option<String>, done: Sender<Done>) {
    std::thread::spawn(move || {
        let Some(lab) = lab else {
            // A bundle's or a live cluster's node: repairs made on this
            // machine are journaled here (`repair` on the node itself).
            let past = crate::repair::journal::history(&crate::repair::journal::journal_dir(&node));
            let _ = done.send(Done::History(node, Ok(past)));
            return;
        };
        let args = [
            "repair",
            "--node",
            &node,
            "--history",
            "-o",
            "json",
            "--lab",
            &lab,
        ];
        let past = knetdoctor(&args).and_then(|(ok, out, err)| {
            if !ok {
                return Err(verdict(ok, &out, &err));
            }
            serde_json::from_str::<Vec<Journal>>(&out)
                .map_err(|e| format!("reading the repair history: {e}"))
        });
        let _ = done.send(Done::History(node, past));
    });
}

/// The static trace from `from` to `to` over the snapshot, as `trace`
/// prints it.
pub fn trace(s: Arc<Snapshot>, from: String, to: String, done: Sender<Done>) {
    std::thread::spawn(move || {
        let lines = match trace_text(&s, &from, &to) {
            Ok(t) => t,
            Err(e) => format!("cannot trace {from} → {to}: {e}"),
        };
        let _ = done.send(Done::Traced(lines.lines().map(str::to_string).collect()));
    });
}

fn trace_text(s: &Snapshot, from: &str, to: &str) -> crate::error::Result<String> {
    use crate::trace::{resolve, sim, text};
    let src = resolve::resolve(&s.cluster, from, "default")?;
    let dst = resolve::resolve(&s.cluster, to, "default")?;
    let world = sim::World::new(&s.cluster, &s.states, &s.findings);
    let t = sim::trace(&world, &src, &dst, "tcp", None);
    // The text carries the terminal styles `trace` prints with; the
    // dashboard draws its own.
    Ok(anstream::adapter::strip_str(&text::render(&t)).to_string())
}

/// `trace FROM TO --probe` in the lab: a real packet, its report.
pub fn probe(from: String, to: String, lab: Option<String>, done: Sender<Done>) {
    std::thread::spawn(move || {
        let lines = match lab {
            None => vec![lab_only("probe", &format!("trace {from} {to} --probe"))],
            Some(lab) => match knetdoctor(&["trace", &from, &to, "--probe", "--lab", &lab]) {
                Ok((_, out, err)) => anstream::adapter::strip_str(&format!("{out}{err}"))
                    .to_string()
                    .lines()
                    .map(str::to_string)
                    .collect(),
                Err(e) => vec![e],
            },
        };
        let _ = done.send(Done::Traced(probe_first(lines)));
    });
}

/// `trace --probe` prints the static trace, then the probe's report: the
/// view shows the report first, the trace it was compared with below.
fn probe_first(mut lines: Vec<String>) -> Vec<String> {
    if let Some(at) = lines.iter().position(|l| l.starts_with("probe: ")) {
        let mut report = lines.split_off(at);
        report.push(String::new());
        report.append(&mut lines);
        return report;
    }
    lines
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
    fn the_verdict_is_the_last_line_of_the_report_or_of_the_error() {
        assert_eq!(
            verdict(true, "plan\n\ndone: 3 applied\n\n", ""),
            "done: 3 applied"
        );
        assert_eq!(verdict(false, "plan\n", "error: locked\n"), "error: locked");
        assert_eq!(verdict(false, "", ""), "no output");
    }

    #[test]
    fn the_probe_report_comes_before_the_trace() {
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            probe_first(lines(&[
                "trace a -> b",
                "  ok hop",
                "",
                "probe: tcp",
                "  reply: none"
            ])),
            lines(&[
                "probe: tcp",
                "  reply: none",
                "",
                "trace a -> b",
                "  ok hop",
                ""
            ])
        );
        assert_eq!(probe_first(lines(&["error: x"])), lines(&["error: x"]));
    }

    #[test]
    fn a_trace_of_the_seed_cluster_names_its_hops() {
        let (cluster, state) = crate::check::tests::seed();
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
