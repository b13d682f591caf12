//! The pure half of `trace --probe`: which interfaces the static trace
//! predicts the packet crosses (its stations), what the captures saw there,
//! and whether the real packet agrees with the prediction. No I/O here.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::trace::{Branch, DropReason, Hop, Point, Trace, Verdict};

/// An interface the packet should cross, in path order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Station {
    pub node: String,
    pub device: String,
    /// The hop it belongs to.
    pub point: Point,
    /// Index of that hop in the path (common hops, then the branch's).
    #[serde(skip)]
    pub hop: usize,
}

impl Station {
    /// `node/device`, as the report prints it.
    pub fn label(&self) -> String {
        self.place().to_string()
    }

    /// The interface, to compare with where frames were seen.
    pub fn place(&self) -> Place {
        Place {
            node: self.node.clone(),
            device: self.device.clone(),
        }
    }
}

/// A node's interface: where a frame of the probe was seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    pub node: String,
    pub device: String,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&format!("{}/{}", self.node, self.device))
    }
}

impl Serialize for Place {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Which way a captured frame was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Request,
    Reply,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Request => "request",
            Direction::Reply => "reply",
        })
    }
}

/// One frame of the probe seen by a capture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Seen {
    /// The interface (printed `node/device`).
    pub at_iface: Place,
    pub direction: Direction,
    /// Seconds since the capture started (kernel timestamps).
    pub at: f64,
    /// The decoded line (outer and, for VXLAN, inner packet).
    pub packet: String,
    /// The (inner) destination address: after DNAT, the endpoint.
    #[serde(skip)]
    pub dst: Option<IpAddr>,
}

/// What came back to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplyKind {
    /// An echo reply, a SYN-ACK, a UDP answer, an HTTP status.
    Answer,
    /// A TCP reset from the destination: it was reached, the port is closed.
    Reset,
    /// An ICMP error (port or host unreachable, fragmentation needed, ...).
    Unreachable,
    /// Nothing within the timeout.
    None,
    /// The sender's own kernel refused to send (e.g. a cached path MTU).
    LocalError,
}

/// The reply, as the sender saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub kind: ReplyKind,
    pub from: Option<IpAddr>,
    /// e.g. `SYN-ACK after 0.4 ms`, `fragmentation needed (mtu 1400)`.
    pub detail: String,
}

/// How the real packet compares with the static trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    /// The destination answered (or reset, where the trace says it is
    /// reachable: the port is closed but the path works).
    pub reached: bool,
    /// The branch (endpoint) the kernel chose, when the path forks.
    pub branch: Option<String>,
    pub stations: Vec<StationSeen>,
    /// The furthest station where the request was seen.
    pub last_seen: Option<String>,
    /// Where the request vanished: the first predicted station after
    /// `last_seen` where it was not seen.
    pub lost_before: Option<String>,
    /// True when the real packet got exactly as far as the static trace says.
    pub agrees: bool,
    /// Why not, when it does not.
    pub disagreement: Option<String>,
}

/// One predicted station and whether the request and reply were seen there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StationSeen {
    pub station: Station,
    pub request: bool,
    pub reply: bool,
}

