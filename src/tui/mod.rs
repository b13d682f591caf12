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
    let mut terminal = ratatui::init();
    let mut app = App::new();
    let result = (|| -> Result<()> {
        while !app.quit {
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

#[cfg(test)]
mod tests;
