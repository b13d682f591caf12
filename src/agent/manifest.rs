//! `knetdoctor agent manifest`: everything `kubectl apply -f -` needs to run
//! the agent — its CRDs, namespace, ServiceAccount, the agent's own Role
//! (its namespace's requests and Leases, nothing cluster-wide), the
//! ClusterRoles for people (viewer: read the cluster and ask agents to
//! read; repairer: also ask them to repair), and the DaemonSet.

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, HostPathVolumeSource, Namespace,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, ResourceRequirements, SecurityContext,
    ServiceAccount, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResourceExt;
use kube::api::ObjectMeta;

use super::api::{GROUP, NodeAgent, NodePayload, NodeRead, NodeRepair};
use crate::inspect::rbac::{meta, to_value, yaml_stream};

/// The name of the agent's ServiceAccount, Role and DaemonSet.
pub const AGENT: &str = "knetdoctor-agent";
/// The ClusterRole for people who diagnose.
pub const VIEWER: &str = "knetdoctor-viewer";
/// The ClusterRole for people who also repair.
pub const REPAIRER: &str = "knetdoctor-repairer";
/// Where the agent keeps repair journals on the node (hostPath), so they
/// outlive the agent's pod and the next agent can undo them.
pub const STATE_DIR: &str = "/var/lib/knetdoctor";

/// What to put in the manifest.
pub struct Options {
    pub image: String,
    pub namespace: String,
}

/// The manifest as one YAML stream, documents in the order they apply.
pub fn render(o: &Options) -> String {
    yaml_stream(&objects(o))
}

/// Each object of the manifest, in the order they apply.
pub fn objects(o: &Options) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = [
        NodeAgent::crd(),
        NodeRead::crd(),
        NodeRepair::crd(),
        NodePayload::crd(),
    ]
    .into_iter()
    .map(to_value)
    .collect();
    v.push(to_value(Namespace {
        metadata: meta(&o.namespace, None),
        ..Default::default()
    }));
    v.push(to_value(ServiceAccount {
        metadata: meta(AGENT, Some(&o.namespace)),
        ..Default::default()
    }));
    v.push(to_value(agent_role(&o.namespace)));
    v.push(to_value(RoleBinding {
        metadata: meta(AGENT, Some(&o.namespace)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: AGENT.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: AGENT.into(),
            namespace: Some(o.namespace.clone()),
            ..Default::default()
        }]),
    }));
    v.push(to_value(viewer()));
    v.push(to_value(repairer()));
    v.push(to_value(daemon_set(o)));
    v
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

/// The agent: its node's requests (read, answer in status, delete when
/// old), payload parts, its presence, and the repair Lease — all in its
/// namespace. It lists no cluster object.
fn agent_role(namespace: &str) -> Role {
    Role {
        metadata: meta(AGENT, Some(namespace)),
        rules: Some(vec![
            rule(
                GROUP,
                &["nodereads", "noderepairs"],
                &["get", "list", "watch", "delete"],
            ),
            rule(
                GROUP,
                &["nodereads/status", "noderepairs/status"],
                &["get", "patch", "update"],
            ),
            rule(
                GROUP,
                &["nodepayloads"],
                &[
                    "create",
                    "get",
                    "list",
                    "delete",
                    "update",
                    "deletecollection",
                ],
            ),
            rule(
                GROUP,
                &["nodeagents"],
                &["create", "get", "delete", "update", "patch"],
            ),
            rule(GROUP, &["nodeagents/status"], &["get", "patch", "update"]),
            rule(
                "coordination.k8s.io",
                &["leases"],
                &["create", "get", "update", "delete"],
            ),
        ]),
    }
}

/// What every command reads of the cluster — the knetdoctor-reader role's
/// rules, its ConfigMaps here cluster-wide (a ClusterRole has no
/// namespaces) — plus asking agents to read.
fn read_rules() -> Vec<PolicyRule> {
    let read = ["get", "list", "watch"];
    let mut rules = crate::inspect::rbac::cluster_role()
        .rules
        .unwrap_or_default();
    rules.push(rule("", &["configmaps"], &["list", "watch"]));
    rules.extend([
        rule(GROUP, &["nodeagents"], &read),
        // patch: a probe's client tells the nodes' watches to stop.
        rule(
            GROUP,
            &["nodereads"],
            &[
                "create",
                "get",
                "list",
                "watch",
                "patch",
                "delete",
                "deletecollection",
            ],
        ),
        rule(GROUP, &["nodepayloads"], &["get", "list", "watch"]),
    ]);
    rules
}

fn viewer() -> ClusterRole {
    ClusterRole {
        metadata: meta(VIEWER, None),
        rules: Some(read_rules()),
        ..Default::default()
    }
}

/// A repairer reads as a viewer does and sends repairs (whose plans may
/// need payload parts of their own).
fn repairer() -> ClusterRole {
    let mut rules = read_rules();
    rules.push(rule(
        GROUP,
        &["noderepairs"],
        &[
            "create",
            "get",
            "list",
            "watch",
            "delete",
            "deletecollection",
        ],
    ));
    rules.push(rule(
        GROUP,
        &["nodepayloads"],
        &["create", "deletecollection"],
    ));
    ClusterRole {
        metadata: meta(REPAIRER, None),
        rules: Some(rules),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn host_path(name: &str, path: &str, kind: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: Some(kind.into()),
        }),
        ..Default::default()
    }
}

