//! The agent's API: custom resources under `knetdoctor.dev/v1alpha1`, all
//! in the agent's namespace. A request names its node in `spec.node` and in
//! the label [`NODE_LABEL`], so each agent watches only its own node's
//! requests; the answer is the request's status (as Antrea's Traceflow and
//! kubernetes-nmstate answer). Reading and repairing are separate kinds so
//! that RBAC can grant one without the other.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What every kind here is to kube-rs: a namespaced resource, sent and
/// received as JSON, shared across tasks.
pub trait Kind:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Kind for K where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// The API group of every kind here.
pub const GROUP: &str = "knetdoctor.dev";
/// Its one version.
pub const VERSION: &str = "v1alpha1";
/// The label naming the node a request is for: the agent's watch selector.
pub const NODE_LABEL: &str = "knetdoctor.dev/node";
/// The label naming the request a payload part belongs to.
pub const REQUEST_LABEL: &str = "knetdoctor.dev/request";
/// The namespace the manifest installs the agent in, and where clients
/// look for it unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "knetdoctor";

/// An agent's presence on its node: created when it starts, renewed every
/// `heartbeat_seconds`, deleted when it stops. A client takes a node whose
/// `NodeAgent` is missing or not renewed for three heartbeats as having
/// no agent.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "knetdoctor.dev",
    version = "v1alpha1",
    kind = "NodeAgent",
    namespaced,
    status = "NodeAgentStatus",
    shortname = "kdagent"
)]
#[serde(rename_all = "camelCase")]
pub struct NodeAgentSpec {
    /// The node this agent runs on.
    pub node: String,
    /// The pod it runs in (empty when run by hand).
    pub pod: String,
    /// The knetdoctor version of the agent.
    pub version: String,
    /// How often the agent renews `status.renewed`.
    pub heartbeat_seconds: u32,
}

/// When the agent last said it was alive.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeAgentStatus {
    /// Seconds since the epoch, the agent's clock (nodes keep their clocks
    /// in step, as node Leases assume).
    pub renewed: Option<u64>,
}

/// What a read asks for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReadKind {
    /// The node's dataplane (`NodeState`, JSON).
    State,
    /// A bounded capture on the node's interfaces
    /// ([`crate::capture::remote::RemoteCapture`], JSON with pcapng).
    Capture,
    /// One node's part in `trace --probe`: captures and netfilter tracing
    /// while the probe passes, and on the source's node the send
    /// ([`crate::trace::probe::station::NodeProbe`], JSON).
    Probe,
    /// What the node's kernel drops for a while
    /// ([`crate::capture::dropwatch::remote::RemoteDrops`], JSON).
    Drops,
}

/// A bounded watch of the kernel's drops.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DropsSpec {
    pub seconds: u32,
    /// A tcpdump filter over the dropped packets' headers.
    pub filter: Option<String>,
    /// Only packets of this EtherType.
    pub protocol: Option<u16>,
}

/// A bounded capture: at most `count` frames, for at most `seconds`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaptureSpec {
    /// The node's interfaces to capture on at once.
    pub interfaces: Vec<String>,
    pub count: u32,
    pub seconds: u32,
    /// A BPF filter, as tcpdump takes it.
    pub filter: Option<String>,
    /// Bytes kept of each frame.
    pub snaplen: i32,
}

/// A node's part in a probe. Every node of the path watches (captures on
/// `devices`, traces netfilter) and says so by the phase `Armed`; once all
/// are armed the client asks the source's node, whose spec has `send`, to
/// send; when that is answered the client sets `stop` on the others.
/// `seconds` bounds a watch whose client never stops it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec {
    #[schemars(with = "String")]
    pub proto: crate::trace::Proto,
    /// The probe's source port or echo id, which picks it out.
    pub tag: u16,
    /// The node's devices the path crosses.
    pub devices: Vec<String>,
    pub send: Option<ProbeSend>,
    pub seconds: u32,
    /// Set by the client: the probe has been answered, stop watching.
    pub stop: Option<bool>,
}