/// The stations of one way through: every hop with a node and a device, plus
/// the receiving node's eth0 after the underlay, in path order, each
/// interface once.
pub fn stations(common: &[Hop], branch: Option<&Branch>) -> Vec<Station> {
    let hops: Vec<&Hop> = common
        .iter()
        .chain(branch.iter().flat_map(|b| b.hops.iter()))
        .collect();
    let mut out: Vec<Station> = Vec::new();
    let mut push = |node: &str, device: &str, point: Point, hop: usize| {
        if !out.iter().any(|s| s.node == node && s.device == device) {
            out.push(Station {
                node: node.to_string(),
                device: device.to_string(),
                point,
                hop,
            });
        }
    };
    for (i, h) in hops.iter().enumerate() {
        if matches!(h.point, Point::Dns | Point::ReturnPath) {
            continue;
        }
        // The ingress controller opens a connection of its own to the
        // backend: the probe's packet ends at the controller.
        if h.point == Point::Ingress {
            break;
        }
        // Delivered to the node's own stack: the packet crosses no device
        // a capture sees (the route's device names only the address).
        if h.point == Point::ToHost
            || (h.point == Point::Routing
                && hops.get(i + 1).is_some_and(|n| n.point == Point::ToHost))
        {
            continue;
        }
        let (Some(node), Some(device)) = (&h.node, &h.device) else {
            continue;
        };
        // Arriving over the underlay: the receiving node's eth0 comes first.
        if h.point == Point::FromOverlay && i > 0 && hops[i - 1].point == Point::Underlay {
            push(node, "eth0", Point::FromOverlay, i);
        }
        // A capture on the device a route sends to sees the packet only
        // after netfilter on that node has let it through.
        let mut at = i;
        if h.point == Point::Routing {
            at += 1;
            while hops.get(at).is_some_and(|n| {
                n.node == h.node && matches!(n.point, Point::NetfilterFilter | Point::NetfilterNat)
            }) {
                at += 1;
            }
        }
        push(node, device, h.point, at);
    }
    out
}

/// Compares what the captures saw and what came back with the trace.
pub fn judge(trace: &Trace, seen: &[Seen], reply: &Reply) -> Judgement {
    let post_dnat: Vec<IpAddr> = seen
        .iter()
        .filter(|s| s.direction == Direction::Request)
        .filter_map(|s| s.dst)
        .filter(|d| trace.sent_to.as_ref().is_none_or(|t| t.ip != *d))
        .collect();
    // The branch the kernel took: the one naming the endpoint seen after
    // DNAT; otherwise the first whose prediction fits.
    let candidates: Vec<Option<&Branch>> = if trace.branches.is_empty() {
        vec![None]
    } else {
        let named: Vec<&Branch> = trace
            .branches
            .iter()
            .filter(|b| post_dnat.iter().any(|d| b.label.contains(&format!("{d}:"))))
            .collect();
        if named.is_empty() {
            trace.branches.iter().map(Some).collect()
        } else {
            named.into_iter().map(Some).collect()
        }
    };
    let judged: Vec<Judgement> = candidates
        .iter()
        .map(|b| judge_branch(trace, *b, seen, reply))
        .collect();
    judged
        .iter()
        .find(|j| j.agrees)
        .or(judged.first())
        .cloned()
        .unwrap_or_else(|| judge_branch(trace, None, seen, reply))
}

fn judge_branch(trace: &Trace, branch: Option<&Branch>, seen: &[Seen], reply: &Reply) -> Judgement {
    let st = stations(&trace.hops, branch);
    let was = |s: &Station, d: Direction| {
        let place = s.place();
        seen.iter().any(|x| x.direction == d && x.at_iface == place)
    };
    let rows: Vec<StationSeen> = st
        .iter()
        .map(|s| StationSeen {
            station: s.clone(),
            request: was(s, Direction::Request),
            reply: was(s, Direction::Reply),
        })
        .collect();
    let last = rows.iter().rposition(|r| r.request);
    let lost_before = rows
        .iter()
        .enumerate()
        .find(|(i, r)| last.is_none_or(|l| *i > l) && !r.request)
        .map(|(_, r)| r.station.label());
    let hops: Vec<&Hop> = trace
        .hops
        .iter()
        .chain(branch.iter().flat_map(|b| b.hops.iter()))
        .collect();
    let drop = hops.iter().position(|h| h.verdict == Verdict::Drop);
    // A reset says the path works and the port is closed only when it comes
    // from the destination: the request must have got to the last station.
    // One the request never got that far with came from something on the
    // way (a node's own stack refusing a NodePort nothing DNATed).
    let at_the_end = rows.last().is_none_or(|r| r.request);
    let reached = reply.kind == ReplyKind::Answer
        || (reply.kind == ReplyKind::Reset && drop.is_none() && at_the_end);
    let disagreement = match drop {
        None => (!reached).then(|| delivered_but_unanswered(&rows)),
        Some(d) => disagrees_with_drop(&hops, d, &rows, seen, reply),
    };
    Judgement {
        reached,
        branch: branch.map(|b| b.label.clone()),
        last_seen: last.map(|i| rows[i].station.label()),
        lost_before,
        agrees: disagreement.is_none(),
        disagreement,
        stations: rows,
    }
}

