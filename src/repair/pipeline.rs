//! A run of overlay entries — a whole node's worth after it lost its
//! flannel state — made as fast as the kernel takes them while keeping
//! flannel's per-peer order. The entries go out on one netlink socket in
//! datagrams of about [`BATCH`] requests ([`crate::dataplane::batch`]): a
//! route is sent only in a datagram after the one that carried every
//! neighbour and FDB entry planned before it, so no route points at a
//! peer whose VTEP is not yet programmed (a failure stops everything after
//! it). Every datagram is on disk in the journal before it is sent; the
//! journal's sync of the next datagram (≈0.25 ms on ext4, 160 of them for
//! a 5,000-peer node) runs on a thread of its own while the kernel takes
//! the current one. One socket, not one per kind: the kernel takes every
//! neighbour, FDB and route change under one lock (RTNL), so a second
//! socket only spins on it. After a change fails nothing more is sent; the
//! rest of a datagram already sent is still made, and reported as such.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use crate::check::RepairAction;
use crate::check::text::action_line;
use crate::dataplane::Netns;
use std::net::IpAddr;

use crate::dataplane::batch::{BatchSocket, DeviceIndexes, Request};
use crate::error::{Error, Result};

/// Neighbour and FDB requests per datagram (a datagram also carries the
/// routes the one before released, about as many).
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

/// Called with a datagram's entry indexes before it is sent (the journal
/// records them); an error keeps the datagram and everything after it
/// unsent.
pub type BeforeSend = Arc<dyn Fn(&[usize]) -> Result<()> + Send + Sync>;

/// One datagram's entries (entry index, action).
type Datagram = Vec<(usize, RepairAction)>;

/// Requests per datagram at most: their acknowledgements (≈0.8 KiB of
/// socket buffer each) fit the default 208 KiB receive buffer.
const MAX: usize = 2 * BATCH;

/// `actions` in datagrams, in plan order: a datagram holds the routes
/// whose neighbour and FDB entries went in earlier datagrams, then up to
/// [`BATCH`] neighbour and FDB entries, at most [`MAX`] in all.
fn datagrams(actions: Vec<(usize, RepairAction)>) -> Vec<Datagram> {
    let mut out: Vec<Datagram> = vec![Vec::new()];
    // Neighbour and FDB entries in the last datagram.
    let mut side = 0;
    // Routes planned after some of those: they wait for a later datagram.
    let mut held: Datagram = Vec::new();
    for (k, a) in actions {
        let route = matches!(a, RepairAction::RouteReplace { .. });
        if route && side > 0 {
            held.push((k, a));
            continue;
        }
        let full = out.last().is_some_and(|d| d.len() >= MAX);
        if full || (!route && side == BATCH) {
            // A new datagram: the held routes first (as many as fit).
            let routes = held.len();
            out.extend(held.chunks(MAX).map(<[_]>::to_vec));
            held.clear();
            // (No held routes, or they filled whole datagrams.)
            if routes.is_multiple_of(MAX) {
                out.push(Vec::new());
            }
            side = 0;
        }
        out.last_mut().expect("one datagram at least").push((k, a));
        side += usize::from(!route);
    }
    out.extend(held.chunks(MAX).map(<[_]>::to_vec));
    out.retain(|d| !d.is_empty());
    out
}

/// Makes `actions` (entry index, action; all [`pipelined`], in plan
/// order) inside `netns`, handing outcomes to `record` as they arrive.
pub fn run(
    netns: &Netns,
    actions: Vec<(usize, RepairAction)>,
    before_send: BeforeSend,
    mut record: impl FnMut(Outcome) -> Result<()>,
) -> Result<()> {
    let failed = Arc::new(AtomicBool::new(false));
    let (outcomes_tx, outcomes) = mpsc::channel::<Vec<Outcome>>();
    // Journaled datagrams, one ahead of the one being sent.
    let (journaled_tx, journaled) = mpsc::sync_channel::<Datagram>(1);

    // Whether the sender is inside the namespace with its socket open:
    // until it is, nothing is journaled as sent.
    let (ready_tx, ready) = mpsc::channel::<bool>();

    let journal = {
        let (failed, tx) = (failed.clone(), outcomes_tx.clone());
        std::thread::spawn(move || {
            let unsent = |d: &Datagram| d.iter().map(|(k, _)| (*k, None)).collect();
            let mut all = datagrams(actions).into_iter();
            // (`false`, or no word at all: the sender could not start.)
            if ready.recv().unwrap_or(false) {
                for d in all.by_ref() {
                    if failed.load(Ordering::SeqCst) {
                        let _ = tx.send(unsent(&d));
                        break;
                    }
                    let indexes: Vec<usize> = d.iter().map(|(k, _)| *k).collect();
                    if let Err(e) = before_send(&indexes) {
                        // Not journaled, so not sent.
                        failed.store(true, Ordering::SeqCst);
                        let e = e.to_string();
                        let _ =
                            tx.send(indexes.iter().map(|k| (*k, Some(Err(e.clone())))).collect());
                        break;
                    }
                    if let Err(mpsc::SendError(d)) = journaled_tx.send(d) {
                        let _ = tx.send(unsent(&d));
                        break;
                    }
                }
            }
            drop(journaled_tx);
            for d in all {
                let _ = tx.send(unsent(&d));
            }
        })
    };
    let sender = {
        let (netns, failed, tx) = (netns.clone(), failed.clone(), outcomes_tx);
        std::thread::spawn(move || {
            netns.run(move || {
                let w = Worker::new(&failed);
                let _ = ready_tx.send(w.is_ok());
                let mut w = w?;
                for d in journaled {
                    let _ = tx.send(w.send(&d));
                }
                Ok(())
            })?
        })
    };
    // Outcomes, recorded as they come; a recording failure stops the sends.
    let mut recorded = Ok(());
    for o in outcomes.into_iter().flatten() {
        if recorded.is_ok() {
            recorded = record(o);
            if recorded.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
        }
    }
    journal
        .join()
        .map_err(|_| Error::internal("the repair's journal thread panicked"))?;
    sender
        .join()
        .map_err(|_| Error::internal("the repair's sender thread panicked"))??;
    recorded
}

