//! flannel's lines on a read node: its VTEP and bridge, each peer's
//! neigh, FDB entry and route as flannel writes them, then what its
//! findings name that no peer explains — each marked by the first finding
//! naming it. A lab node beside 5,000 unreached peers has 15,000 lines; a
//! deleted route changes the findings of one peer, so the lines are kept
//! in blocks of [`PEERS_PER_BLOCK`] peers and a change marks again the
//! blocks naming what changed (marking all 15,000 again took 10–20 ms of
//! each kernel notification's way to the screen, `benches/tui_render`).

use std::sync::Arc;

use super::{Blocks, Changed, Entry, Mark, marked};
use crate::check::{self, Finding, Subject};
use crate::dataplane::NodeState;
use crate::model::index::HashMap;
use crate::model::{Cluster, expect};

/// Peers a block holds (three lines each): small enough that marking a
/// block again is a few microseconds, few enough blocks (79 at 5,000
/// peers) that walking them is nothing.
const PEERS_PER_BLOCK: usize = 64;

/// flannel's expected lines on a node, unmarked ([`super::NodeEntries::overlay_expected`]).
#[derive(Debug, PartialEq, Eq)]
pub struct OverlayExpected {
    /// eth0's MTU they were worked out for (the VTEP's follows it).
    mtu: u32,
    /// The VTEP and the bridge, then each peer's neigh, FDB entry and route.
    lines: Vec<(&'static str, Subject, String)>,
    /// The block each peer line's subject is in (`None`: in more than
    /// one, as a VtepMAC two leases share). A finding naming a subject
    /// not here is "not expected".
    block_of: HashMap<Subject, Option<usize>>,
}

impl OverlayExpected {
    /// The blocks: the VTEP and the bridge, the peers' blocks, the lines
    /// not expected.
    fn blocks(&self) -> usize {
        2 + (self.lines.len() - 2).div_ceil(3 * PEERS_PER_BLOCK)
    }

    /// Block `b`'s first line.
    fn first_line_of(b: usize) -> usize {
        match b {
            0 => 0,
            _ => 2 + (b - 1) * 3 * PEERS_PER_BLOCK,
        }
    }

