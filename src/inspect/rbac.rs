//! `knetdoctor rbac`: the least a user needs for knetdoctor to read a
//! cluster — `list` and `watch` (what its reflectors do; no `get`) on the
//! kinds the verdicts read, ConfigMaps only in the namespaces whose
//! ConfigMaps it reads, Secrets never — and the bindings that grant it.
//! Asking the nodes' agents is the knetdoctor-viewer role's
//! (`knetdoctor agent manifest`).

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::ObjectMeta;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::cluster::READ_CONFIG_MAPS;
use crate::model::reading::ApiKind;

/// The ClusterRole (and the ConfigMap Roles) that let knetdoctor read.
pub const READER: &str = "knetdoctor-reader";

/// The verbs of a reflector: one list, then a watch.
const VERBS: [&str; 2] = ["list", "watch"];

/// The API group and resources a kind is read through. Endpoints are
/// EndpointSlices where the server serves discovery.k8s.io/v1, core
/// Endpoints before (1.20).
pub fn resources(kind: ApiKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        ApiKind::Nodes => &[("", "nodes")],
        ApiKind::Pods => &[("", "pods")],
        ApiKind::Services => &[("", "services")],
        ApiKind::Endpoints => &[("discovery.k8s.io", "endpointslices"), ("", "endpoints")],
        ApiKind::Ingresses => &[("networking.k8s.io", "ingresses")],
        ApiKind::IngressClasses => &[("networking.k8s.io", "ingressclasses")],
        ApiKind::NetworkPolicies => &[("networking.k8s.io", "networkpolicies")],
        ApiKind::ConfigMaps => &[("", "configmaps")],
    }
}

/// Who to bind the role to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    User(String),
    Group(String),
    /// `NAMESPACE:NAME`.
    ServiceAccount {
        namespace: String,
        name: String,
    },
}

impl Grantee {
    /// Parses `--serviceaccount NAMESPACE:NAME` as kubectl does.
    pub fn service_account(arg: &str) -> Result<Grantee> {
        match arg.split_once(':') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok(Grantee::ServiceAccount {
                namespace: ns.into(),
                name: name.into(),
            }),
            _ => Err(Error::usage(
                format!("--serviceaccount {arg}: expected NAMESPACE:NAME"),
                Some("for example --serviceaccount monitoring:knetdoctor".to_string()),
            )),
        }
    }

    fn subject(&self) -> Subject {
        let rbac = Some("rbac.authorization.k8s.io".to_string());
        match self {
            Grantee::User(n) => Subject {
                kind: "User".into(),
                name: n.clone(),
                api_group: rbac,
                namespace: None,
            },
            Grantee::Group(n) => Subject {
                kind: "Group".into(),
                name: n.clone(),
                api_group: rbac,
                namespace: None,
            },
            Grantee::ServiceAccount { namespace, name } => Subject {
                kind: "ServiceAccount".into(),
                name: name.clone(),
                api_group: None,
                namespace: Some(namespace.clone()),
            },
        }
    }

    /// A name for the bindings: `knetdoctor-reader-user-alice`.
    fn binding_name(&self) -> String {
        let who = match self {
            Grantee::User(n) => format!("user-{n}"),
            Grantee::Group(n) => format!("group-{n}"),
            Grantee::ServiceAccount { namespace, name } => format!("sa-{namespace}-{name}"),
        };
        let who: String = who
            .to_lowercase()
            .chars()
            .map(|c| match c {
                'a'..='z' | '0'..='9' | '-' | '.' => c,
                _ => '-',
            })
            .collect();
        format!("{READER}-{who}")
    }
}

/// What `knetdoctor rbac` prints.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Bind the roles to this grantee too.
    pub grantee: Option<Grantee>,
    /// Bind only in this namespace (a RoleBinding of the ClusterRole):
    /// the user reads that namespace's objects, and every other answer
    /// says what it could not read.
    pub namespace: Option<String>,
}

/// An object's metadata, labelled as knetdoctor's.
pub(crate) fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(str::to_string),
        labels: Some(
            [(
                "app.kubernetes.io/name".to_string(),
                "knetdoctor".to_string(),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

fn rules(kinds: &[ApiKind]) -> Vec<PolicyRule> {
    // One rule per API group, resources in the order of the kinds.
    let mut by_group: Vec<(&str, Vec<String>)> = Vec::new();
    for (group, resource) in kinds.iter().flat_map(|k| resources(*k)) {
        match by_group.iter_mut().find(|(g, _)| g == group) {
            Some((_, r)) => r.push(resource.to_string()),
            None => by_group.push((group, vec![resource.to_string()])),
        }
    }
    by_group
        .into_iter()
        .map(|(group, resources)| PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(resources),
            verbs: VERBS.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        })
        .collect()
}

/// The ClusterRole: list and watch every kind read cluster-wide.
pub fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: meta(READER, None),
        rules: Some(rules(
            // Every kind is read cluster-wide but ConfigMaps.
            &ApiKind::ALL
                .into_iter()
                .filter(|k| *k != ApiKind::ConfigMaps)
                .collect::<Vec<_>>(),
        )),
        ..Default::default()
    }
}

