//! `trace --probe`: a real packet along the traced path. It is sent from
//! inside the source's network namespace while every interface the static
//! trace predicts (on every node it names) is captured, and netfilter
//! tracing marks it on those nodes; then where it was last seen, which rule
//! it hit last, and whether a reply came back are compared with the trace.
//!
//! The comparison is pure ([`verdict`]); sending ([`send`]) and tracing
//! ([`nftrace`]) are the I/O around it.

pub mod identify;
pub mod nftrace;
pub mod send;
pub mod station;
pub mod text;
pub mod verdict;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::access::target::PodNamespaces;
use crate::agent::api::{ProbeSend, ProbeSpec};
use crate::capture::decode::VXLAN_PORTS;
use crate::capture::dropwatch::owners::{Owners, PlacedDrop};
use crate::dataplane::Netns;
use crate::error::{Error, Result};
use crate::model::flannel::{BRIDGE_DEVICE, VTEP_DEVICE};
use crate::trace::resolve::End;
use crate::trace::{Proto, SentTo, Trace};
use nftrace::RuleHit;
use station::{DropsWatch, NodeProbe, Sent};
use verdict::{Judgement, Reply, Seen};

/// How to probe.
#[derive(Clone)]
pub struct Options {
    /// The namespaces of the nodes this process can enter (`access`'s
    /// answer).
    pub nodes: Vec<(String, Netns)>,
    /// The path's other nodes, where they are reached through their
    /// agents; the rest are reported as not captured.
    pub remote: Option<Arc<dyn Remote>>,
    /// Where the source pod's namespace may be.
    pub pods: PodNamespaces,
    /// How long to wait for a reply.
    pub timeout: Duration,
    /// IP packet size for ICMP and UDP probes (DF set); default: the
    /// source interface's MTU for ICMP, small for UDP.
    pub size: Option<usize>,
    /// The namespaces of the nodes entered from here (theirs and their
    /// pods'), to place the kernel's drops.
    pub owners: Arc<Owners>,
}

/// Nodes watched elsewhere: through their agents (a trait so the probe's
/// order of events can be tested without a cluster).
pub trait Remote: Send + Sync {
    /// Whether `node` is reached, or why not (for the report).
    fn reaches(&self, node: &str) -> std::result::Result<(), String>;
    /// Arms every node of `parts`; once all that do not send are armed,
    /// runs `armed`, then has the part with a `send` (if any) send; then
    /// stops the others. What each node saw, by node.
    fn probe(
        &self,
        parts: Vec<(String, ProbeSpec)>,
        armed: &mut dyn FnMut(),
    ) -> Vec<(String, Result<NodeProbe>)>;
}

/// What the probe found.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// e.g. `tcp 10.2.2.50:41234 -> 10.1.59.153:80 (SYN)`.
    pub sent: String,
    /// The source namespace it was sent from.
    pub from_netns: String,
    /// The node it was sent from through its agent, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_agent: Option<String>,
    pub reply: Reply,
    /// Every frame of the probe the captures saw, in time order.
    pub seen: Vec<Seen>,
    pub judgement: Judgement,
    pub netfilter: Vec<NodeNetfilter>,
    /// Nodes of the path that could not be captured, and why.
    pub not_captured: Vec<String>,
    /// Where the kernel dropped the probe's packets, with its own reason
    /// and the function that freed them, on the nodes watched.
    pub kernel_drops: Vec<ProbeDrop>,
    /// Nodes whose drops were not read, and why.
    pub drops_note: Option<String>,
}

/// The kernel dropped one of the probe's packets.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeDrop {
    pub node: String,
    /// The device (and pod namespace) on the node, when it had one.
    pub place: String,
    /// The request or its reply.
    pub direction: verdict::Direction,
    /// Seconds from the start of the captures.
    pub at: f64,
    pub reason: String,
    pub function: String,
    /// Its headers as `capture` prints them.
    pub packet: String,
}

/// Netfilter tracing on one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeNetfilter {
    pub node: String,
    pub hits: Vec<RuleHit>,
    /// Why it was not traced.
    pub note: Option<String>,
}

