//! A run of overlay entries — a whole node's worth after it lost its
//! flannel state — made as fast as the kernel takes them while keeping
//! flannel's per-peer order. Neighbour and FDB entries go out on one
//! netlink socket, routes on another, each in datagrams of [`BATCH`]
//! requests ([`crate::dataplane::batch`]). A route is sent only once every
//! neighbour and FDB entry planned before it was answered, so no route
//! points at a peer whose VTEP is not yet programmed. The two sockets work
//! on two cores: the kernel spends most of a whole-node repair inserting
//! routes. After a change fails nothing more is sent; the rest of a
//! datagram already sent is still made, and reported as such.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};

use crate::check::RepairAction;
use crate::check::text::action_line;
use crate::dataplane::Netns;
use std::net::IpAddr;

use crate::dataplane::batch::{BatchSocket, DeviceIndexes, Request};
use crate::error::{Error, Result};

/// Requests per datagram.
const BATCH: usize = 64;

/// The per-peer entries a whole-node repair makes by the thousand.
pub fn pipelined(a: &RepairAction) -> bool {
    matches!(
        a,
        RepairAction::NeighReplace { .. }
            | RepairAction::FdbReplace { .. }
            | RepairAction::RouteReplace { .. }
    )
}

/// What became of entry `k`: `None` when it was not sent because an
/// earlier change had failed.
pub type Outcome = (usize, Option<std::result::Result<(), String>>);

/// The first entry index whose neighbour/FDB change is not answered yet;
/// routes before it may go.
struct Frontier {
    at: Mutex<usize>,
    moved: Condvar,
}

impl Frontier {
    fn set(&self, k: usize) {
        *self.at.lock().unwrap_or_else(|e| e.into_inner()) = k;
        self.moved.notify_all();
    }

    fn wait_past(&self, k: usize) -> usize {
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        while *at < k {
            at = self.moved.wait(at).unwrap_or_else(|e| e.into_inner());
        }
        *at
    }
}

/// Called with a datagram's entry indexes before it is sent (the journal
/// records them); an error keeps the datagram and everything after it
/// unsent.
pub type BeforeSend = Arc<dyn Fn(&[usize]) -> Result<()> + Send + Sync>;

/// Makes `actions` (entry index, action; all [`pipelined`]) inside
/// `netns`, handing outcomes to `record` as they arrive.
pub fn run(
    netns: &Netns,
    actions: Vec<(usize, RepairAction)>,
    before_send: BeforeSend,
    mut record: impl FnMut(Outcome) -> Result<()>,
) -> Result<()> {
    let (routes, side): (Vec<_>, Vec<_>) = actions
        .into_iter()
        .partition(|(_, a)| matches!(a, RepairAction::RouteReplace { .. }));
    let failed = Arc::new(AtomicBool::new(false));
    let frontier = Arc::new(Frontier {
        at: Mutex::new(0),
        moved: Condvar::new(),
    });
    let (tx, rx) = mpsc::channel::<Vec<Outcome>>();

    let side_worker = {
        let (netns, failed, frontier, tx, before) = (
            netns.clone(),
            failed.clone(),
            frontier.clone(),
            tx.clone(),
            before_send.clone(),
        );
        std::thread::spawn(move || {
            let held = frontier.clone();
            let done = netns.run(move || {
                let mut w = Worker::new(&failed, before)?;
                for chunk in side.chunks(BATCH) {
                    let _ = tx.send(w.send(chunk));
                    held.set(chunk[chunk.len() - 1].0 + 1);
                }
                Ok::<_, Error>(())
            });
            // Whatever happened, the routes are no longer held back.
            frontier.set(usize::MAX);
            done?
        })
    };
    let route_worker = {
        let (netns, failed, tx) = (netns.clone(), failed.clone(), tx);
        std::thread::spawn(move || {
            netns.run(move || {
                let mut w = Worker::new(&failed, before_send)?;
                let mut rest = &routes[..];
                while !rest.is_empty() {
                    let ready = frontier.wait_past(rest[0].0);
                    let n = rest
                        .iter()
                        .take(BATCH)
                        .take_while(|(k, _)| *k <= ready)
                        .count();
                    let _ = tx.send(w.send(&rest[..n]));
                    rest = &rest[n..];
                }
                Ok::<_, Error>(())
            })?
        })
    };
    // Outcomes, recorded as they come; a recording failure stops the sends.
    let mut recorded = Ok(());
    for o in rx.into_iter().flatten() {
        if recorded.is_ok() {
            recorded = record(o);
            if recorded.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
        }
    }
    for worker in [side_worker, route_worker] {
        worker
            .join()
            .map_err(|_| Error::internal("a repair worker thread panicked"))??;
    }
    recorded
}