    /// Line `i`'s block.
    fn block_of_line(i: usize) -> usize {
        match i {
            0 | 1 => 0,
            _ => 1 + (i - 2) / (3 * PEERS_PER_BLOCK),
        }
    }
}

/// A node's flannel lines as the snapshot before had them, for the same
/// leases.
pub(super) struct Before<'a, 's> {
    /// The lines as written.
    pub expected: &'a Arc<OverlayExpected>,
    /// The lines as marked.
    pub blocks: &'a Blocks,
    /// The subjects whose findings changed since.
    pub changed: &'a Changed<'s>,
}

/// flannel's lines on `node` marked by its findings `mine`, in blocks;
/// with (peers whose three lines are all ok, peers) and the lines as
/// written, for the next time. The lines as written `before` are marked
/// again when eth0's MTU is the same: only the blocks naming a subject
/// whose findings changed.
pub(super) fn overlay_entries(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    mine: &[&Finding],
    before: Option<Before>,
) -> (Blocks, (usize, usize), Option<Arc<OverlayExpected>>) {
    let mtu = state.link("eth0").map(|l| l.mtu).unwrap_or(1500);
    let (expected, before) = match before.filter(|b| b.expected.mtu == mtu) {
        Some(b) => (b.expected.clone(), Some(b)),
        None => match overlay_expected(cluster, node, mtu) {
            Some(e) => (Arc::new(e), None),
            None => return (Blocks::default(), (0, 0), None),
        },
    };
    let blocks = before
        .and_then(|b| marked_again(&expected, mine, b.blocks, b.changed))
        .unwrap_or_else(|| marked_anew(&expected, mine));
    let peers = {
        // The blocks between the devices' and the unexpected lines'.
        let peer_blocks = blocks
            .blocks()
            .skip(1)
            .take(blocks.count().saturating_sub(2));
        let peers = peer_blocks.flat_map(|b| b.chunks(3));
        let ok = (peers.clone())
            .filter(|p| p.iter().all(|e| e.mark == Mark::Ok))
            .count();
        (ok, peers.count())
    };
    (blocks, peers, Some(expected))
}

/// Every line marked.
fn marked_anew(expected: &OverlayExpected, mine: &[&Finding]) -> Blocks {
    let by = check::first_naming(mine.iter().copied());
    let mark = |lines: &[(&'static str, Subject, String)]| -> Arc<[Entry]> {
        (lines.iter())
            .map(|(kind, subject, text)| marked(&by, kind, subject, text.clone()))
            .collect()
    };
    let mut blocks = Vec::with_capacity(expected.blocks());
    blocks.push(mark(&expected.lines[..2]));
    blocks.extend(expected.lines[2..].chunks(3 * PEERS_PER_BLOCK).map(mark));
    let mut unexpected = Vec::new();
    for f in mine {
        for s in f.subjects().filter(|s| !expected.block_of.contains_key(*s)) {
            let kind = match s {
                Subject::Route { .. } => "route",
                Subject::Neigh { .. } => "neigh",
                Subject::Fdb { .. } => "fdb",
                _ => continue,
            };
            unexpected.push(marked(&by, kind, s, format!("{} (not expected)", s.name())));
        }
    }
    blocks.push(unexpected.into());
    Blocks::of(blocks)
}

/// `before`'s blocks with the lines naming a `changed` subject marked
/// again, the other blocks shared. `None`: mark them all anew — most
/// lines changed, or a finding naming no peer's entry came or went (the
/// last block lists those from every finding).
fn marked_again(
    expected: &OverlayExpected,
    mine: &[&Finding],
    before: &Blocks,
    changed: &Changed,
) -> Option<Blocks> {
    let count = expected.blocks();
    if before.count() != count || changed.len() > expected.lines.len() / 4 {
        return None;
    }
    let mut again = vec![false; count];
    for s in changed {
        match expected.block_of.get(*s) {
            Some(Some(b)) => again[*b] = true,
            Some(None) => again[1..count - 1].fill(true),
            None => match s {
                Subject::Route { .. } | Subject::Neigh { .. } | Subject::Fdb { .. } => {
                    return None;
                }
                _ if expected.lines[..2].iter().any(|(_, d, _)| d == *s) => again[0] = true,
                _ => {}
            },
        }
    }
    let by = check::first_naming_where(mine.iter().copied(), |s| changed.contains(s));
    let remark = |b: usize| -> Arc<[Entry]> {
        let was = before.block(b).map(|w| &w[..]).unwrap_or_default();
        let at = OverlayExpected::first_line_of(b);
        let lines = &expected.lines[at..at + was.len()];
        (lines.iter().zip(was))
            .map(
                |((kind, subject, text), was)| match changed.contains(subject) {
                    true => marked(&by, kind, subject, text.clone()),
                    false => was.clone(),
                },
            )
            .collect()
    };
    Some(Blocks::rebuilt(count, Some(before), |b| again[b], remark))
}

/// flannel's lines on `node` as written, unmarked (`None`: no lease or
/// network to expect them from).
fn overlay_expected(cluster: &Cluster, node: &str, mtu: u32) -> Option<OverlayExpected> {
    let exp = expect::flannel(cluster, node, mtu).ok()?;
    let vtep = crate::model::flannel::VTEP_DEVICE;
    let mut lines = vec![
        (
            "device",
            Subject::device(vtep),
            format!(
                "{vtep} vxlan id 1 mtu {} mac {}",
                exp.vtep_mtu, exp.lease.vtep_mac
            ),
        ),
        (
            "device",
            Subject::device("cni0"),
            format!("cni0 {}", exp.bridge_address),
        ),
    ];
    lines.reserve(3 * exp.peers.len());
    for p in &exp.peers {
        lines.push((
            "neigh",
            Subject::Neigh {
                ip: p.neigh_ip.into(),
                dev: vtep.into(),
            },
            format!(
                "{} lladdr {} PERMANENT  ({})",
                p.neigh_ip, p.vtep_mac, p.peer
            ),
        ));
        lines.push((
            "fdb",
            Subject::Fdb {
                mac: p.vtep_mac,
                dev: vtep.into(),
            },
            format!("{} dst {} self permanent", p.vtep_mac, p.public_ip),
        ));
        lines.push((
            "route",
            Subject::Route {
                dst: p.route_dst.into(),
                table: 254,
            },
            format!("{} via {} dev {vtep} onlink", p.route_dst, p.neigh_ip),
        ));
    }
    // Only the peers' subjects: a finding naming a device is no line of
    // its own.
    let mut block_of = HashMap::with_capacity_and_hasher(lines.len(), Default::default());
    for (i, (_, s, _)) in lines.iter().enumerate().skip(2) {
        let b = OverlayExpected::block_of_line(i);
        block_of
            .entry(s.clone())
            .and_modify(|at: &mut Option<usize>| {
                if *at != Some(b) {
                    *at = None;
                }
            })
            .or_insert(Some(b));
    }
    Some(OverlayExpected {
        mtu,
        lines,
        block_of,
    })
}