/// One agent per node, in the node's network namespace. Capabilities
/// rather than privileged: NET_ADMIN (netlink, iptables-restore),
/// NET_RAW (capture, iptables), SYS_ADMIN (setns into the pods'
/// namespaces under /run/netns). No host PID: pods are found by their
/// namespaces' bind mounts, not by process.
fn daemon_set(o: &Options) -> DaemonSet {
    let labels: std::collections::BTreeMap<String, String> =
        [("app.kubernetes.io/name".to_string(), AGENT.to_string())].into();
    let quantity = |s: &str| Quantity(s.to_string());
    DaemonSet {
        metadata: meta(AGENT, Some(&o.namespace)),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(AGENT.into()),
                    host_network: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".into()),
                    priority_class_name: Some("system-node-critical".into()),
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }]),
                    containers: vec![Container {
                        name: "agent".into(),
                        image: Some(o.image.clone()),
                        args: Some(vec!["agent".into()]),
                        env: Some(vec![
                            field_env("NODE_NAME", "spec.nodeName"),
                            field_env("POD_NAME", "metadata.name"),
                            field_env("POD_NAMESPACE", "metadata.namespace"),
                        ]),
                        security_context: Some(SecurityContext {
                            privileged: Some(false),
                            allow_privilege_escalation: Some(false),
                            read_only_root_filesystem: Some(true),
                            run_as_user: Some(0),
                            capabilities: Some(Capabilities {
                                add: Some(vec![
                                    "NET_ADMIN".into(),
                                    "NET_RAW".into(),
                                    "SYS_ADMIN".into(),
                                ]),
                                drop: Some(vec!["ALL".into()]),
                            }),
                            ..Default::default()
                        }),
                        resources: Some(ResourceRequirements {
                            requests: Some(
                                [
                                    ("cpu".to_string(), quantity("10m")),
                                    ("memory".to_string(), quantity("32Mi")),
                                ]
                                .into(),
                            ),
                            limits: Some([("memory".to_string(), quantity("256Mi"))].into()),
                            ..Default::default()
                        }),
                        volume_mounts: Some(vec![
                            VolumeMount {
                                name: "netns".into(),
                                mount_path: "/run/netns".into(),
                                mount_propagation: Some("HostToContainer".into()),
                                read_only: Some(true),
                                ..Default::default()
                            },
                            VolumeMount {
                                name: "state".into(),
                                mount_path: STATE_DIR.into(),
                                ..Default::default()
                            },
                            VolumeMount {
                                name: "xtables-lock".into(),
                                mount_path: "/run/xtables.lock".into(),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![
                        host_path("netns", "/run/netns", "DirectoryOrCreate"),
                        host_path("state", STATE_DIR, "DirectoryOrCreate"),
                        host_path("xtables-lock", "/run/xtables.lock", "FileOrCreate"),
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects_of(kind: &str) -> Vec<serde_json::Value> {
        objects(&Options {
            image: "img".into(),
            namespace: "kd".into(),
        })
        .into_iter()
        .filter(|o| o["kind"] == kind)
        .collect()
    }

    /// Whether `role` grants `verb` on `resource` of the agent's group.
    fn grants(role: &serde_json::Value, resource: &str, verb: &str) -> bool {
        role["rules"].as_array().unwrap().iter().any(|r| {
            r["apiGroups"][0] == GROUP
                && r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == resource)
                && r["verbs"].as_array().unwrap().iter().any(|x| x == verb)
        })
    }

    #[test]
    fn viewers_read_and_only_repairers_repair() {
        let roles = objects_of("ClusterRole");
        let by = |name: &str| {
            roles
                .iter()
                .find(|r| r["metadata"]["name"] == name)
                .unwrap()
        };
        let (viewer, repairer) = (by(VIEWER), by(REPAIRER));
        assert!(grants(viewer, "nodereads", "create"));
        assert!(!grants(viewer, "noderepairs", "create"));
        assert!(grants(repairer, "noderepairs", "create"));
        assert!(grants(repairer, "nodereads", "create"));
        // Neither reads Secrets.
        for r in [viewer, repairer] {
            assert!(!r.to_string().contains("secrets"), "{r}");
        }
    }

    #[test]
    fn the_agent_has_no_cluster_wide_rights_and_is_not_privileged() {
        assert_eq!(objects_of("Role").len(), 1);
        let role = &objects_of("Role")[0];
        assert_eq!(role["metadata"]["namespace"], "kd");
        assert!(
            !grants(role, "noderepairs", "create"),
            "the agent never asks"
        );
        assert!(objects_of("ClusterRoleBinding").is_empty());
        let ds = &objects_of("DaemonSet")[0];
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true);
        assert!(pod.get("hostPID").is_none());
        let sc = &pod["containers"][0]["securityContext"];
        assert_eq!(sc["privileged"], false);
        assert_eq!(
            sc["capabilities"]["add"],
            serde_json::json!(["NET_ADMIN", "NET_RAW", "SYS_ADMIN"])
        );
        assert_eq!(pod["containers"][0]["image"], "img");
        // No port: the agent listens on nothing.
        assert!(pod["containers"][0].get("ports").is_none());
    }

    #[test]
    fn every_crd_is_served_with_a_status_subresource_but_parts() {
        let crds = objects_of("CustomResourceDefinition");
        assert_eq!(crds.len(), 4);
        for c in &crds {
            assert_eq!(c["spec"]["group"], GROUP);
            assert_eq!(c["spec"]["scope"], "Namespaced");
            let status = c["spec"]["versions"][0]["subresources"]
                .get("status")
                .is_some();
            assert_eq!(status, c["spec"]["names"]["kind"] != "NodePayload", "{c}");
            // 1.20 refuses defaults in CRD schemas.
            assert!(!c.to_string().contains("\"default\""), "{c}");
        }
    }
}
