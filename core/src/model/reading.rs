//! What of the API a reading could not see, and which verdicts stand on
//! it. A user bound to a narrow role (one namespace, no ConfigMaps) still
//! gets every verdict that does not depend on what was refused; the ones
//! that do are skipped and said to be, never judged against an empty list
//! (an unreadable Services list would otherwise make every KUBE-SVC chain
//! on every node look stale).

use serde::{Deserialize, Serialize};

/// A kind of API object the verdicts read, as the live reader lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ApiKind {
    Nodes,
    Pods,
    Services,
    /// EndpointSlices (discovery.k8s.io/v1), or core/v1 Endpoints on a
    /// server that does not serve them (1.20): the same facts either way.
    Endpoints,
    Ingresses,
    IngressClasses,
    NetworkPolicies,
    ConfigMaps,
}

impl ApiKind {
    pub const ALL: [ApiKind; 8] = [
        ApiKind::Nodes,
        ApiKind::Pods,
        ApiKind::Services,
        ApiKind::Endpoints,
        ApiKind::Ingresses,
        ApiKind::IngressClasses,
        ApiKind::NetworkPolicies,
        ApiKind::ConfigMaps,
    ];

    /// Whether objects of the kind live in namespaces.
    pub fn namespaced(self) -> bool {
        !matches!(self, ApiKind::Nodes | ApiKind::IngressClasses)
    }
}

impl std::fmt::Display for ApiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApiKind::Nodes => "Nodes",
            ApiKind::Pods => "Pods",
            ApiKind::Services => "Services",
            ApiKind::Endpoints => "Endpoints",
            ApiKind::Ingresses => "Ingresses",
            ApiKind::IngressClasses => "IngressClasses",
            ApiKind::NetworkPolicies => "NetworkPolicies",
            ApiKind::ConfigMaps => "ConfigMaps",
        })
    }
}

/// One list the API server refused: the kind, where (`None`: the whole
/// cluster), and the server's own answer, which names the user, the verb,
/// the resource and the scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Unreadable {
    pub kind: ApiKind,
    pub namespace: Option<String>,
    /// The HTTP status: 403 refused to this identity, 401 the identity
    /// itself was not accepted.
    pub code: u16,
    /// The server's message, verbatim.
    pub message: String,
    /// The one namespace read instead of all of them (the user's `-n`, or
    /// their context's namespace): the verdicts that judge each object on
    /// its own still run there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_instead: Option<String>,
}

impl Unreadable {
    /// "Endpoints in kube-system", "Pods in all namespaces", "Services
    /// outside team-a", "Nodes".
    pub fn scope(&self) -> String {
        scope(
            self.kind,
            self.namespace.as_deref(),
            self.read_instead.as_deref(),
        )
    }

    /// Whether objects of namespace `ns` may be among what was not read.
    pub fn covers(&self, ns: &str) -> bool {
        match (&self.namespace, &self.read_instead) {
            (Some(n), _) => n == ns,
            (None, Some(read)) => read != ns,
            (None, None) => true,
        }
    }

    /// "forbidden" or "unauthorized": what the server said, in a word.
    pub fn refusal(&self) -> &'static str {
        if self.code == 401 {
            "unauthorized"
        } else {
            "forbidden"
        }
    }

    /// "Nodes (forbidden)": the scope and the refusal, for lists of them.
    pub fn brief(&self) -> String {
        format!("{} ({})", self.scope(), self.refusal())
    }

    /// What to do about it: renew the credentials (401) or be granted
    /// the reader role (403).
    pub fn remedy(&self) -> &'static str {
        if self.code == 401 { RENEW } else { GRANT }
    }
}

/// What to do about a 403: the role, and how to bind it.
pub const GRANT: &str = "a cluster admin can grant reading with the knetdoctor-reader role: `knetdoctor rbac --user NAME | kubectl apply -f -` (NAME as the server's message names the user), or knetdoctor-viewer to also ask the nodes' agents (`knetdoctor agent manifest`). If you may read only some namespaces, pass -n NAMESPACE";
/// What to do about a 401.
pub const RENEW: &str = "the token or client certificate of your kubeconfig's user is wrong or expired: renew it (`kubectl get --raw /version` fails the same way until then)";

