//! A run of overlay entries — a whole node's worth after it lost its
//! flannel state — made as fast as the kernel takes them while keeping
//! flannel's per-peer order. Neighbour and FDB entries go out on one
//! netlink socket, routes on another, each pipelined (the kernel applies a
//! socket's requests in the order they were sent; waiting for each answer
//! before sending the next, as `ip -batch` does, only adds round trips).
//! A route is sent only once every neighbour and FDB entry planned before
//! it was answered, so no route points at a peer whose VTEP is not yet
//! programmed. The two sockets work on two cores: the kernel spends most
//! of a whole-node repair inserting routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use futures::StreamExt;

use crate::check::RepairAction;
use crate::dataplane::Netns;
use crate::dataplane::write::Writer;
use crate::error::{Error, Result};

/// Requests in flight at once on each socket.
const IN_FLIGHT: usize = 64;

/// The per-peer entries a whole-node repair makes by the thousand.
pub fn pipelined(a: &RepairAction) -> bool {
    matches!(
        a,
        RepairAction::NeighReplace { .. }
            | RepairAction::FdbReplace { .. }
            | RepairAction::RouteReplace { .. }
    )
}

/// The device a pipelined action writes to.
fn device(a: &RepairAction) -> Option<&str> {
    match a {
        RepairAction::NeighReplace { dev, .. }
        | RepairAction::FdbReplace { dev, .. }
        | RepairAction::RouteReplace { dev, .. } => Some(dev),
        _ => None,
    }
}

/// What became of entry `k`: `None` when it was not sent because an
/// earlier change had failed.
pub type Outcome = (usize, Option<std::result::Result<(), String>>);

/// Makes `actions` (entry index, action; all [`pipelined`]) inside
/// `netns`, handing each outcome to `record` as it arrives; after a change
/// fails, no further one is sent (those in flight still complete).
pub fn run(
    netns: &Netns,
    actions: Vec<(usize, RepairAction)>,
    mut record: impl FnMut(Outcome) -> Result<()>,
) -> Result<()> {
    let (routes, side): (Vec<_>, Vec<_>) = actions
        .into_iter()
        .partition(|(_, a)| matches!(a, RepairAction::RouteReplace { .. }));
    let failed = Arc::new(AtomicBool::new(false));
    // The first entry index whose neighbour/FDB change is not answered yet.
    let (frontier_tx, frontier_rx) = tokio::sync::watch::channel(0usize);
    // Outcomes travel in batches: a wake-up per change would cost more
    // than the change.
    let (tx, rx) = mpsc::channel::<Vec<Outcome>>();

    let side_worker = {
        let (netns, failed, tx) = (netns.clone(), failed.clone(), tx.clone());
        std::thread::spawn(move || {
            Writer::run(&netns, move |w| async move {
                warm(&w, &side).await;
                let mut out = futures::stream::iter(&side)
                    .map(|(k, a)| send(&w, &failed, *k, a))
                    .buffered(IN_FLIGHT);
                let mut batch = Batch::new(&tx);
                while let Some((k, r)) = out.next().await {
                    batch.push((k, r));
                    frontier_tx.send_replace(k + 1);
                }
                frontier_tx.send_replace(usize::MAX);
                Ok(())
            })
        })
    };
    let route_worker = {
        let (netns, failed, tx) = (netns.clone(), failed.clone(), tx);
        std::thread::spawn(move || {
            Writer::run(&netns, move |w| async move {
                warm(&w, &routes).await;
                let (w, failed) = (&w, &failed);
                let out = futures::stream::iter(&routes)
                    // One route at a time waits for its peer's entries (the
                    // side worker ending, even by error, releases all)...
                    .then(|(k, a)| {
                        let mut frontier = frontier_rx.clone();
                        async move {
                            let _ = frontier.wait_for(|f| *f >= *k).await;
                            (k, a)
                        }
                    })
                    // ...then goes out with up to IN_FLIGHT others.
                    .map(|(k, a)| send(w, failed, *k, a))
                    .buffered(IN_FLIGHT);
                let mut out = std::pin::pin!(out);
                let mut batch = Batch::new(&tx);
                while let Some(o) = out.next().await {
                    batch.push(o);
                }
                Ok(())
            })
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
            .map_err(|_| Error::env("a repair worker thread panicked", None))??;
    }
    recorded
}

/// Outcomes on their way to the recorder, sent every [`IN_FLIGHT`] and
/// when the worker is done.
struct Batch<'a> {
    tx: &'a mpsc::Sender<Vec<Outcome>>,
    items: Vec<Outcome>,
}

impl<'a> Batch<'a> {
    fn new(tx: &'a mpsc::Sender<Vec<Outcome>>) -> Self {
        Batch {
            tx,
            items: Vec::with_capacity(IN_FLIGHT),
        }
    }

    fn push(&mut self, o: Outcome) {
        self.items.push(o);
        if self.items.len() == IN_FLIGHT {
            let _ = self.tx.send(std::mem::take(&mut self.items));
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.items.is_empty() {
            let _ = self.tx.send(std::mem::take(&mut self.items));
        }
    }
}

/// Looks the devices up before the first send, so that no request waits
/// on a lookup while later ones overtake it.
async fn warm(w: &Writer, actions: &[(usize, RepairAction)]) {
    let devices: std::collections::BTreeSet<&str> =
        actions.iter().filter_map(|(_, a)| device(a)).collect();
    for dev in devices {
        // A missing device is reported by the change that needs it.
        let _ = w.index(dev).await;
    }
}

async fn send(w: &Writer, failed: &AtomicBool, k: usize, a: &RepairAction) -> Outcome {
    if failed.load(Ordering::SeqCst) {
        return (k, None);
    }
    let r = super::apply::make(w, a, None)
        .await
        .map_err(|e| e.to_string());
    if r.is_err() {
        failed.store(true, Ordering::SeqCst);
    }
    (k, Some(r))
}
