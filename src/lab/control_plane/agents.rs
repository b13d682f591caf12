//! The knetdoctor agent on the control-plane lab, run as its DaemonSet's
//! pods would run: the manifest `knetdoctor agent manifest` prints is
//! applied to the real API server (the DaemonSet by server-side dry run:
//! no kubelet here runs pods), each node's agent pod is published as the
//! DaemonSet would create it, and one agent process per node runs in the
//! node's namespace with a ServiceAccount token bound to that pod — the
//! credentials a pod of the DaemonSet gets, nothing more.

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::api::{DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::discovery::{ApiResource, Scope};
use kube::{Api, Client, ResourceExt};

use super::super::process;
use super::super::state::{LabState, TrackedProcess};
use super::{API_PORT, pki_dir};
use crate::agent::api::DEFAULT_NAMESPACE;
use crate::agent::manifest::{self, AGENT, REPAIRER, VIEWER};
use crate::error::{Error, Result};
use crate::inspect::live::block_on;

/// The role the lab records its agent processes under.
pub const ROLE: &str = "knetdoctor-agent";
/// The image the lab's manifest names (never pulled: the lab runs the
/// agent from this very binary).
const IMAGE: &str = "knetdoctor:lab";
/// The lab's users for RBAC: one bound to each ClusterRole the manifest
/// defines (by `--agents`), and three bound here to none — `outsider`
/// stays so; the RBAC tests bind `reader` and `team` with what
/// `knetdoctor rbac` prints, as a cluster admin would.
pub const USERS: [(&str, Option<&str>); 5] = [
    ("viewer", Some(VIEWER)),
    ("repairer", Some(REPAIRER)),
    ("outsider", None),
    ("reader", None),
    ("team", None),
];

fn api_err(what: &str, e: kube::Error) -> Error {
    Error::env(
        format!("installing the agent on the lab: {what}: {e}"),
        None,
    )
}

async fn admin(state: &LabState) -> Result<Client> {
    let kubeconfig = state
        .kubeconfig
        .clone()
        .ok_or_else(|| Error::env("this lab runs no control plane", None))?;
    Ok(
        crate::inspect::live::client(&crate::inspect::live::LiveSource {
            kubeconfig: Some(kubeconfig),
            ..Default::default()
        })
        .await?
        .0,
    )
}

/// Applies the manifest (the DaemonSet as a dry run), binds the lab's
/// users, and starts an agent on every node.
pub fn install(state: &mut LabState) -> Result<()> {
    block_on(apply_manifest(state))?;
    for n in state.topology.nodes.clone() {
        let p = start(state, &n.name)?;
        state.processes.push(p);
        state.save()?;
    }
    wait_announced(state)
}

async fn apply_manifest(state: &LabState) -> Result<()> {
    let client = admin(state).await?;
    let objects = manifest::objects(&manifest::Options {
        image: IMAGE.into(),
        namespace: DEFAULT_NAMESPACE.into(),
    });
    for obj in objects {
        let o: DynamicObject = serde_json::from_value(obj.clone())
            .map_err(|e| Error::internal(format!("the manifest's objects: {e}")))?;
        let types = o.types.clone().unwrap_or_default();
        let (group, version) = match types.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), types.api_version.clone()),
        };
        let gvk = kube::api::GroupVersionKind::gvk(&group, &version, &types.kind);
        // A CRD just applied takes a moment to be served.
        let deadline = Instant::now() + Duration::from_secs(20);
        let (ar, caps) = loop {
            match kube::discovery::pinned_kind(&client, &gvk).await {
                Ok(found) => break found,
                Err(e) if Instant::now() > deadline => {
                    return Err(api_err(&format!("discovering {}", types.kind), e));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let api: Api<DynamicObject> = match (caps.scope, o.namespace()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), &ns, &ar),
            _ => Api::all_with(client.clone(), &ar),
        };
        let mut params = PatchParams::apply("knetdoctor-lab").force();
        // No kubelet runs pods here: the DaemonSet is only checked by the
        // server (admission, validation), its pods are the lab's.
        params.dry_run = types.kind == "DaemonSet";
        api.patch(&o.name_any(), &params, &Patch::Apply(&obj))
            .await
            .map_err(|e| api_err(&format!("applying {} {}", types.kind, o.name_any()), e))?;
    }
    wait_served(
        &client,
        &ApiResource::erase::<crate::agent::api::NodeRead>(&()),
    )
    .await?;
    let crb: Api<ClusterRoleBinding> = Api::all(client.clone());
    for (user, role) in USERS {
        let Some(role) = role else { continue };
        let binding = ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("lab-{user}")),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: user_cn(user),
                api_group: Some("rbac.authorization.k8s.io".into()),
                ..Default::default()
            }]),
        };
        crb.patch(
            &format!("lab-{user}"),
            &PatchParams::apply("knetdoctor-lab").force(),
            &Patch::Apply(&binding),
        )
        .await
        .map_err(|e| api_err("binding the lab's users", e))?;
    }
    Ok(())
}