/// What the source's node sends, from the namespace holding `src`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSend {
    pub src: std::net::Ipv4Addr,
    pub dst: std::net::Ipv4Addr,
    pub port: Option<u16>,
    /// IP size with DF set (ICMP and UDP); none: the source's MTU for
    /// ICMP, a small datagram for UDP.
    pub size: Option<u32>,
    /// For a URL: the Host header and path of the GET.
    pub http_host: Option<String>,
    pub http_path: Option<String>,
    /// How long the sender waits for a reply.
    pub timeout_ms: u32,
}

/// A request to read one node.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "knetdoctor.dev",
    version = "v1alpha1",
    kind = "NodeRead",
    namespaced,
    status = "Answer",
    shortname = "kdread"
)]
#[serde(rename_all = "camelCase")]
pub struct NodeReadSpec {
    pub node: String,
    pub read: ReadKind,
    /// For a capture: what to capture.
    pub capture: Option<CaptureSpec>,
    /// For a probe: the node's part in it.
    pub probe: Option<ProbeSpec>,
    /// For a watch of the kernel's drops: how long, and which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops: Option<DropsSpec>,
}

/// What a repair request asks for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RepairKind {
    /// Apply the plan in `plan`, if the node still matches `digest`.
    Apply,
    /// Put back what journal `journal` changed.
    Undo,
    /// List the node's journals.
    History,
}

/// A request to change one node (or list its repairs).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "knetdoctor.dev",
    version = "v1alpha1",
    kind = "NodeRepair",
    namespaced,
    status = "Answer",
    shortname = "kdrepair"
)]
#[serde(rename_all = "camelCase")]
pub struct NodeRepairSpec {
    pub node: String,
    pub action: RepairKind,
    /// Apply: the steps and what the client saw they replace
    /// ([`super::repair::PlanSent`], JSON).
    pub plan: Option<Payload>,
    /// Apply: the digest of the node, the steps and what they replace,
    /// as the client saw them. The agent recomputes it from the node as it
    /// is now and refuses the plan when they differ.
    pub digest: Option<String>,
    /// Undo: the journal's id.
    pub journal: Option<String>,
}

/// Where a request stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// The agent took it and is at work.
    Running,
    /// A probe's watch is in place on the node: the sender may send.
    Armed,
    /// The answer is in `payload`.
    Done,
    /// It failed or was refused: see `error`.
    Failed,
}

/// The agent's answer to a request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub phase: Option<Phase>,
    pub payload: Option<Payload>,
    pub error: Option<AnswerError>,
}

/// Why a request failed, kept as typed as the error it came from so the
/// client exits with the same code and hint as a local run would.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnswerError {
    /// The exit code of the error (2 usage, 3 environment, 4 internal).
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

/// A compressed body: inline when small, else in `parts` [`NodePayload`]
/// objects named `<request>-<i>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// How the bytes are compressed (`gzip`).
    pub encoding: String,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// SHA-256 of the compressed bytes, hex.
    pub sha256: String,
    /// The compressed bytes, base64, when they fit in one object.
    pub inline: Option<String>,
    /// Otherwise the number of parts.
    pub parts: u32,
}

/// One part of a payload too large for one object.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "knetdoctor.dev",
    version = "v1alpha1",
    kind = "NodePayload",
    namespaced,
    shortname = "kdpayload"
)]
#[serde(rename_all = "camelCase")]
pub struct NodePayloadSpec {
    /// The request it belongs to.
    pub request: String,
    pub index: u32,
    /// The part's compressed bytes, base64.
    pub data: String,
    /// A published state's part 0 carries its descriptor (a request's
    /// payload is described in the request's status instead).
    pub payload: Option<Payload>,
}

/// The label on the parts of a state an agent publishes (value: the node).
pub const PUBLISHED_LABEL: &str = "knetdoctor.dev/published-state";

/// The name of part `i` of the state published for `node`.
pub fn published_name(node: &str, i: u32) -> String {
    format!("state-{node}-{i}")
}
