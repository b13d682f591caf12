//! What client and agent both do with the API server: the typed handles on
//! the agent's kinds in its namespace, payload parts written and read back,
//! and the API's refusals turned into errors that say what to do.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, Resource, ResourceExt};

use super::api::{NODE_LABEL, NodePayload, NodePayloadSpec, Payload, REQUEST_LABEL};
use super::payload;
use crate::error::{Error, Result};

/// The agent's kinds in one namespace, through one client.
#[derive(Clone)]
pub struct Wire {
    pub client: Client,
    pub namespace: String,
}

impl Wire {
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Writes `parts` of the payload answering `owner` (deleted with it by
    /// the garbage collector, and by the agent's clean-up after a TTL).
    pub async fn put_parts<K>(&self, owner: &K, node: &str, parts: &[String]) -> Result<()>
    where
        K: Resource<DynamicType = ()>,
    {
        let owner_ref = OwnerReference {
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
            name: owner.name_any(),
            uid: owner.uid().unwrap_or_default(),
            ..Default::default()
        };
        self.write_parts(&owner.name_any(), node, parts, Some(owner_ref))
            .await
    }

    /// Writes the `parts` of a request `request` about to be created (the
    /// request does not exist yet, so nothing owns them: the client deletes
    /// them when answered, the agent after its TTL).
    pub async fn put_parts_named(&self, request: &str, node: &str, parts: &[String]) -> Result<()> {
        self.write_parts(request, node, parts, None).await
    }

    async fn write_parts(
        &self,
        request: &str,
        node: &str,
        parts: &[String],
        owner: Option<OwnerReference>,
    ) -> Result<()> {
        let api = self.api::<NodePayload>();
        for (i, data) in parts.iter().enumerate() {
            let part = NodePayload {
                metadata: ObjectMeta {
                    name: Some(payload::part_name(request, i as u32)),
                    labels: Some(
                        [
                            (REQUEST_LABEL.to_string(), request.to_string()),
                            (NODE_LABEL.to_string(), node.to_string()),
                        ]
                        .into(),
                    ),
                    owner_references: owner.clone().map(|o| vec![o]),
                    ..Default::default()
                },
                spec: NodePayloadSpec {
                    request: request.to_string(),
                    index: i as u32,
                    data: data.clone(),
                    payload: None,
                },
            };
            api.create(&PostParams::default(), &part)
                .await
                .map_err(|e| refused(e, "write a payload's parts (nodepayloads)"))?;
        }
        Ok(())
    }

    /// Deletes the parts of `request`'s payload.
    pub async fn delete_parts(&self, request: &str) {
        let _ = self
            .api::<NodePayload>()
            .delete_collection(
                &kube::api::DeleteParams::background(),
                &ListParams::default().labels(&format!("{REQUEST_LABEL}={request}")),
            )
            .await;
    }

    /// The body of `request`'s payload, its parts read back when it has any.
    pub async fn body(&self, request: &str, p: &Payload) -> Result<Vec<u8>> {
        if p.inline.is_some() {
            return payload::decode(p, &[]);
        }
        let list = self
            .api::<NodePayload>()
            .list(&ListParams::default().labels(&format!("{REQUEST_LABEL}={request}")))
            .await
            .map_err(|e| refused(e, "read an answer's parts (nodepayloads)"))?;
        let mut parts: Vec<(u32, String)> = list
            .items
            .into_iter()
            .map(|p| (p.spec.index, p.spec.data))
            .collect();
        parts.sort_by_key(|(i, _)| *i);
        let data: Vec<String> = parts.into_iter().map(|(_, d)| d).collect();
        payload::decode(p, &data)
    }
}

/// An API error as the person at the terminal needs it: refused (403)
/// names the ClusterRole that grants `what`; a missing kind (404 on the
/// kind) says the agent is not installed.
pub fn refused(e: kube::Error, what: &str) -> Error {
    match &e {
        kube::Error::Api(s) if s.is_forbidden() => Error::env(
            format!("the API server refused to let you {what}: {}", s.message),
            Some(
                "ask for the knetdoctor-viewer ClusterRole (check, inspect, trace, capture) or knetdoctor-repairer (repair) to be bound to you; `knetdoctor agent manifest` defines both"
                    .to_string(),
            ),
        ),
        kube::Error::Api(s) if s.is_not_found() && s.details.as_ref().is_none_or(|d| d.name.is_empty()) => {
            not_installed(&s.message)
        }
        _ => Error::env(
            format!("the API server did not let the agent's request through ({what}): {e}"),
            Some("check --kubeconfig / --context (`kubectl cluster-info` should work with the same settings)".to_string()),
        ),
    }
}

/// The agent's kinds are not served: nothing installed them.
pub fn not_installed(detail: &str) -> Error {
    Error::env(
        format!("the knetdoctor agent is not installed in this cluster ({detail})"),
        Some(install_hint()),
    )
}

/// How to install the agent, said wherever a node could not be read.
pub fn install_hint() -> String {
    "install it with `knetdoctor agent manifest | kubectl apply -f -` (README: \"Reaching a real cluster\")".to_string()
}