/// One socket's sender, inside the node's namespace.
struct Worker<'a> {
    sock: BatchSocket,
    indexes: DeviceIndexes,
    failed: &'a AtomicBool,
    before_send: BeforeSend,
}

impl<'a> Worker<'a> {
    fn new(failed: &'a AtomicBool, before_send: BeforeSend) -> Result<Self> {
        Ok(Worker {
            sock: BatchSocket::new()?,
            indexes: DeviceIndexes::default(),
            failed,
            before_send,
        })
    }

    fn request(&mut self, a: &RepairAction) -> Result<Request> {
        Ok(match a {
            RepairAction::NeighReplace { dev, ip, mac } => Request::Neigh {
                ifindex: self.indexes.get(dev)?,
                ip: *ip,
                mac: mac.0,
            },
            RepairAction::FdbReplace { dev, mac, dst } => Request::Fdb {
                ifindex: self.indexes.get(dev)?,
                mac: mac.0,
                dst: *dst,
            },
            RepairAction::RouteReplace {
                dst,
                gateway: IpAddr::V4(gateway),
                dev,
                onlink,
            } => Request::Route {
                dst: dst.addr(),
                len: dst.prefix_len(),
                gateway: Some(*gateway),
                ifindex: self.indexes.get(dev)?,
                onlink: *onlink,
            },
            other => {
                return Err(Error::usage(
                    format!("{} is not an overlay entry", action_line(other)),
                    None,
                ));
            }
        })
    }

    /// Sends one chunk (unless a change already failed) and says what
    /// became of each entry.
    fn send(&mut self, chunk: &[(usize, RepairAction)]) -> Vec<Outcome> {
        if self.failed.load(Ordering::SeqCst) {
            return chunk.iter().map(|(k, _)| (*k, None)).collect();
        }
        // Entries that cannot even be written down fail without being sent.
        let mut out: Vec<Outcome> = Vec::with_capacity(chunk.len());
        let mut requests = Vec::with_capacity(chunk.len());
        let mut sent = Vec::with_capacity(chunk.len());
        for (k, a) in chunk {
            match self.request(a) {
                Ok(r) => {
                    requests.push(r);
                    sent.push((*k, a));
                }
                Err(e) => out.push((*k, Some(Err(e.to_string())))),
            }
        }
        let indexes: Vec<usize> = sent.iter().map(|(k, _)| *k).collect();
        if let Err(e) = (self.before_send)(&indexes) {
            // Not journaled, so not sent.
            self.failed.store(true, Ordering::SeqCst);
            out.extend(sent.into_iter().map(|(k, _)| (k, Some(Err(e.to_string())))));
            out.sort_by_key(|(k, _)| *k);
            return out;
        }
        match self.sock.send(&requests) {
            // The kernel's refusal, with the command it refused.
            Ok(results) => {
                out.extend(sent.into_iter().zip(results).map(|((k, a), r)| {
                    (k, Some(r.map_err(|e| format!("{}: {e}", action_line(a)))))
                }))
            }
            Err(e) => out.extend(sent.into_iter().map(|(k, _)| (k, Some(Err(e.to_string()))))),
        }
        if out.iter().any(|(_, r)| matches!(r, Some(Err(_)))) {
            self.failed.store(true, Ordering::SeqCst);
        }
        out.sort_by_key(|(k, _)| *k);
        out
    }
}