/// One socket's sender, inside the node's namespace.
struct Worker<'a> {
    sock: BatchSocket,
    indexes: DeviceIndexes,
    failed: &'a AtomicBool,
}

impl<'a> Worker<'a> {
    fn new(failed: &'a AtomicBool) -> Result<Self> {
        Ok(Worker {
            sock: BatchSocket::new()?,
            indexes: DeviceIndexes::default(),
            failed,
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

    /// Sends one journaled datagram (unless a change already failed) and
    /// says what became of each entry.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::Mac;

    /// Peer `p`'s three entries, flannel's order, at entry indexes 3p..3p+3.
    fn peer(p: u8) -> Vec<(usize, RepairAction)> {
        let (ip, mac) = (IpAddr::from([10, 244, p, 0]), Mac([2, 0, 0, 0, 0, p]));
        let dev = "flannel.1".to_string();
        let k = 3 * p as usize;
        vec![
            (
                k,
                RepairAction::NeighReplace {
                    dev: dev.clone(),
                    ip,
                    mac,
                },
            ),
            (
                k + 1,
                RepairAction::FdbReplace {
                    dev: dev.clone(),
                    mac,
                    dst: ip,
                },
            ),
            (
                k + 2,
                RepairAction::RouteReplace {
                    dst: format!("10.244.{p}.0/24").parse().unwrap(),
                    gateway: ip,
                    dev,
                    onlink: true,
                },
            ),
        ]
    }

    #[test]
    fn a_sender_that_cannot_start_leaves_nothing_journaled_as_sent() {
        let journaled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = journaled.clone();
        let before_send: BeforeSend = Arc::new(move |ks: &[usize]| {
            counted.fetch_add(ks.len(), Ordering::SeqCst);
            Ok(())
        });
        let mut outcomes = Vec::new();
        let r = run(
            &Netns::named("kdlab-no-such-namespace".to_string()),
            (0..100).flat_map(peer).collect(),
            before_send,
            |o| {
                outcomes.push(o);
                Ok(())
            },
        );
        assert!(r.is_err(), "no namespace, no repair");
        assert_eq!(journaled.load(Ordering::SeqCst), 0);
        outcomes.sort_by_key(|(k, _)| *k);
        assert_eq!(outcomes.len(), 300);
        assert!(
            outcomes
                .iter()
                .enumerate()
                .all(|(i, (k, o))| *k == i && o.is_none())
        );
    }

    #[test]
    fn a_route_goes_after_the_datagram_that_made_its_peers_vtep() {
        // 80 peers: 160 neighbour and FDB entries, 80 routes.
        let all: Vec<_> = (0..80).flat_map(peer).collect();
        let ds = datagrams(all.clone());
        // Every entry once, in plan order within each kind.
        let mut seen: Vec<usize> = ds.iter().flatten().map(|(k, _)| *k).collect();
        seen.sort();
        assert_eq!(seen, (0..240).collect::<Vec<_>>());
        let is_route = |a: &RepairAction| matches!(a, RepairAction::RouteReplace { .. });
        let at = |k: usize| {
            ds.iter()
                .position(|d| d.iter().any(|(j, _)| *j == k))
                .unwrap()
        };
        for (k, a) in &all {
            if is_route(a) {
                // Its peer's neighbour and FDB entries (k-2, k-1) went in
                // an earlier datagram.
                assert!(at(k - 2) < at(*k) && at(k - 1) < at(*k), "route {k}");
            }
        }
        // 64 neighbour/FDB entries a datagram: 160 take three, and the
        // last routes a fourth of their own.
        let side: Vec<usize> = ds
            .iter()
            .map(|d| d.iter().filter(|(_, a)| !is_route(a)).count())
            .collect();
        assert_eq!(side, vec![64, 64, 32, 0]);
        // Routes first in a datagram: they follow earlier datagrams only.
        for d in &ds {
            let first_side = d.iter().position(|(_, a)| !is_route(a)).unwrap_or(d.len());
            assert!(d[first_side..].iter().all(|(_, a)| !is_route(a)));
        }
        // Routes alone (nothing planned before them) fill whole datagrams.
        let many: Vec<_> = (0..200).flat_map(peer).collect();
        let routes: Vec<_> = many.iter().filter(|(_, a)| is_route(a)).cloned().collect();
        let sizes: Vec<usize> = datagrams(routes.clone()).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![128, 72]);
        // A neighbour then 199 routes: the routes in the datagrams after.
        let mut one = many[..1].to_vec();
        one.extend(routes[1..].iter().cloned());
        let sizes: Vec<usize> = datagrams(one).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 128, 71]);
    }
}