/// The trace delivers, the probe got no answer: where the request was last seen.
fn delivered_but_unanswered(rows: &[StationSeen]) -> String {
    format!(
        "the trace says the path delivers, but {}",
        match rows.iter().rposition(|r| r.request) {
            Some(i) => format!(
                "no answer came back; the request was last seen on {}",
                rows[i].station.label()
            ),
            None => "the request was seen nowhere on the path".into(),
        }
    )
}

/// What the sender should get back when the packet dies at `h`.
fn reply_fits(h: &Hop, k: ReplyKind) -> bool {
    match h.reason {
        Some(DropReason::RejectedByKubeProxy | DropReason::NoEndpoints) => {
            k == ReplyKind::Unreachable
        }
        Some(DropReason::Mtu) => matches!(k, ReplyKind::Unreachable | ReplyKind::LocalError),
        // No DNAT: the node's own stack refuses the port.
        Some(DropReason::NoNodePortRule) => {
            matches!(k, ReplyKind::Reset | ReplyKind::Unreachable)
        }
        _ => !matches!(k, ReplyKind::Answer | ReplyKind::Reset),
    }
}

/// Where the request was seen past the drop at hop `d`: a predicted
/// station after it, or a node the path had not reached yet.
fn seen_beyond(hops: &[&Hop], d: usize, rows: &[StationSeen], seen: &[Seen]) -> Option<String> {
    rows.iter()
        .find(|r| r.request && r.station.hop > d)
        .map(|r| r.station.label())
        .or_else(|| {
            // The trace ends at the drop, so later stations are not
            // predicted; a node the path had not reached yet is later.
            let reached_nodes: Vec<&str> = hops[..=d]
                .iter()
                .filter_map(|h| h.node.as_deref())
                .collect();
            seen.iter()
                .filter(|x| x.direction == Direction::Request)
                .find(|x| !reached_nodes.contains(&x.at_iface.node.as_str()))
                .map(|x| x.at_iface.to_string())
        })
}

/// How the real packet disagrees with a trace that drops at hop `d`, if it does.
fn disagrees_with_drop(
    hops: &[&Hop],
    d: usize,
    rows: &[StationSeen],
    seen: &[Seen],
    reply: &Reply,
) -> Option<String> {
    let h = hops[d];
    let why = reason_name(h);
    if !reply_fits(h, reply.kind) {
        return Some(format!(
            "the trace says {why} at {}, but the sender got {} ({})",
            hop_place(h),
            crate::trace::name_of(&reply.kind),
            reply.detail
        ));
    }
    if h.point == Point::ReturnPath {
        // Dropped on the way back: the request must have arrived.
        return rows
            .iter()
            .rfind(|r| !r.request)
            .map(|r| format!("the request never reached {}", r.station.label()));
    }
    if let Some(r) = seen_beyond(hops, d, rows, seen) {
        return Some(format!(
            "the trace says {why} at {}, but the request was seen later on {r}",
            hop_place(h),
        ));
    }
    // Without its gateway the pod cannot send at all (it only ARPs); a
    // sender whose kernel refused (a path MTU it learned from an earlier
    // packet this drop answered) sent nothing to be seen.
    rows.iter()
        .find(|r| !r.request && r.station.hop < d)
        .filter(|_| h.reason != Some(DropReason::NoGateway))
        .filter(|_| reply.kind != ReplyKind::LocalError)
        .map(|r| {
            format!(
                "the trace says {why} at {}, but the request was never seen on {} before it",
                hop_place(h),
                r.station.label()
            )
        })
}

