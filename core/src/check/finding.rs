//! What a check reports: a finding with a stable ID, the objects involved,
//! the evidence, and where one exists the typed action that fixes it.

use std::net::IpAddr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use super::id::{FindingId, Mark, Owner};
use crate::dataplane::state::UnreadSource;
use crate::dataplane::{Mac, RouteDst};

/// How bad it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Traffic is dropped or misrouted.
    Error,
    /// Something works by accident or will break under conditions.
    Warning,
    /// Worth knowing; nothing is broken.
    Info,
}

/// A Kubernetes object a finding or a linked view is about (`Node`, `Pod`,
/// `Service`, `Ingress`, `ConfigMap`, ...), by the API's own kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, name: impl Into<String>) -> Self {
        // Dataplane entries are typed subjects, not objects.
        debug_assert!(
            kind.starts_with(|c: char| c.is_ascii_uppercase()) || kind == "dns",
            "{kind} is not an API kind"
        );
        ObjectRef {
            kind: kind.into(),
            namespace: None,
            name: name.into(),
        }
    }
    pub fn namespaced(kind: &str, namespace: &str, name: impl Into<String>) -> Self {
        ObjectRef {
            kind: kind.into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }
    /// A Node by name.
    pub fn node(name: impl Into<String>) -> Self {
        ObjectRef::new("Node", name)
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// What a finding is about, typed: the views find the entry a finding names
/// by equality on these, never by reading its prose.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A Kubernetes object.
    Object(ObjectRef),
    /// A network device (flannel.1, cni0, a pod's host veth, kube-ipvs0).
    Device(String),
    /// A route by destination and table (254 main).
    Route { dst: RouteDst, table: u32 },
    /// A neighbour entry.
    Neigh { ip: IpAddr, dev: String },
    /// A bridge FDB entry (flannel.1's VTEP entries).
    Fdb { mac: Mac, dev: String },
    /// An iptables chain.
    Chain { table: String, chain: String },
    /// An IPVS virtual server, `PROTO ADDR:PORT`.
    VirtualServer { proto: String, addr: String },
    /// One real server of a virtual server.
    RealServer {
        proto: String,
        vip: String,
        addr: String,
    },
    /// A sysctl by its dotted key.
    Sysctl(String),
    /// An IPv4 policy rule by priority.
    Rule(u32),
    /// A part of the node's state that could not be read.
    NodeState(UnreadSource),
    /// The iptables backends (`nft+legacy`) rules are split across.
    IptablesBackends(String),
    /// A list the API server refused: a kind, in one namespace or all.
    ApiList {
        kind: crate::model::reading::ApiKind,
        namespace: Option<String>,
        /// The namespace read instead of all of them.
        read_instead: Option<String>,
    },
}

impl Subject {
    /// An iptables chain.
    pub fn chain(table: &str, chain: impl Into<String>) -> Subject {
        Subject::Chain {
            table: table.into(),
            chain: chain.into(),
        }
    }
    /// A device.
    pub fn device(name: impl Into<String>) -> Subject {
        Subject::Device(name.into())
    }
    /// A Node object.
    pub fn node(name: impl Into<String>) -> Subject {
        Subject::Object(ObjectRef::node(name))
    }

    /// The kind as the JSON output and the text name it.
    pub fn kind(&self) -> &str {
        match self {
            Subject::Object(o) => &o.kind,
            Subject::Device(_) => "device",
            Subject::Route { .. } => "route",
            Subject::Neigh { .. } => "neigh",
            Subject::Fdb { .. } => "fdb",
            Subject::Chain { .. } => "chain",
            Subject::VirtualServer { .. } => "virtual-server",
            Subject::RealServer { .. } => "real-server",
            Subject::Sysctl(_) => "sysctl",
            Subject::Rule(_) => "rule",
            Subject::NodeState(_) => "node-state",
            Subject::IptablesBackends(_) => "iptables",
            Subject::ApiList { .. } => "api-list",
        }
    }

    /// The name as the JSON output and the text print it.
    pub fn name(&self) -> String {
        match self {
            Subject::Object(o) => o.name.clone(),
            Subject::Device(d) | Subject::Sysctl(d) | Subject::IptablesBackends(d) => d.clone(),
            Subject::Route { dst, .. } => dst.to_string(),
            Subject::Neigh { ip, dev } => format!("{ip} dev {dev}"),
            Subject::Fdb { mac, dev } => format!("{mac} dev {dev}"),
            Subject::Chain { table, chain } => format!("{table}/{chain}"),
            Subject::VirtualServer { proto, addr } => format!("{proto}/{addr}"),
            Subject::RealServer { proto, vip, addr } => format!("{proto}/{vip} -> {addr}"),
            Subject::Rule(p) => p.to_string(),
            Subject::NodeState(s) => s.to_string(),
            Subject::ApiList {
                kind,
                namespace,
                read_instead,
            } => crate::model::reading::scope(*kind, namespace.as_deref(), read_instead.as_deref()),
        }
    }

    /// The Kubernetes object, if it is one.
    pub fn object(&self) -> Option<&ObjectRef> {
        match self {
            Subject::Object(o) => Some(o),
            _ => None,
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Object(o) => o.fmt(f),
            s => write!(f, "{} {}", s.kind(), s.name()),
        }
    }
}

impl From<ObjectRef> for Subject {
    fn from(o: ObjectRef) -> Subject {
        Subject::Object(o)
    }
}

/// One thing a finding names, and how it stands when that differs from
/// what the finding's ID says (a mismatch names its missing and its stale
/// parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub subject: Subject,
    pub mark: Option<Mark>,
}

