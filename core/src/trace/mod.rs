//! `knetdoctor trace SRC DST`: the path a packet takes, hop by hop, as a
//! pure simulation (the real probe is the application's `trace::probe`) over the cluster objects and the nodes' real state —
//! the route, neigh, FDB entry, netfilter rule or IPVS service that carries
//! or drops it at each hop — with the `check` finding that explains a drop.
//!
//! Observation points and drop reasons come from fixed vocabularies so
//! people and scripts can rely on them.

pub mod resolve;
pub mod sim;
pub mod text;

use serde::Serialize;

use crate::check::Finding;

/// Where along the path a hop is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Point {
    /// Name resolution, as the source pod's resolver does it.
    Dns,
    /// Leaving the source pod's eth0.
    FromPod,
    /// The host end of the pod's veth, on cni0.
    ToBridge,
    /// Arriving on a node's eth0 from outside.
    FromUnderlay,
    /// nat PREROUTING/OUTPUT: kube-proxy (and portmap) DNAT.
    NetfilterNat,
    /// The Ingress controller choosing a backend.
    Ingress,
    /// A node's routing decision.
    Routing,
    /// filter FORWARD.
    NetfilterFilter,
    /// Encapsulation on flannel.1: neigh, then FDB.
    ToOverlay,
    /// UDP 8472 over eth0 between nodes.
    Underlay,
    /// Decapsulation on the remote flannel.1.
    FromOverlay,
    /// cni0 to the destination pod's veth.
    ToPod,
    /// Delivered to a process on the node itself.
    ToHost,
    /// The way back, with the SNAT/masquerade that applies.
    ReturnPath,
}

/// The verdict at a hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Drop,
}

/// Why a packet is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    NoRoute,
    NoNeigh,
    NoFdb,
    VtepDown,
    VtepUnreachable,
    ForwardDropped,
    IpForwardOff,
    NoEndpoints,
    RejectedByKubeProxy,
    NoServiceRule,
    NoNodePortRule,
    Mtu,
    NoGateway,
    VethDown,
    NoSuchPod,
    IngressNoBackend,
    NoSuchHost,
    DnsUnavailable,
    NoMasquerade,
}

/// One hop.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    pub point: Point,
    pub node: Option<String>,
    pub device: Option<String>,
    /// What decided: the route, neigh entry, FDB entry, chain and rule, IPVS service.
    pub decided_by: String,
    pub verdict: Verdict,
    pub reason: Option<DropReason>,
    pub evidence: String,
    /// The finding of `check` that explains a drop, with its repair.
    pub finding: Option<Box<Finding>>,
    /// The MTU of the device this hop crosses, where it bounds the path
    /// (the destination's veth, flannel.1): the trace's path MTU is the
    /// smallest. Typed here, never read back from the evidence text.
    #[serde(skip)]
    pub mtu: Option<u32>,
}

/// One way through (a Service has one per endpoint).
#[derive(Debug, Clone, Serialize)]
pub struct Branch {
    /// e.g. `endpoint 10.2.0.42:80 (p=0.333)`.
    pub label: String,
    pub hops: Vec<Hop>,
    pub reachable: bool,
}

/// The protocol a trace follows (and a probe sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    /// Every protocol, as `--proto` lists them.
    pub const ALL: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Icmp];

    /// The name kube-proxy's rules, IPVS and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// A whole trace.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub source: String,
    pub destination: String,
    pub protocol: Proto,
    pub port: Option<u16>,
    /// Hops before the path forks (DNS, leaving the pod, DNAT).
    pub hops: Vec<Hop>,
    pub branches: Vec<Branch>,
    /// True when every branch delivers (and the common hops do).
    pub reachable: bool,
    /// The smallest MTU along any branch.
    pub path_mtu: Option<u32>,
    /// Where the source actually sends (after DNS, with the Service's port
    /// filled in): what `--probe` sends to.
    pub sent_to: Option<SentTo>,
    /// The lists the API server refused to the reader: the trace stands on
    /// what was read (and on the nodes' own state), said with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<crate::model::reading::Unreadable>,
}

/// The protocol, address, port and (for a URL) HTTP host and path the source sends to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentTo {
    /// The trace's, or `udp` for the DNS query when name resolution is
    /// where the trace stops.
    pub proto: Proto,
    pub ip: std::net::IpAddr,
    pub port: Option<u16>,
    pub http: Option<(String, String)>,
}

/// The name a vocabulary value (point, reason, reply kind) has in JSON,
/// so text and JSON always say the same word.
pub fn name_of<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Hop {
    /// A hop that passes, at `point` on `node` (and `device`), with what
    /// the simulation saw there.
    pub fn new(
        point: Point,
        node: Option<&str>,
        device: Option<&str>,
        decided_by: impl Into<String>,
    ) -> Self {
        Hop {
            point,
            node: node.map(str::to_string),
            device: device.map(str::to_string),
            decided_by: decided_by.into(),
            verdict: Verdict::Ok,
            reason: None,
            evidence: String::new(),
            finding: None,
            mtu: None,
        }
    }

    fn evidence(mut self, e: impl Into<String>) -> Self {
        self.evidence = e.into();
        self
    }

    /// The hop crosses a device of MTU `mtu`.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// The hop drops the packet, for `reason`, as `evidence` shows.
    pub fn drop(mut self, reason: DropReason, evidence: impl Into<String>) -> Self {
        self.verdict = Verdict::Drop;
        self.reason = Some(reason);
        self.evidence = evidence.into();
        self
    }

    fn warn(mut self, evidence: impl Into<String>) -> Self {
        self.verdict = Verdict::Warn;
        self.evidence = evidence.into();
        self
    }
}