fn reason_name(h: &Hop) -> String {
    h.reason
        .map(|r| format!("it is dropped ({})", crate::trace::name_of(&r)))
        .unwrap_or_else(|| "it is dropped".into())
}

fn hop_place(h: &Hop) -> String {
    format!(
        "{}{}",
        crate::trace::name_of(&h.point),
        h.node
            .as_deref()
            .map(|n| format!(" on {n}"))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Branch, Hop, Point, Trace};

    fn hop(point: Point, node: &str, device: Option<&str>) -> Hop {
        Hop::new(point, Some(node), device, "test")
    }

    /// busybox on k8s-node-12 to the nginx pod on k8s-master-10, as the
    /// static trace lays it out; `drop_at` turns one hop into a drop.
    fn cross_node(drop_at: Option<(usize, DropReason)>) -> Trace {
        let mut hops = vec![
            hop(Point::Routing, "k8s-node-12", Some("flannel.1")),
            hop(Point::NetfilterFilter, "k8s-node-12", None),
            hop(Point::ToOverlay, "k8s-node-12", Some("flannel.1")),
            hop(Point::Underlay, "k8s-node-12", Some("eth0")),
            hop(Point::FromOverlay, "k8s-master-10", Some("flannel.1")),
            hop(Point::Routing, "k8s-master-10", Some("cni0")),
            hop(Point::ToPod, "k8s-master-10", Some("vethb")),
            hop(Point::ReturnPath, "k8s-master-10", Some("flannel.1")),
        ];
        if let Some((i, reason)) = drop_at {
            hops[i] = hops[i].clone().drop(reason, "test");
            hops.truncate(i + 1);
        }
        Trace {
            source: "a".into(),
            destination: "b".into(),
            protocol: crate::trace::Proto::Tcp,
            port: Some(80),
            hops: vec![hop(Point::ToBridge, "k8s-node-12", Some("vetha"))],
            branches: vec![Branch {
                label: "to pod".into(),
                hops,
                reachable: drop_at.is_none(),
            }],
            reachable: drop_at.is_none(),
            path_mtu: None,
            sent_to: None,
            unread: Vec::new(),
        }
    }

    fn seen(places: &[&str], direction: Direction) -> Vec<Seen> {
        places
            .iter()
            .enumerate()
            .map(|(i, p)| Seen {
                at_iface: {
                    let (node, device) = p.split_once('/').unwrap();
                    Place {
                        node: node.into(),
                        device: device.into(),
                    }
                },
                direction,
                at: i as f64,
                packet: String::new(),
                dst: None,
            })
            .collect()
    }

    fn reply(kind: ReplyKind) -> Reply {
        Reply {
            kind,
            from: None,
            detail: String::new(),
        }
    }

    const FORWARD: [&str; 7] = [
        "k8s-node-12/vetha",
        "k8s-node-12/flannel.1",
        "k8s-node-12/eth0",
        "k8s-master-10/eth0",
        "k8s-master-10/flannel.1",
        "k8s-master-10/cni0",
        "k8s-master-10/vethb",
    ];

    #[test]
    fn stations_follow_the_path_with_the_receiving_eth0() {
        let t = cross_node(None);
        let labels: Vec<String> = stations(&t.hops, t.branches.first())
            .iter()
            .map(Station::label)
            .collect();
        assert_eq!(labels, FORWARD);
    }

    #[test]
    fn a_delivered_probe_agrees_and_one_without_answer_does_not() {
        let t = cross_node(None);
        let mut s = seen(&FORWARD, Direction::Request);
        s.extend(seen(&["k8s-master-10/vethb"], Direction::Reply));
        let j = judge(&t, &s, &reply(ReplyKind::Answer));
        assert!(j.agrees && j.reached, "{j:?}");
        assert_eq!(j.last_seen.as_deref(), Some("k8s-master-10/vethb"));
        let j = judge(&t, &s[..2], &reply(ReplyKind::None));
        assert!(!j.agrees && !j.reached);
        assert_eq!(j.lost_before.as_deref(), Some("k8s-node-12/eth0"));
    }

    #[test]
    fn a_forward_drop_is_seen_before_the_egress_device_and_nowhere_after() {
        // FORWARD drops after routing chose flannel.1: the capture on
        // flannel.1 must not see it.
        let t = cross_node(Some((1, DropReason::ForwardDropped)));
        let j = judge(
            &t,
            &seen(&FORWARD[..1], Direction::Request),
            &reply(ReplyKind::None),
        );
        assert!(j.agrees, "{j:?}");
        let j = judge(
            &t,
            &seen(&FORWARD[..2], Direction::Request),
            &reply(ReplyKind::None),
        );
        assert!(!j.agrees);
        assert!(
            j.disagreement
                .unwrap()
                .contains("seen later on k8s-node-12/flannel.1")
        );
        // Never having left the pod contradicts a drop further on.
        let j = judge(&t, &[], &reply(ReplyKind::None));
        assert!(
            j.disagreement
                .unwrap()
                .contains("never seen on k8s-node-12/vetha")
        );
        // An answer contradicts any drop.
        let j = judge(
            &t,
            &seen(&FORWARD[..1], Direction::Request),
            &reply(ReplyKind::Answer),
        );
        assert!(!j.agrees && j.reached);
    }

    #[test]
    fn a_missing_fdb_entry_loses_it_between_the_vtep_and_the_underlay() {
        let t = cross_node(Some((2, DropReason::NoFdb)));
        let j = judge(
            &t,
            &seen(&FORWARD[..2], Direction::Request),
            &reply(ReplyKind::None),
        );
        assert!(j.agrees, "{j:?}");
        assert_eq!(j.last_seen.as_deref(), Some("k8s-node-12/flannel.1"));
        // Arriving on the remote node contradicts it.
        let j = judge(
            &t,
            &seen(&FORWARD[..4], Direction::Request),
            &reply(ReplyKind::None),
        );
        assert!(
            j.disagreement
                .unwrap()
                .contains("seen later on k8s-master-10/eth0")
        );
    }

    #[test]
    fn a_reset_from_before_the_destination_is_not_the_path_working() {
        let t = cross_node(None);
        // Refused by k8s-master-10's own stack: never on cni0 or the veth.
        let s = seen(&FORWARD[..4], Direction::Request);
        let j = judge(&t, &s, &reply(ReplyKind::Reset));
        assert!(!j.reached && !j.agrees, "{j:?}");
        assert!(
            j.disagreement
                .as_deref()
                .unwrap_or("")
                .contains("last seen on k8s-master-10/eth0"),
            "{j:?}"
        );
        // From the destination itself: reached, the port is closed.
        let s = seen(&FORWARD, Direction::Request);
        let j = judge(&t, &s, &reply(ReplyKind::Reset));
        assert!(j.reached && j.agrees, "{j:?}");
    }

    #[test]
    fn an_mtu_the_sender_already_knows_agrees_without_a_frame() {
        // The second full-size probe: the kernel cached the MTU the first
        // one was refused with, and refuses to send; nothing is captured.
        let t = cross_node(Some((2, DropReason::Mtu)));
        let j = judge(&t, &[], &reply(ReplyKind::LocalError));
        assert!(j.agrees && !j.reached, "{j:?}");
        // Nothing sent and nothing back, with no local refusal: it was
        // never seen where it should have been.
        let j = judge(&t, &[], &reply(ReplyKind::None));
        assert!(!j.agrees, "{j:?}");
    }
}
