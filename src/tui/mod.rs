//! The live dashboard (`knetdoctor`, `knetdoctor tui`): ratatui over
//! crossterm. A reader thread takes snapshots (cluster, node states,
//! `check`'s findings) and hands them over — again when a lab node's kernel
//! reports a change (rtnetlink notifications), and every `--refresh-ms`
//! for what sends none (iptables, the cluster objects); the render thread
//! only draws and reads keys, so the screen never waits on I/O. The terminal is
//! restored on every way out, a panic included (ratatui's hook).

pub mod app;
pub mod snapshot;
pub mod view;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crossterm::event::{self, Event, KeyEventKind};

use crate::cli::TuiArgs;
use crate::error::{Error, Result};
use crate::inspect;
use app::App;
use snapshot::Snapshot;

/// Reads the cluster and its nodes once, as `check` does.
fn take(a: &TuiArgs) -> std::result::Result<Snapshot, String> {
    let target =
        inspect::Target::from_flags(a.source.bundle.clone(), &a.source.lab, a.source.live())
            .map_err(|e| e.to_string())?;
    let cluster = target.cluster().map_err(|e| e.to_string())?;
    let states = target.node_states(None).map_err(|e| e.to_string())?;
    let findings = crate::check::run(&cluster, &states);
    let source = match (&a.source.bundle, &a.source.kubeconfig) {
        (Some(b), _) => format!("bundle {}", b.display()),
        (None, Some(k)) => format!("live {}", k.display()),
        _ => format!("lab {}", a.source.lab),
    };
    Ok(Snapshot::build(source, &cluster, &states, findings))
}

/// Runs the dashboard until `q`.
pub fn run(a: TuiArgs) -> Result<u8> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(Error::usage(
            "the dashboard needs a terminal",
            Some("run it in a terminal, or use `knetdoctor check` for text".to_string()),
        ));
    }
    let (tx, rx) = mpsc::channel::<std::result::Result<Snapshot, String>>();
    let a_lab =
        (a.source.bundle.is_none() && a.source.live().is_none()).then(|| a.source.lab.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let every = Duration::from_millis(a.refresh_ms);
        std::thread::spawn(move || {
            // Kernel notifications from the lab's nodes wake the reader
            // early; otherwise it reads again every `every`.
            let (changed_tx, changed) = mpsc::channel::<String>();
            let mut watching = false;
            while !stop.load(Ordering::Relaxed) {
                let s = take(&a);
                if !watching
                    && a.source.bundle.is_none()
                    && a.source.live().is_none()
                    && let Ok(s) = &s
                {
                    for n in s.nodes.iter().filter(|n| n.read) {
                        if let Ok(src) = inspect::resolve_node(Some(&n.name), None, &a.source.lab) {
                            watch::spawn(n.name.clone(), src.netns, changed_tx.clone());
                        }
                    }
                    watching = true;
                }
                if tx.send(s).is_err() {
                    return;
                }
                if changed.recv_timeout(every).is_ok() {
                    // A burst of changes (a whole repair) is read once.
                    std::thread::sleep(Duration::from_millis(30));
                    while changed.try_recv().is_ok() {}
                }
            }
        })
    };
    // Repairs run as `knetdoctor repair --apply` in a child process, off
    // the render thread; the report comes back here.
    let (done_tx, done) = mpsc::channel::<String>();
    let lab = a_lab.clone();
    let mut terminal = ratatui::init();
    let mut app = App::new();
    let result = (|| -> Result<()> {
        while !app.quit {
            if let Some(node) = app.apply.take() {
                app.applying = true;
                app.status = Some(format!("repairing {node}…"));
                spawn_repair(node, lab.clone(), done_tx.clone());
            }
            if let Ok(report) = done.try_recv() {
                app.applying = false;
                app.status = Some(report);
            }
            while let Ok(s) = rx.try_recv() {
                match s {
                    Ok(s) => app.update(s, std::time::SystemTime::now()),
                    Err(e) => app.error = Some(e),
                }
            }
            terminal
                .draw(|f| view::render(f, &app))
                .map_err(|e| Error::env(format!("drawing the dashboard: {e}"), None))?;
            if event::poll(Duration::from_millis(200))
                .map_err(|e| Error::env(format!("reading the terminal: {e}"), None))?
                && let Event::Key(k) = event::read()
                    .map_err(|e| Error::env(format!("reading the terminal: {e}"), None))?
                && k.kind == KeyEventKind::Press
            {
                app.key(k);
            }
        }
        Ok(())
    })();
    ratatui::restore();
    stop.store(true, Ordering::Relaxed);
    // The reader may be in the middle of a slow read: it is not waited for.
    drop((rx, reader));
    result.map(|()| 0)
}

/// Runs `knetdoctor repair --node NODE --apply --yes` (journaled, locked,
/// checked again, as on the command line) and sends back its verdict.
fn spawn_repair(node: String, lab: Option<String>, done: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        let report = match (std::env::current_exe(), lab) {
            (Ok(exe), Some(lab)) => match std::process::Command::new(exe)
                .args(["repair", "--node", &node, "--lab", &lab, "--apply", "--yes"])
                .stdin(std::process::Stdio::null())
                .output()
            {
                Ok(out) => {
                    let text = String::from_utf8_lossy(if out.status.success() {
                        &out.stdout
                    } else {
                        &out.stderr
                    })
                    .into_owned();
                    // The verdict is the last line (the journal's ID and
                    // path are in `repair --history`).
                    let last = text.lines().rev().find(|l| !l.trim().is_empty());
                    format!("repair of {node}: {}", last.unwrap_or("no output").trim())
                }
                Err(e) => format!("repair of {node} could not start: {e}"),
            },
            (Err(e), _) => format!("repair of {node} could not start: {e}"),
            (_, None) => format!(
                "repair of {node}: from the dashboard only on a lab; run `knetdoctor repair --node {node} --apply` on the node"
            ),
        };
        let _ = done.send(report);
    });
}

#[cfg(test)]
mod tests;