impl NodeNetfilter {
    /// What decided the request's (or reply's) fate on this node: per
    /// table, the first rule with a final verdict (the DNAT, the FORWARD
    /// accept or drop), and any drop or reject after it.
    pub fn decisions(&self, reply: bool) -> Vec<&RuleHit> {
        let mut tables: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for h in self.hits.iter().filter(|h| h.reply == reply) {
            let final_verdict =
                matches!(h.verdict.as_str(), "accept" | "drop" | "reject" | "queue");
            if !final_verdict {
                continue;
            }
            if !tables.contains(&h.table.as_str()) || h.verdict != "accept" {
                tables.push(&h.table);
                out.push(h);
            }
        }
        out
    }
}

/// `--size` shapes ICMP echoes and UDP datagrams; a TCP SYN and a DNS
/// query have the size they have, so asking for another is an error rather
/// than a number printed and ignored.
fn check_size(size: Option<usize>, proto: Proto, port: Option<u16>) -> Result<()> {
    let what = match (proto, port) {
        (Proto::Tcp, _) => "a TCP SYN",
        (Proto::Udp, Some(53)) => "a DNS query",
        _ => return Ok(()),
    };
    match size {
        Some(s) => Err(Error::usage(
            format!("--size {s}: this probe is {what}, whose size is not chosen"),
            Some("--size applies to ICMP (--proto icmp) and UDP probes other than DNS".to_string()),
        )),
        None => Ok(()),
    }
}

/// How long a node's watch may last when its client never stops it: the
/// reply's timeout and this much more.
const WATCH_MARGIN_SECONDS: u32 = 60;