/// The namespaces whose ConfigMaps knetdoctor reads (flannel's net-conf,
/// kube-proxy's and CoreDNS's config).
pub fn config_namespaces() -> Vec<&'static str> {
    let mut v: Vec<&str> = READ_CONFIG_MAPS.iter().map(|(ns, _)| *ns).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// A Role per namespace of [`config_namespaces`]: its ConfigMaps.
pub fn config_roles() -> Vec<Role> {
    config_namespaces()
        .into_iter()
        .map(|ns| Role {
            metadata: meta(READER, Some(ns)),
            rules: Some(rules(&[ApiKind::ConfigMaps])),
        })
        .collect()
}

fn role_ref(kind: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: READER.into(),
    }
}

/// Every object, in the order they apply.
pub fn objects(o: &Options) -> Vec<serde_json::Value> {
    let mut v = vec![to_value(cluster_role())];
    v.extend(config_roles().into_iter().map(to_value));
    let Some(grantee) = &o.grantee else {
        return v;
    };
    let name = grantee.binding_name();
    let subjects = Some(vec![grantee.subject()]);
    match &o.namespace {
        Some(ns) => v.push(to_value(RoleBinding {
            metadata: meta(&name, Some(ns)),
            role_ref: role_ref("ClusterRole"),
            subjects,
        })),
        None => {
            v.push(to_value(ClusterRoleBinding {
                metadata: meta(&name, None),
                role_ref: role_ref("ClusterRole"),
                subjects: subjects.clone(),
            }));
            for ns in config_namespaces() {
                v.push(to_value(RoleBinding {
                    metadata: meta(&name, Some(ns)),
                    role_ref: role_ref("Role"),
                    subjects: subjects.clone(),
                }));
            }
        }
    }
    v
}

/// The objects as one YAML stream, for `kubectl apply -f -`.
pub fn render(o: &Options) -> String {
    yaml_stream(&objects(o))
}

/// A typed Kubernetes object as JSON (they always serialize).
pub(crate) fn to_value(v: impl Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// Objects as one YAML stream, documents in the order given.
pub(crate) fn yaml_stream(objects: &[serde_json::Value]) -> String {
    objects
        .iter()
        // A JSON value always serializes.
        .map(|v| serde_yaml_ng::to_string(v).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(v: &[serde_json::Value]) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for o in v
            .iter()
            .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        {
            for r in o["rules"].as_array().unwrap() {
                for g in r["apiGroups"].as_array().unwrap() {
                    for res in r["resources"].as_array().unwrap() {
                        for verb in r["verbs"].as_array().unwrap() {
                            out.push((
                                g.as_str().unwrap().to_string(),
                                res.as_str().unwrap().to_string(),
                                verb.as_str().unwrap().to_string(),
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_reader_lists_and_watches_and_never_secrets() {
        let v = objects(&Options::default());
        let g = granted(&v);
        assert!(
            g.iter()
                .all(|(_, _, verb)| verb == "list" || verb == "watch")
        );
        assert!(!g.iter().any(|(_, r, _)| r == "secrets" || r == "*"));
        assert!(g.contains(&(
            "discovery.k8s.io".into(),
            "endpointslices".into(),
            "watch".into()
        )));
        // ConfigMaps only in the namespaces read, by Roles.
        let cm_roles: Vec<&str> = v
            .iter()
            .filter(|o| o["kind"] == "Role")
            .map(|o| o["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(cm_roles, ["kube-flannel", "kube-system"]);
        assert!(
            !cluster_role().rules.unwrap().iter().any(|r| r
                .resources
                .as_ref()
                .unwrap()
                .contains(&"configmaps".into()))
        );
    }

    /// The file shipped in the repository is what the command prints.
    #[test]
    fn the_shipped_role_is_the_commands() {
        let shipped = include_str!("../../deploy/rbac/knetdoctor-reader.yaml");
        let body: String = shipped
            .lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            body,
            render(&Options::default()),
            "run `knetdoctor rbac` into deploy/rbac/knetdoctor-reader.yaml (below its comment)"
        );
    }

    #[test]
    fn a_grantee_gets_a_binding_per_role_or_one_namespace() {
        let user = Some(Grantee::User("Alice@Example".into()));
        let all = objects(&Options {
            grantee: user.clone(),
            namespace: None,
        });
        let kinds: Vec<&str> = all.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "ClusterRole",
                "Role",
                "Role",
                "ClusterRoleBinding",
                "RoleBinding",
                "RoleBinding"
            ]
        );
        assert_eq!(
            all[3]["metadata"]["name"],
            "knetdoctor-reader-user-alice-example"
        );
        assert_eq!(all[3]["subjects"][0]["name"], "Alice@Example");
        let one = objects(&Options {
            grantee: user,
            namespace: Some("team-a".into()),
        });
        assert_eq!(one.last().unwrap()["kind"], "RoleBinding");
        assert_eq!(one.last().unwrap()["metadata"]["namespace"], "team-a");
        assert_eq!(one.last().unwrap()["roleRef"]["kind"], "ClusterRole");
        assert!(Grantee::service_account("nope").is_err());
        assert_eq!(
            Grantee::service_account("mon:kd").unwrap(),
            Grantee::ServiceAccount {
                namespace: "mon".into(),
                name: "kd".into()
            }
        );
    }
}
