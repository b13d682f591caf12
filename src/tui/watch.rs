//! What wakes the dashboard's reader: a lab node's kernel notifications
//! ([`spawn`], from `dataplane::notify`), a bundle directory's inotify
//! events, the states agents publish (`agent::remote::Agents::watch_published`);
//! the live cluster wakes it through its reflectors
//! (`inspect::live::Reflected`).

use std::sync::mpsc::Sender;

/// What woke the reader: the cluster objects changed (a watch event, the
/// bundle), or only node states did (an agent's new state), or one node's
/// kernel said its tables changed (a netlink notification). Only the first
/// has the cluster read again: at 150,000 pods that is most of a second;
/// the last has that node's kernel tables read again, not its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    Objects,
    Nodes,
    Kernel(String),
}

/// A sender for a source that only says "changed": each signal reaches
/// `to` as `what` (a forwarding thread that ends with either side).
pub fn tagged(what: Wake, to: Sender<Wake>) -> Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for () in rx {
            if to.send(what.clone()).is_err() {
                return;
            }
        }
    });
    tx
}

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