/// The line an answer read in part ends with (trace, inspect): what was
/// refused; `None` for a complete reading.
pub fn read_in_part(unread: &[Unreadable]) -> Option<String> {
    if unread.is_empty() {
        return None;
    }
    let refused: Vec<String> = unread.iter().map(Unreadable::brief).collect();
    Some(format!(
        "read in part: the API server refused {}; this answer stands on what was read and on the nodes' own state",
        refused.join(", ")
    ))
}

/// What a refused list covered, in words: see [`Unreadable::scope`].
pub fn scope(kind: ApiKind, namespace: Option<&str>, read_instead: Option<&str>) -> String {
    match (namespace, read_instead, kind.namespaced()) {
        (Some(ns), _, _) => format!("{kind} in {ns}"),
        (None, Some(ns), true) => format!("{kind} outside {ns}"),
        (None, None, true) => format!("{kind} in all namespaces"),
        (None, _, false) => kind.to_string(),
    }
}

/// A group of verdicts that stand on the same API objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckGroup {
    /// Nodes' flannel leases (annotations against podCIDRs).
    Leases,
    /// flannel on each node: VTEP, per-peer routes, neighbours and FDB,
    /// cni0, FLANNEL-* chains — from the Nodes' leases and flannel's
    /// net-conf.
    Overlay,
    /// Each pod's veth on its node.
    PodDevices,
    /// kube-proxy's rules, IPVS or nftables state for each Service.
    KubeProxy,
    /// Services against their endpoints and pods.
    ServiceEndpoints,
    /// kube-dns, CoreDNS's config and DNS conntrack entries.
    ClusterDns,
    /// Ingresses' classes, backends and ports.
    Ingresses,
    /// NetworkPolicies flannel does not enforce.
    NetworkPolicies,
}

/// What a verdict needs readable: a kind, anywhere (`None`) or in one
/// namespace.
type Need = (ApiKind, Option<&'static str>);

impl CheckGroup {
    pub const ALL: [CheckGroup; 8] = [
        CheckGroup::Leases,
        CheckGroup::Overlay,
        CheckGroup::PodDevices,
        CheckGroup::KubeProxy,
        CheckGroup::ServiceEndpoints,
        CheckGroup::ClusterDns,
        CheckGroup::Ingresses,
        CheckGroup::NetworkPolicies,
    ];

    /// The objects the group's verdicts read. flannel's net-conf may live
    /// in kube-flannel or kube-system; kube-proxy's mode and CoreDNS's
    /// Corefile in kube-system.
    fn needs(self) -> &'static [Need] {
        use ApiKind::*;
        match self {
            CheckGroup::Leases => &[(Nodes, None)],
            CheckGroup::Overlay => &[
                (Nodes, None),
                (ConfigMaps, Some("kube-flannel")),
                (ConfigMaps, Some("kube-system")),
            ],
            CheckGroup::PodDevices => &[(Pods, None)],
            CheckGroup::KubeProxy => &[
                (Services, None),
                (Endpoints, None),
                (ConfigMaps, Some("kube-system")),
            ],
            CheckGroup::ServiceEndpoints => &[(Services, None), (Endpoints, None), (Pods, None)],
            CheckGroup::ClusterDns => &[
                (Services, None),
                (Endpoints, None),
                (Pods, None),
                (ConfigMaps, Some("kube-system")),
            ],
            CheckGroup::Ingresses => &[
                (Ingresses, None),
                (IngressClasses, None),
                (Services, None),
                (Endpoints, None),
            ],
            CheckGroup::NetworkPolicies => &[(NetworkPolicies, None)],
        }
    }

    /// Whether the group judges each object against objects of its own
    /// namespace only (a Service against its endpoints and pods, a pod
    /// against its veth), so that it stands on one namespace's objects
    /// when the others could not be read.
    fn namespace_local(self) -> bool {
        matches!(
            self,
            CheckGroup::PodDevices
                | CheckGroup::ServiceEndpoints
                | CheckGroup::Ingresses
                | CheckGroup::NetworkPolicies
        )
    }

    /// Whether `u` keeps the group from running: it needs what `u` says
    /// was refused, and no namespace read instead stands in for it.
    fn stopped_by(self, u: &Unreadable) -> bool {
        self.needs_unreadable(u) && !(self.namespace_local() && u.read_instead.is_some())
    }

    /// The group in a few words, for "→ … skipped".
    pub fn what(self) -> &'static str {
        match self {
            CheckGroup::Leases => "flannel lease checks",
            CheckGroup::Overlay => "flannel overlay checks (routes, neighbours, FDB, VTEP)",
            CheckGroup::PodDevices => "pod veth checks",
            CheckGroup::KubeProxy => "kube-proxy rule checks",
            CheckGroup::ServiceEndpoints => "Service endpoint checks",
            CheckGroup::ClusterDns => "kube-dns checks",
            CheckGroup::Ingresses => "Ingress checks",
            CheckGroup::NetworkPolicies => "NetworkPolicy checks",
        }
    }

    /// Whether the group needs what `u` says could not be read. A list
    /// refused in one namespace counts for a need of that namespace and
    /// for a need of the kind anywhere.
    /// The kinds the group's verdicts read.
    pub fn kinds(self) -> impl Iterator<Item = ApiKind> {
        self.needs().iter().map(|(kind, _)| *kind)
    }

    pub fn needs_unreadable(self, u: &Unreadable) -> bool {
        self.needs().iter().any(|(kind, ns)| {
            *kind == u.kind
                && match (ns, &u.namespace) {
                    (Some(want), Some(got)) => want == got,
                    _ => true,
                }
        })
    }
}