impl Serialize for Named {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let ns = self.subject.object().and_then(|o| o.namespace.as_deref());
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("kind", self.subject.kind())?;
        m.serialize_entry("namespace", &ns)?;
        m.serialize_entry("name", &self.subject.name())?;
        if let Some(mark) = self.mark {
            m.serialize_entry("mark", &mark)?;
        }
        m.end()
    }
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mark {
            Some(m) => write!(f, "{} ({})", self.subject, m.label()),
            None => self.subject.fmt(f),
        }
    }
}

/// A change to the node's dataplane that fixes a finding, or what a person
/// must do when the fix is not the node's to make.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum RepairAction {
    NeighReplace {
        dev: String,
        ip: IpAddr,
        mac: Mac,
    },
    FdbReplace {
        dev: String,
        mac: Mac,
        dst: IpAddr,
    },
    FdbDelete {
        dev: String,
        mac: Mac,
        dst: Option<IpAddr>,
    },
    RouteReplace {
        dst: Ipv4Net,
        gateway: IpAddr,
        dev: String,
        onlink: bool,
    },
    /// `ip route del DST table TABLE`: a route that takes traffic for a pod
    /// CIDR away from flannel.
    RouteDelete {
        dst: RouteDst,
        /// The routing table (254 main).
        table: u32,
    },
    /// Delete the VXLAN device and make it anew (what its attributes
    /// cannot be changed in place), as flanneld does; its neigh, FDB and
    /// route entries go with it and are planned after it.
    VtepRecreate {
        spec: crate::dataplane::state::VxlanSpec,
    },
    LinkUp {
        dev: String,
    },
    LinkMtu {
        dev: String,
        mtu: u32,
    },
    AddrReplace {
        dev: String,
        remove: Vec<Ipv4Net>,
        add: Ipv4Net,
    },
    Sysctl {
        key: String,
        value: String,
    },
    /// `ip rule add pref PRIORITY lookup TABLE` (IPv4).
    RuleAdd {
        priority: u32,
        table: u32,
    },
    /// Restore these chains (and their jumps) as their owner writes them.
    IptablesChains {
        table: String,
        chains: Vec<String>,
        owner: String,
    },
    /// Write an nftables table whole, as its owner writes it (one
    /// `nft -j -f` transaction).
    NftablesTable {
        family: String,
        table: String,
        owner: String,
    },
    IptablesPolicy {
        table: String,
        chain: String,
        policy: String,
    },
    Ethtool {
        dev: String,
        feature: String,
        on: bool,
    },
    /// Not a dataplane change: what a person must change, and where.
    Manual {
        what: String,
    },
}

/// One broken link between what the API says and what a node does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable; scripts may rely on its text.
    pub id: FindingId,
    pub severity: Severity,
    /// The node whose dataplane shows it; `None` for cluster-level findings.
    pub node: Option<String>,
    /// One line saying what is wrong.
    pub summary: String,
    pub objects: Vec<Named>,
    pub expected: Option<String>,
    pub actual: Option<String>,
    pub repair: Vec<RepairAction>,
}

impl Finding {
    /// Whether it names an object of namespace `ns` (`kubectl -n`'s view
    /// of the findings: a node's routes belong to no namespace).
    pub fn in_namespace(&self, ns: &str) -> bool {
        // What could not be read bears on every answer, whatever its scope.
        self.id == FindingId::ApiUnreadable
            || self
                .objects
                .iter()
                .any(|o| o.subject.object().and_then(|o| o.namespace.as_deref()) == Some(ns))
    }