async fn wait_served(client: &Client, ar: &ApiResource) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), DEFAULT_NAMESPACE, ar);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match api.list(&Default::default()).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(api_err("the agent's kinds are not served", e));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The common name of lab user `user`'s certificate.
pub fn user_cn(user: &str) -> String {
    format!("lab-{user}")
}

fn pod_name(node: &str) -> String {
    format!("{AGENT}-{node}")
}

/// Publishes `node`'s agent pod as the DaemonSet would create it, gets a
/// token bound to it, and starts the agent in the node's namespace.
pub fn start(state: &LabState, node: &str) -> Result<TrackedProcess> {
    let n = state.topology.node(node)?.clone();
    let master = super::master(state)?.ip;
    let token = block_on(publish_pod(state, node))?;
    let dir = super::cp_dir(state);
    let kubeconfig = dir.join(format!("agent-{node}.kubeconfig"));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://{master}:{API_PORT}\n    certificate-authority: {ca}\nusers:\n- name: agent\n  user:\n    token: {token}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: agent\ncurrent-context: lab\n",
        ca = pki_dir(state).join("ca.crt").display(),
    );
    crate::files::write_private(&kubeconfig, text.as_bytes())?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::env(format!("cannot find my own executable: {e}"), None))?;
    let mut args = vec![
        "agent".to_string(),
        "--node".into(),
        node.into(),
        "--namespace".into(),
        DEFAULT_NAMESPACE.into(),
        "--pod".into(),
        pod_name(node),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--state-dir".into(),
        state.dir.display().to_string(),
        "--heartbeat".into(),
        "1".into(),
    ];
    for p in state.topology.pods_on(node) {
        args.push("--pod-netns".into());
        args.push(p.netns.clone());
    }
    process::spawn(
        &n.netns,
        &n.name,
        ROLE,
        &exe,
        &args,
        &state.dir.join("logs").join(format!("agent-{node}.log")),
    )
}

/// The pod the DaemonSet would make for `node` (its template, bound to
/// the node), and a token for its ServiceAccount bound to that pod.
async fn publish_pod(state: &LabState, node: &str) -> Result<String> {
    let client = admin(state).await?;
    let ds = manifest::objects(&manifest::Options {
        image: IMAGE.into(),
        namespace: DEFAULT_NAMESPACE.into(),
    })
    .into_iter()
    .find(|o| o["kind"] == "DaemonSet")
    .ok_or_else(|| Error::internal("the manifest has no DaemonSet"))?;
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": ds["spec"]["template"]["metadata"],
        "spec": ds["spec"]["template"]["spec"],
    }))
    .map_err(|e| Error::internal(format!("the DaemonSet's pod template: {e}")))?;
    pod.metadata.name = Some(pod_name(node));
    pod.metadata.namespace = Some(DEFAULT_NAMESPACE.into());
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.into());
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), DEFAULT_NAMESPACE);
    // No kubelet here confirms a graceful deletion: the old pod goes at once.
    let _ = pods
        .delete(
            &pod_name(node),
            &kube::api::DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let created = loop {
        match pods.create(&PostParams::default(), &pod).await {
            Ok(p) => break p,
            // The old pod is still going away.
            Err(kube::Error::Api(s)) if s.code == 409 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(api_err(&format!("publishing the agent pod on {node}"), e)),
        }
    };
    let sa: Api<ServiceAccount> = Api::namespaced(client, DEFAULT_NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(24 * 3600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod_name(node)),
                uid: created.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let answer: TokenRequest = sa
        .create_subresource("token", AGENT, &PostParams::default(), &request)
        .await
        .map_err(|e| api_err("requesting the agent's ServiceAccount token", e))?;
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| Error::env("the API server returned no token", None))
}

/// Stops `node`'s agent (SIGTERM: it withdraws its NodeAgent).
pub fn stop(state: &mut LabState, node: &str) -> Result<()> {
    let stopped: Vec<(i32, Option<u64>)> = state
        .processes
        .iter()
        .filter(|p| p.role == ROLE && p.pod == node)
        .map(|p| (p.pid, Some(p.start_time)))
        .collect();
    process::stop_all(&stopped);
    state
        .processes
        .retain(|p| !(p.role == ROLE && p.pod == node));
    state.save()
}

/// Waits until every node's agent has announced itself.
fn wait_announced(state: &LabState) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = crate::inspect::live::LiveSource {
        kubeconfig: state.kubeconfig.clone(),
        ..Default::default()
    };
    loop {
        let agents = crate::agent::remote::Agents::connect(&live, DEFAULT_NAMESPACE)?;
        let missing: Vec<String> = state
            .topology
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .filter(|n| agents.reach(n).is_err())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::env(
                format!(
                    "the agents on {} did not announce themselves within 30 s",
                    missing.join(", ")
                ),
                Some(format!("see {}", state.dir.join("logs").display())),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
