//! flannel's verdicts on one node, kept by part
//! ([`check_node_overlay_parts`]): the VTEP and bridge, one list per
//! peer, and the rest. A lab node beside 5,000 unreached peers has 15,000
//! findings about its peers' entries; a deleted route changes one peer's.
//! Writing all 15,000 again (their summaries, evidence and repairs) and
//! sorting them took 28 ms of each kernel notification's way to the
//! screen (`benches/tui_render`, `KD_BENCH_LAB_LIKE=1`); judging the
//! changed peers alone takes the peers' tables compared and a merge.

use std::sync::Arc;

use super::super::flannel::{Peers, PeersJudged};
use super::super::runs::{Run, Tally};
use super::super::{Finding, check_node_overlay_parts, share};
use crate::dataplane::NodeState;
use crate::model::index::HashSet;
use crate::model::{Cluster, ClusterNetwork};

/// flannel's findings on a node: the peers' by peer, and all of them sorted.
#[derive(Debug)]
pub(super) struct OverlayVerdicts {
    /// The peers' (`None`: not judged one by one, [`Peers::NotJudged`]).
    peers: Option<PeerVerdicts>,
    /// The VTEP's and bridge's, the peers', the rest's, merged in
    /// `check_node_overlay`'s order.
    pub all: Run,
}

/// Each peer's findings, and all of them sorted.
#[derive(Debug)]
struct PeerVerdicts {
    /// In the node's expectation's order of peers.
    by_peer: Vec<Vec<Arc<Finding>>>,
    sorted: Run,
}

impl OverlayVerdicts {
    /// Every part judged: `(verdicts, peers judged)`.
    pub fn judged(
        cluster: &Cluster,
        node: &str,
        state: &NodeState,
        net: Option<&ClusterNetwork>,
    ) -> (OverlayVerdicts, usize) {
        let parts = check_node_overlay_parts(cluster, node, state, net, PeersJudged::All);
        let peers = match parts.peers {
            Peers::Judged(by_peer) => {
                let by_peer: Vec<Vec<Arc<Finding>>> = by_peer.into_iter().map(share).collect();
                let all = by_peer.iter().flatten().cloned().collect();
                Some(PeerVerdicts {
                    sorted: Run::of(all, Some(node)),
                    by_peer,
                })
            }
            Peers::NotJudged | Peers::Rechecked(_) => None,
        };
        let judged = peers.as_ref().map_or(0, |p| p.by_peer.len());
        let verdicts = OverlayVerdicts::of(node, parts.devices, peers, parts.after_peers);
        (verdicts, judged)
    }

    /// The verdicts for `state`, where these are for `before` and no
    /// object they read changed: the VTEP, the bridge and the rest judged
    /// again, and only the peers whose entries differ, with how many.
    /// `None` when the peers were not or are no longer judged one by one
    /// (the VTEP came back, or went): the caller judges it all.
    pub fn after(
        self,
        cluster: &Cluster,
        node: &str,
        before: &NodeState,
        state: &NodeState,
        net: Option<&ClusterNetwork>,
    ) -> Option<(OverlayVerdicts, usize)> {
        let mut peers = self.peers?;
        let parts =
            check_node_overlay_parts(cluster, node, state, net, PeersJudged::ChangedSince(before));
        let judged = match parts.peers {
            Peers::Rechecked(r) if r.peers == peers.by_peer.len() => r.judged,
            Peers::Rechecked(_) | Peers::NotJudged | Peers::Judged(_) => return None,
        };
        let rejudged = judged.len();
        if rejudged > 0 {
            let mut gone: HashSet<*const Finding> = HashSet::default();
            let mut gone_tally = Tally::default();
            let mut found = Vec::new();
            for (i, now) in judged {
                let now = share(now);
                gone.extend(peers.by_peer[i].iter().map(Arc::as_ptr));
                gone_tally = gone_tally + Tally::of(&peers.by_peer[i]);
                found.extend(now.iter().cloned());
                peers.by_peer[i] = now;
            }
            // Every peer's findings name their peer in their summary, so
            // no two peers' findings sort equal: the kept ones and the new
            // merge into the order sorting them all gives.
            let kept = Run::of_sorted(
                (peers.sorted.iter())
                    .filter(|f| !gone.contains(&Arc::as_ptr(f)))
                    .cloned()
                    .collect(),
                peers.sorted.own,
                peers.sorted.tally.without(gone_tally),
            );
            peers.sorted = Run::merged(&kept, &Run::of(found, Some(node)));
        }
        let verdicts = OverlayVerdicts::of(node, parts.devices, Some(peers), parts.after_peers);
        Some((verdicts, rejudged))
    }

    /// The parts around the peers' shared and sorted, and all merged.
    fn of(
        node: &str,
        devices: Vec<Finding>,
        peers: Option<PeerVerdicts>,
        after_peers: Vec<Finding>,
    ) -> OverlayVerdicts {
        let devices = Run::of(share(devices), Some(node));
        let after_peers = Run::of(share(after_peers), Some(node));
        let all = match &peers {
            Some(p) => Run::merged(&Run::merged(&devices, &p.sorted), &after_peers),
            None => Run::merged(&devices, &after_peers),
        };
        OverlayVerdicts { peers, all }
    }
}
