//! What a check reports: a finding with a stable ID, the objects involved,
//! the evidence, and where one exists the typed action that fixes it.

use serde::{Deserialize, Serialize};

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

/// A Kubernetes object or a dataplane entry a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    /// `Node`, `Pod`, `Service`, `Ingress`, `device`, `route`, `neigh`, `fdb`, `chain`, `sysctl`, ...
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, name: impl Into<String>) -> Self {
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
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
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
        ip: String,
        mac: String,
    },
    FdbReplace {
        dev: String,
        mac: String,
        dst: String,
    },
    FdbDelete {
        dev: String,
        mac: String,
        dst: Option<String>,
    },
    RouteReplace {
        dst: String,
        gateway: String,
        dev: String,
        onlink: bool,
    },
    /// `ip route del DST table TABLE`: a route that takes traffic for a pod
    /// CIDR away from flannel.
    RouteDelete {
        dst: String,
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
        remove: Vec<String>,
        add: String,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable, kebab-case; scripts may rely on it.
    pub id: String,
    pub severity: Severity,
    /// The node whose dataplane shows it; `None` for cluster-level findings.
    pub node: Option<String>,
    /// One line saying what is wrong.
    pub summary: String,
    pub objects: Vec<ObjectRef>,
    pub expected: Option<String>,
    pub actual: Option<String>,
    pub repair: Vec<RepairAction>,
}

impl Finding {
    /// A finding with no evidence or repair yet.
    pub fn new(
        id: &str,
        severity: Severity,
        node: Option<&str>,
        summary: impl Into<String>,
    ) -> Self {
        Finding {
            id: id.into(),
            severity,
            node: node.map(str::to_string),
            summary: summary.into(),
            objects: Vec::new(),
            expected: None,
            actual: None,
            repair: Vec::new(),
        }
    }
    pub fn object(mut self, o: ObjectRef) -> Self {
        self.objects.push(o);
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
}
