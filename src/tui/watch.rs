//! What wakes the dashboard's reader: a lab node's kernel notifications
//! ([`spawn`], from `dataplane::notify`), a bundle directory's inotify
//! events, the states agents publish (`agent::remote::Agents::watch_published`);
//! the live cluster wakes it through its reflectors
//! (`inspect::live::Reflected`).

use crate::signal::Signal;

/// What woke the reader. A watch event says the cluster objects changed
/// and nothing of the nodes; a bundle's files may be either; an agent's
/// new state is one node's whole state; a netlink notification is one
/// node's kernel tables. Each is read again alone: at 150,000 pods the
/// objects take most of a second, a node's rules (iptables-save of 100,000
/// rules) as long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// A watch event: the objects changed, no node state did.
    Objects,
    /// A bundle's file changed: objects or node states.
    Bundle,
    /// An agent published a node's state.
    Nodes,
    /// A lab node's kernel said its tables changed.
    Kernel(String),
}

/// What the next reading reads again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reread {
    /// The cluster objects (else the last reading's are kept).
    pub objects: bool,
    /// `None`: every node whole; else only these nodes' kernel tables,
    /// every other node's state kept (an empty set keeps them all).
    pub kernels: Option<std::collections::BTreeSet<String>>,
}

impl Reread {
    /// Everything: the first reading, and the periodic one (iptables
    /// sends no notification) — whose objects are kept when a watch or
    /// the bundle's inotify (`objects_notified`) would have said they
    /// changed.
    pub fn everything(objects_notified: bool) -> Reread {
        Reread {
            objects: !objects_notified,
            kernels: None,
        }
    }

    /// What the wakes that came since the last reading ask for. A source
    /// that sends no word when its objects change has them read every time.
    pub fn after(woke: &[Wake], objects_notified: bool) -> Reread {
        let whole = woke.iter().any(|w| matches!(w, Wake::Bundle | Wake::Nodes));
        Reread {
            objects: !objects_notified
                || woke
                    .iter()
                    .any(|w| matches!(w, Wake::Objects | Wake::Bundle)),
            kernels: (!whole).then(|| {
                woke.iter()
                    .filter_map(|w| match w {
                        Wake::Kernel(node) => Some(node.clone()),
                        _ => None,
                    })
                    .collect()
            }),
        }
    }
}

pub use crate::dataplane::notify::spawn;

/// Watches a bundle directory (inotify, through notify) on a thread of its
/// own, sending on `changed` when a file in it changes.
pub fn bundle(path: std::path::PathBuf, changed: Signal) {
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
            if !changed.send() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{Reread, Wake};

    fn nodes(n: &[&str]) -> Option<std::collections::BTreeSet<String>> {
        Some(n.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_watch_event_keeps_every_node_state() {
        let r = Reread::after(&[Wake::Objects, Wake::Objects], true);
        assert_eq!(
            r,
            Reread {
                objects: true,
                kernels: nodes(&[])
            }
        );
    }

    #[test]
    fn kernels_alone_keep_the_objects_and_the_other_nodes() {
        let woke = [Wake::Kernel("a".into()), Wake::Kernel("b".into())];
        let r = Reread::after(&woke, true);
        assert_eq!((r.objects, r.kernels), (false, nodes(&["a", "b"])));
        // Beside a watch event, the objects too.
        let r = Reread::after(&[Wake::Kernel("a".into()), Wake::Objects], true);
        assert_eq!((r.objects, r.kernels), (true, nodes(&["a"])));
    }

    #[test]
    fn a_bundle_or_an_agent_reads_every_node_whole() {
        let r = Reread::after(&[Wake::Kernel("a".into()), Wake::Bundle], true);
        assert_eq!((r.objects, r.kernels), (true, None));
        let r = Reread::after(&[Wake::Nodes], true);
        assert_eq!((r.objects, r.kernels), (false, None));
    }

    #[test]
    fn objects_nobody_watches_are_read_every_time() {
        assert!(Reread::after(&[Wake::Kernel("a".into())], false).objects);
        assert!(Reread::everything(false).objects);
        assert!(!Reread::everything(true).objects);
        assert_eq!(Reread::everything(true).kernels, None);
    }
}