    /// A finding with no evidence or repair yet.
    pub fn new(
        id: FindingId,
        severity: Severity,
        node: Option<&str>,
        summary: impl Into<String>,
    ) -> Self {
        Finding {
            id,
            severity,
            node: node.map(str::to_string),
            summary: summary.into(),
            objects: Vec::new(),
            expected: None,
            actual: None,
            repair: Vec::new(),
        }
    }
    /// Names what it is about (as its ID marks it).
    pub fn object(mut self, o: impl Into<Subject>) -> Self {
        self.objects.push(Named {
            subject: o.into(),
            mark: None,
        });
        self
    }
    /// Names a part of what it is about that stands otherwise than its ID
    /// says (a stale endpoint chain of a mismatch).
    pub fn part(mut self, o: Subject, mark: Mark) -> Self {
        self.objects.push(Named {
            subject: o,
            mark: Some(mark),
        });
        self
    }
    pub fn evidence(mut self, expected: impl Into<String>, actual: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self.actual = Some(actual.into());
        self
    }
    pub fn repair(mut self, a: RepairAction) -> Self {
        self.repair.push(a);
        self
    }

    /// Whether it names `s`.
    pub fn names(&self, s: &Subject) -> bool {
        self.objects.iter().any(|o| o.subject == *s)
    }

    /// How it marks `s`, if it names it.
    pub fn mark_of(&self, s: &Subject) -> Option<Mark> {
        self.objects
            .iter()
            .find(|o| o.subject == *s)
            .map(|o| o.mark.unwrap_or(self.id.mark()))
    }

    /// What it names, without marks.
    pub fn subjects(&self) -> impl Iterator<Item = &Subject> {
        self.objects.iter().map(|o| &o.subject)
    }
}

/// Every one of `findings` naming each subject, in their order (once
/// each): what a view lists under an entry (a Service chain's missing
/// endpoint chains) is looked up per entry, not searched for among all
/// findings (10,000 Services by 200 findings, per node, while endpoints
/// change).
pub fn naming<'a>(
    findings: impl IntoIterator<Item = &'a Finding>,
) -> crate::model::index::HashMap<&'a Subject, Vec<&'a Finding>> {
    let mut by: crate::model::index::HashMap<&Subject, Vec<&Finding>> = Default::default();
    for f in findings {
        for o in &f.objects {
            let v = by.entry(&o.subject).or_default();
            if !v.last().is_some_and(|l| std::ptr::eq(*l, f)) {
                v.push(f);
            }
        }
    }
    by
}

/// The first of `findings` that names each subject, with how it marks it:
/// the views look each entry up here once instead of scanning every
/// finding's objects per entry (a flannel.1 that is down names two entries
/// for each of thousands of peers). foldhash, as the index's maps: a lab
/// node beside 5,000 unreached peers has 15,000 findings naming 15,000
/// subjects, hashed again on every change of its state, and SipHash was the
/// larger part of it.
pub fn first_naming<'a>(
    findings: impl IntoIterator<Item = &'a Finding>,
) -> crate::model::index::HashMap<&'a Subject, (&'a Finding, Mark)> {
    let findings = findings.into_iter();
    // Room for a subject or two a finding, not grown (and rehashed) 15 times.
    let mut by = crate::model::index::HashMap::with_capacity_and_hasher(
        2 * findings.size_hint().0,
        Default::default(),
    );
    name_first(&mut by, findings, |_| true);
    by
}

/// [`first_naming`] for the subjects `wanted` keeps alone: a change of a
/// few of a node's 15,000 findings marks again only the lines they name.
pub fn first_naming_where<'a>(
    findings: impl IntoIterator<Item = &'a Finding>,
    wanted: impl Fn(&Subject) -> bool,
) -> crate::model::index::HashMap<&'a Subject, (&'a Finding, Mark)> {
    let mut by = crate::model::index::HashMap::default();
    name_first(&mut by, findings, wanted);
    by
}

fn name_first<'a>(
    by: &mut crate::model::index::HashMap<&'a Subject, (&'a Finding, Mark)>,
    findings: impl IntoIterator<Item = &'a Finding>,
    wanted: impl Fn(&Subject) -> bool,
) {
    for f in findings {
        for o in f.objects.iter().filter(|o| wanted(&o.subject)) {
            by.entry(&o.subject)
                .or_insert((f, o.mark.unwrap_or(f.id.mark())));
        }
    }
}
