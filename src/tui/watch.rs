//! What wakes the dashboard's reader: a lab node's kernel notifications
//! ([`spawn`], from `dataplane::notify`), a bundle directory's inotify
//! events, the states agents publish (`agent::remote::Agents::watch_published`);
//! the live cluster wakes it through its reflectors
//! (`inspect::live::Reflected`).

use std::sync::mpsc::Sender;

pub use crate::dataplane::notify::spawn;

/// Watches a bundle directory (inotify, through notify) on a thread of its
/// own, sending on `changed` when a file in it changes.
pub fn bundle(path: std::path::PathBuf, changed: Sender<()>) {
    use notify::Watcher;
    std::thread::spawn(move || {
        let (tx, rx) = std::sync::mpsc::channel();
        let Ok(mut w) = notify::recommended_watcher(tx) else {
            return;
        };
        if w.watch(&path, notify::RecursiveMode::Recursive).is_err() {
            return;
        }
        for event in rx {
            let Ok(e) = event else { continue };
            if e.kind.is_access() {
                continue;
            }
            if changed.send(()).is_err() {
                return;
            }
        }
    });
}