/// The groups that cannot run because of what was not read; empty (and
/// free) for a complete reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped(Vec<CheckGroup>);

impl Skipped {
    pub fn of(unread: &[Unreadable]) -> Skipped {
        Skipped(
            CheckGroup::ALL
                .into_iter()
                .filter(|g| unread.iter().any(|u| g.stopped_by(u)))
                .collect(),
        )
    }

    /// Whether the group's verdicts stand on what was read.
    pub fn runs(&self, g: CheckGroup) -> bool {
        !self.0.contains(&g)
    }

    /// The groups `u` makes skip, in [`CheckGroup::ALL`]'s order.
    pub fn because_of(u: &Unreadable) -> Vec<CheckGroup> {
        CheckGroup::ALL
            .into_iter()
            .filter(|g| g.stopped_by(u))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(kind: ApiKind, ns: Option<&str>) -> Unreadable {
        Unreadable {
            kind,
            namespace: ns.map(str::to_string),
            code: 403,
            message: "forbidden".into(),
            read_instead: None,
        }
    }

    #[test]
    fn a_refused_list_skips_exactly_the_groups_that_read_it() {
        let s = Skipped::of(&[refused(ApiKind::Endpoints, Some("kube-system"))]);
        for g in [
            CheckGroup::KubeProxy,
            CheckGroup::ServiceEndpoints,
            CheckGroup::ClusterDns,
            CheckGroup::Ingresses,
        ] {
            assert!(!s.runs(g), "{g:?}");
        }
        for g in [
            CheckGroup::Leases,
            CheckGroup::Overlay,
            CheckGroup::PodDevices,
            CheckGroup::NetworkPolicies,
        ] {
            assert!(s.runs(g), "{g:?}");
        }
        // ConfigMaps matter by namespace: kube-flannel's hold flannel's
        // net-conf only.
        let s = Skipped::of(&[refused(ApiKind::ConfigMaps, Some("kube-flannel"))]);
        assert!(!s.runs(CheckGroup::Overlay));
        assert!(s.runs(CheckGroup::KubeProxy) && s.runs(CheckGroup::ClusterDns));
        assert_eq!(Skipped::of(&[]), Skipped::default());
        // One namespace read instead of all: what judges each object on
        // its own runs there; what needs every Service does not.
        let mut pods = refused(ApiKind::Services, None);
        pods.read_instead = Some("team-a".into());
        assert_eq!(pods.scope(), "Services outside team-a");
        let s = Skipped::of(&[pods]);
        assert!(s.runs(CheckGroup::ServiceEndpoints) && s.runs(CheckGroup::Ingresses));
        assert!(!s.runs(CheckGroup::KubeProxy) && !s.runs(CheckGroup::ClusterDns));
        assert!(CheckGroup::ALL.iter().all(|g| Skipped::of(&[]).runs(*g)));
    }

    #[test]
    fn the_scope_reads_as_kubectl_would_say_it() {
        assert_eq!(
            refused(ApiKind::Pods, None).scope(),
            "Pods in all namespaces"
        );
        assert_eq!(refused(ApiKind::Nodes, None).scope(), "Nodes");
        assert_eq!(
            refused(ApiKind::ConfigMaps, Some("kube-system")).scope(),
            "ConfigMaps in kube-system"
        );
    }
}