/// Sends the probe for `trace` from `src` and reports what happened.
pub fn run(trace: &Trace, src: &End, opts: &Options) -> Result<ProbeReport> {
    let (src_ip, src_v4, sent_to, dst) = endpoints(trace, src)?;
    let proto = sent_to.proto;
    check_size(opts.size, proto, sent_to.port)?;
    if proto != Proto::Icmp {
        send::needs_port(proto, sent_to.port)?;
    }
    // The source pod's node sends through its agent when that is how it is
    // reached; anything else (a lab, this host, an outside address) is
    // sent from here.
    let sender = sender_node(src, opts)?;
    // The sender binds the tag as its source port: sent from here, a port
    // no socket in the source's namespace holds.
    let tag = match &sender {
        None => {
            let source_ns = station::netns_holding(IpAddr::V4(src_v4), &opts.pods)?;
            send::free_tag(&source_ns, proto, tag_seed())?
        }
        Some(_) => send::tag_from(tag_seed(), send::EPHEMERAL_DEFAULT),
    };
    let send = ProbeSend {
        src: src_v4,
        dst,
        port: sent_to.port,
        size: opts.size.map(|s| s as u32),
        http_host: sent_to.http.as_ref().map(|(h, _)| h.clone()),
        http_path: sent_to.http.as_ref().map(|(_, p)| p.clone()),
        timeout_ms: opts.timeout.as_millis().min(u128::from(u32::MAX)) as u32,
    };
    let part = |node: &str, send: Option<ProbeSend>| ProbeSpec {
        proto,
        tag,
        devices: devices_on(trace, node),
        send,
        seconds: opts.timeout.as_secs() as u32 + WATCH_MARGIN_SECONDS,
        stop: None,
    };
    // Each node of the path: entered from here, reached through its
    // agent, or not watched (and said so).
    let mut local: Vec<(String, Netns)> = Vec::new();
    let mut remote: Vec<(String, ProbeSpec)> = Vec::new();
    let mut not_captured: Vec<String> = Vec::new();
    for node in path_nodes(trace) {
        if let Some((_, ns)) = opts.nodes.iter().find(|(n, _)| *n == node) {
            local.push((node, ns.clone()));
            continue;
        }
        match opts.remote.as_ref().map(|r| r.reaches(&node)) {
            Some(Ok(())) => remote.push((node.clone(), part(&node, None))),
            Some(Err(why)) => not_captured.push(format!("{node}: not watched: {why}")),
            None => not_captured.push(format!(
                "{node}: out of reach from here (not this machine, not a lab node); run the probe there to see it"
            )),
        }
    }
    if let Some(node) = &sender {
        match remote.iter_mut().find(|(n, _)| n == node) {
            Some((_, spec)) => spec.send = Some(send.clone()),
            None => remote.push((node.clone(), part(node, Some(send.clone())))),
        }
    }
    // The kernel's drops on the nodes entered from here (the agents watch
    // their own).
    let drop_watch = (!local.is_empty()).then(|| DropsWatch::start(proto, tag));
    let armed: Vec<station::Armed> = local
        .iter()
        .map(|(node, ns)| station::arm(node, ns, &part(node, None)))
        .collect::<Result<_>>()?;
    if armed.iter().any(station::Armed::tracing) {
        std::thread::sleep(station::SUBSCRIBE);
    }
    let mut sent_here: Option<Result<Sent>> = None;
    let mut send_here = || {
        if sender.is_none() {
            sent_here = Some(station::send_from(&opts.pods, proto, tag, &send));
        }
    };
    let answers = match &opts.remote {
        Some(r) if !remote.is_empty() => r.probe(remote, &mut send_here),
        _ => {
            send_here();
            Vec::new()
        }
    };
    let mut seen: Vec<NodeProbe> = armed.into_iter().map(|a| a.finish(proto, tag)).collect();
    for (node, answer) in answers {
        match answer {
            Ok(p) => seen.push(p),
            // Without the sender's answer there is no probe to report.
            Err(e) if sender.as_ref() == Some(&node) => return Err(e),
            Err(e) => not_captured.push(format!("{node}: not watched: {e}")),
        }
    }
    match drop_watch {
        Some(Ok(w)) => {
            for d in w.finish(&opts.owners) {
                if let Some(p) = seen.iter_mut().find(|p| p.node == d.place.node) {
                    p.drops.push(d);
                }
            }
        }
        Some(Err(why)) => {
            for p in seen
                .iter_mut()
                .filter(|p| local.iter().any(|(n, _)| *n == p.node))
            {
                p.drops_note = Some(why.clone());
            }
        }
        None => {}
    }
    // In path order, however the answers came in.
    let order = path_nodes(trace);
    seen.sort_by_key(|p| order.iter().position(|n| *n == p.node));
    let sent = match (&sender, sent_here) {
        (_, Some(r)) => r?,
        (Some(node), None) => seen.iter().find_map(|p| p.sent.clone()).ok_or_else(|| {
            Error::internal(format!("the agent on {node} answered without the send"))
        })?,
        (None, None) => return Err(Error::internal("the probe was never sent")),
    };
    Ok(report(
        trace,
        Sending {
            proto,
            tag,
            src_ip,
            dst,
            port: sent_to.port,
            via_agent: sender,
        },
        sent,
        seen,
        not_captured,
    ))
}

/// The source pod's node, when the probe is sent through its agent: the
/// pod runs on a node this process does not enter and an agent reaches.
/// A source pod on a node that is reached neither way cannot be probed.
fn sender_node(src: &End, opts: &Options) -> Result<Option<String>> {
    let (End::Pod { node, .. }, Some(remote)) = (src, &opts.remote) else {
        return Ok(None);
    };
    if opts.nodes.iter().any(|(n, _)| n == node) {
        return Ok(None);
    }
    match remote.reaches(node) {
        Ok(()) => Ok(Some(node.clone())),
        Err(why) => Err(Error::env(
            format!(
                "the source runs on {node}, which is out of reach from here: {why}; the probe has to be sent there"
            ),
            Some(format!(
                "install the knetdoctor agent (`knetdoctor agent manifest | kubectl apply -f -`) or run the probe on {node} itself"
            )),
        )),
    }
}

/// What was sent, to name it and pick it out of the captures.
struct Sending {
    proto: Proto,
    tag: u16,
    src_ip: IpAddr,
    dst: Ipv4Addr,
    port: Option<u16>,
    via_agent: Option<String>,
}

