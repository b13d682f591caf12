//! The lab's stand-in for its nodes' kubelets, one process for all of them
//! in the master's namespace. A real controller manager marks a node whose
//! kubelet stays silent NotReady after 40 s and its pods not ready, and the
//! endpoints go with them. So each node, with its own identity
//! (system:node:NAME, held to itself by the Node authorizer and the
//! NodeRestriction admission plugin), renews its Lease, reports Ready, and
//! puts its pods' status back to what the lab says they are — what a kubelet
//! does, and nothing a kubelet could not.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::error::{Error, Result};
use crate::inspect::live::{self, LiveSource};
use crate::lab::state::LabState;

/// How often each node reports (the kubelet's lease renewal interval).
const EVERY: Duration = Duration::from_secs(10);

const MANAGER: &str = "knetdoctor-lab-kubelet";

/// Runs until the lab is gone.
pub fn run(lab: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::env(format!("cannot start the async runtime: {e}"), None))?;
    rt.block_on(async {
        let state = LabState::require(lab)?;
        let started = k8s_openapi::jiff::Timestamp::now();
        let mut nodes = Vec::new();
        for n in &state.topology.nodes {
            let src = LiveSource {
                kubeconfig: Some(super::node_kubeconfig(&state, &n.name)),
                ..Default::default()
            };
            // The server may still be settling: try until the lab is gone.
            let client = loop {
                match live::client(&src).await {
                    Ok((c, _)) => break c,
                    Err(e) => {
                        tracing::warn!("{}: {e}", n.name);
                        if LabState::load(lab).ok().flatten().is_none() {
                            return Ok(());
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            nodes.push((n.name.clone(), client));
        }
        loop {
            let Ok(Some(state)) = LabState::load(lab) else {
                return Ok(());
            };
            let cluster = crate::lab::sync::current_cluster(&state);
            for (node, client) in &nodes {
                if let Err(e) = report(client, node, &cluster, started).await {
                    tracing::warn!("{node}: {e}");
                }
            }
            tokio::time::sleep(EVERY).await;
        }
    })
}

async fn report(
    client: &kube::Client,
    node: &str,
    cluster: &crate::model::Cluster,
    started: k8s_openapi::jiff::Timestamp,
) -> std::result::Result<(), kube::Error> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some("kube-node-lease".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    };
    leases
        .patch(
            node,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await?;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            node,
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "knetdoctor lab: the node's stand-in kubelet is reporting",
                "lastHeartbeatTime": now.to_string(),
                "lastTransitionTime": started.to_string(),
            }]}})),
        )
        .await?;
    for want in cluster.pods_on(node) {
        let (Some(ns), Some(name)) = (&want.metadata.namespace, &want.metadata.name) else {
            continue;
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let Some(have) = pods.get_opt(name).await? else {
            continue;
        };
        if ready(&have) != ready(want) {
            pods.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Strategic(json!({ "status": want.status })),
            )
            .await?;
        }
    }
    Ok(())
}

fn ready(p: &Pod) -> Option<&str> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}