/// The report on what every node saw (pure but for decoding): frames
/// placed by node and device and timed from the earliest capture start,
/// picked out, and judged against the trace.
fn report(
    trace: &Trace,
    s: Sending,
    sent: Sent,
    seen: Vec<NodeProbe>,
    mut not_captured: Vec<String>,
) -> ProbeReport {
    let zero = seen.iter().map(|p| p.started_nanos).min().unwrap_or(0);
    let decoded: Vec<(verdict::Place, f64, crate::capture::Frame)> = seen
        .iter()
        .flat_map(|p| {
            p.frames.iter().map(|f| {
                (
                    verdict::Place {
                        node: p.node.clone(),
                        device: f.device.clone(),
                    },
                    f.ts_nanos.saturating_sub(zero) as f64 / 1e9,
                    crate::capture::decode(&f.data, &VXLAN_PORTS),
                )
            })
        })
        .collect();
    let frames = identify::identify(&decoded, s.proto, s.tag, s.src_ip);
    let judgement = verdict::judge(trace, &frames, &sent.reply);
    not_captured.extend(seen.iter().flat_map(|p| p.not_captured.iter().cloned()));
    let kernel_drops = probe_drops(&seen, &decoded, &s, zero);
    let notes: Vec<String> = seen
        .iter()
        .filter_map(|p| Some(format!("{}: {}", p.node, p.drops_note.as_ref()?)))
        .collect();
    ProbeReport {
        sent: format!(
            "{} {}{} -> {}{}{}",
            s.proto,
            s.src_ip,
            if s.proto == Proto::Icmp {
                format!(" echo id {}", s.tag)
            } else {
                format!(":{}", s.tag)
            },
            s.dst,
            s.port.map(|p| format!(":{p}")).unwrap_or_default(),
            sent.size
                .map(|z| format!(" ({z} bytes, DF)"))
                .unwrap_or_default()
        ),
        from_netns: sent.from_netns,
        via_agent: s.via_agent,
        reply: sent.reply,
        seen: frames,
        judgement,
        netfilter: seen.into_iter().map(|p| p.netfilter).collect(),
        not_captured,
        kernel_drops,
        drops_note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// The nodes' drops that were the probe's request or reply, in time order.
fn probe_drops(
    seen: &[NodeProbe],
    captured: &[(verdict::Place, f64, crate::capture::Frame)],
    s: &Sending,
    zero: u64,
) -> Vec<ProbeDrop> {
    let drops: Vec<(&str, &PlacedDrop, crate::capture::Frame)> = seen
        .iter()
        .flat_map(|p| {
            p.drops
                .iter()
                .map(|d| (p.node.as_str(), d, d.drop.frame(&VXLAN_PORTS)))
        })
        .collect();
    let frames: Vec<&crate::capture::Frame> = drops.iter().map(|(_, _, f)| f).collect();
    let directions = identify::directions(captured, &frames, s.proto, s.tag, s.src_ip);
    let mut out: Vec<ProbeDrop> = drops
        .iter()
        .zip(directions)
        .filter_map(|((node, d, f), direction)| {
            Some(ProbeDrop {
                node: node.to_string(),
                place: d.place.within(),
                direction: direction?,
                at: d.drop.ts_nanos.saturating_sub(zero) as f64 / 1e9,
                reason: d.drop.reason.clone(),
                function: d.drop.function.clone(),
                packet: f.line(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    out
}

/// Where the probe goes from and to: the source address (IPv4), what the
/// trace says the packet is sent to, and its IPv4 destination.
fn endpoints(trace: &Trace, src: &End) -> Result<(IpAddr, Ipv4Addr, SentTo, Ipv4Addr)> {
    let src_ip = match src {
        End::Pod { ip, .. } | End::Outside { ip } => *ip,
        other => {
            return Err(Error::usage(
                format!("cannot probe from {}", other.label()),
                Some("probe from a pod or an outside address".into()),
            ));
        }
    };
    let IpAddr::V4(src_v4) = src_ip else {
        return Err(Error::usage("probes are IPv4 only", None));
    };
    let sent_to = trace.sent_to.clone().ok_or_else(|| {
        Error::usage(
            "the trace stops before the packet leaves the source, so there is nothing to probe",
            Some("fix what the static trace reports first".into()),
        )
    })?;
    let IpAddr::V4(dst) = sent_to.ip else {
        return Err(Error::usage("probes are IPv4 only", None));
    };
    Ok((src_ip, src_v4, sent_to, dst))
}

/// A seed for the probe's tag that differs between probes run side by side.
fn tag_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().wrapping_mul(2_654_435_761)
}

/// The nodes the path names, in order.
fn path_nodes(trace: &Trace) -> Vec<String> {
    let mut nodes: Vec<String> = Vec::new();
    for h in trace
        .hops
        .iter()
        .chain(trace.branches.iter().flat_map(|b| b.hops.iter()))
    {
        if let Some(n) = &h.node
            && !nodes.contains(n)
        {
            nodes.push(n.clone());
        }
    }
    nodes
}

/// cni0, flannel.1, eth0 and every device the trace names on `node`.
fn devices_on(trace: &Trace, node: &str) -> Vec<String> {
    let mut devices: Vec<String> = vec![BRIDGE_DEVICE.into(), VTEP_DEVICE.into(), "eth0".into()];
    for h in trace
        .hops
        .iter()
        .chain(trace.branches.iter().flat_map(|b| b.hops.iter()))
    {
        if h.node.as_deref() == Some(node)
            && let Some(d) = &h.device
            && !devices.contains(d)
        {
            devices.push(d.clone());
        }
    }
    devices
}

#[cfg(test)]
mod tests {
    use crate::trace::Proto;

    #[test]
    fn size_is_for_icmp_and_udp_probes_only() {
        assert!(super::check_size(Some(1400), Proto::Icmp, None).is_ok());
        assert!(super::check_size(Some(1400), Proto::Udp, Some(5000)).is_ok());
        assert!(super::check_size(None, Proto::Tcp, Some(80)).is_ok());
        let e = super::check_size(Some(1400), Proto::Tcp, Some(80))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a TCP SYN"), "{e}");
        let e = super::check_size(Some(100), Proto::Udp, Some(53))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a DNS query"), "{e}");
    }

    use super::station::{NodeProbe, Sent};
    use super::verdict::{Reply, ReplyKind};
    use super::{NodeNetfilter, Options, Remote};
    use crate::access::target::PodNamespaces;
    use crate::agent::api::ProbeSpec;
    use crate::error::Result;
    use crate::trace::resolve::End;
    use crate::trace::{Hop, Point, SentTo, Trace};
    use std::sync::{Arc, Mutex};

    /// Agents on `reached` only; records each node's part and when the
    /// probe was armed; a watch on `failing` answers with an error.
    struct Agents {
        reached: Vec<&'static str>,
        failing: Option<&'static str>,
        parts: Mutex<Vec<String>>,
    }

    impl Remote for Agents {
        fn reaches(&self, node: &str) -> std::result::Result<(), String> {
            if self.reached.contains(&node) {
                Ok(())
            } else {
                Err("no knetdoctor agent runs there".into())
            }
        }
        fn probe(
            &self,
            parts: Vec<(String, ProbeSpec)>,
            armed: &mut dyn FnMut(),
        ) -> Vec<(String, Result<NodeProbe>)> {
            let mut log = self.parts.lock().unwrap();
            for (n, spec) in &parts {
                log.push(format!("{n} sends={}", spec.send.is_some()));
            }
            armed();
            log.push("armed".into());
            parts
                .into_iter()
                .map(|(node, spec)| {
                    if self.failing == Some(node.as_str()) {
                        let e = crate::error::Error::env("did not answer within 30 s", None);
                        return (node, Err(e));
                    }
                    let seen = NodeProbe {
                        node: node.clone(),
                        started_nanos: 0,
                        frames: Vec::new(),
                        netfilter: NodeNetfilter {
                            node: node.clone(),
                            hits: Vec::new(),
                            note: None,
                        },
                        not_captured: Vec::new(),
                        sent: spec.send.map(|_| Sent {
                            reply: Reply {
                                kind: ReplyKind::Answer,
                                from: None,
                                detail: "echo reply".into(),
                            },
                            from_netns: "cni-1234".into(),
                            size: Some(1450),
                        }),
                        drops: Vec::new(),
                        drops_note: None,
                    };
                    (node, Ok(seen))
                })
                .collect()
        }
    }

    /// A pod on node-a to a pod on node-b.
    fn across() -> (Trace, End) {
        let hop = |n: &str, d: &str| Hop::new(Point::Routing, Some(n), Some(d), "test");
        let trace = Trace {
            source: "a".into(),
            destination: "b".into(),
            protocol: Proto::Icmp,
            port: None,
            hops: vec![hop("node-a", "flannel.1"), hop("node-b", "cni0")],
            branches: Vec::new(),
            reachable: true,
            path_mtu: None,
            sent_to: Some(SentTo {
                proto: Proto::Icmp,
                ip: "10.2.1.5".parse().unwrap(),
                port: None,
                http: None,
            }),
            unread: Vec::new(),
        };
        let src = End::Pod {
            namespace: "ns".into(),
            name: "a".into(),
            ip: "10.2.0.5".parse().unwrap(),
            node: "node-a".into(),
        };
        (trace, src)
    }

    fn opts(agents: &Arc<Agents>) -> Options {
        Options {
            nodes: Vec::new(),
            remote: Some(agents.clone() as Arc<dyn Remote>),
            pods: PodNamespaces::Anywhere,
            timeout: std::time::Duration::from_secs(1),
            size: None,
            owners: Arc::default(),
        }
    }

    #[test]
    fn through_agents_the_source_node_sends_and_every_path_node_watches() {
        let (trace, src) = across();
        let agents = Arc::new(Agents {
            reached: vec!["node-a", "node-b"],
            failing: None,
            parts: Mutex::default(),
        });
        let p = super::run(&trace, &src, &opts(&agents)).unwrap();
        assert_eq!(p.via_agent.as_deref(), Some("node-a"));
        assert_eq!(p.from_netns, "cni-1234");
        assert_eq!(p.reply.kind, ReplyKind::Answer);
        assert!(p.not_captured.is_empty(), "{:?}", p.not_captured);
        assert_eq!(
            *agents.parts.lock().unwrap(),
            ["node-a sends=true", "node-b sends=false", "armed"]
        );
        let nodes: Vec<&str> = p.netfilter.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(nodes, ["node-a", "node-b"], "in path order");
    }

    #[test]
    fn a_node_without_agent_is_named_and_a_source_there_is_refused() {
        let (trace, src) = across();
        let agents = Arc::new(Agents {
            reached: vec!["node-a"],
            failing: None,
            parts: Mutex::default(),
        });
        let p = super::run(&trace, &src, &opts(&agents)).unwrap();
        assert_eq!(
            p.not_captured,
            ["node-b: not watched: no knetdoctor agent runs there"]
        );
        assert_eq!(
            *agents.parts.lock().unwrap(),
            ["node-a sends=true", "armed"]
        );
        let agents = Arc::new(Agents {
            reached: vec!["node-b"],
            failing: None,
            parts: Mutex::default(),
        });
        let e = super::run(&trace, &src, &opts(&agents)).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains("the source runs on node-a"), "{e}");
        assert!(agents.parts.lock().unwrap().is_empty(), "nothing is armed");
    }

    #[test]
    fn a_watch_that_fails_is_reported_and_a_sender_that_fails_is_the_error() {
        let (trace, src) = across();
        let agents = Arc::new(Agents {
            reached: vec!["node-a", "node-b"],
            failing: Some("node-b"),
            parts: Mutex::default(),
        });
        let p = super::run(&trace, &src, &opts(&agents)).unwrap();
        assert_eq!(
            p.not_captured,
            ["node-b: not watched: did not answer within 30 s"]
        );
        let agents = Arc::new(Agents {
            reached: vec!["node-a", "node-b"],
            failing: Some("node-a"),
            parts: Mutex::default(),
        });
        let e = super::run(&trace, &src, &opts(&agents)).unwrap_err();
        assert!(e.to_string().contains("did not answer"), "{e}");
    }
}
