//! The state an agent publishes for the dashboard: its node's `NodeState`,
//! compressed, in `NodePayload` objects `state-<node>-<i>` (part 0 carries
//! the descriptor), re-written when the kernel reports a change and at
//! least every `every` (iptables sends no notification), never more often
//! than every [`MIN_GAP`], and only when it changed. A dashboard then
//! lists one kind and watches it instead of asking every node.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};

use super::api::{NODE_LABEL, NodePayload, NodePayloadSpec, PUBLISHED_LABEL, published_name};
use super::payload;
use super::wire::{Wire, refused};
use crate::access::{InNamespace, NodeAccess};
use crate::dataplane::Netns;
use crate::error::{Error, Result};

/// The shortest time between two publications: a repair of thousands of
/// entries is one publication, not thousands.
pub const MIN_GAP: Duration = Duration::from_millis(250);

/// Publishes `node`'s state on a thread of its own until the process ends.
pub fn spawn(rt: tokio::runtime::Handle, wire: Wire, node: InNamespace, every: Duration) {
    std::thread::spawn(move || {
        let (changed_tx, changed) = mpsc::channel();
        if let Err(e) = crate::dataplane::notify::spawn(Netns::Current, changed_tx.into()) {
            tracing::warn!("no kernel notifications ({e}): the node is published every {every:?}");
        }
        let mut last: Option<String> = None;
        let mut parts_written = 0u32;
        loop {
            let started = Instant::now();
            match publish_once(&rt, &wire, &node, &mut last, &mut parts_written) {
                Ok(()) => {}
                Err(e) => tracing::warn!("publishing the node's state: {e}"),
            }
            let _ = changed.recv_timeout(every);
            // A burst of notifications is one read.
            std::thread::sleep(MIN_GAP.saturating_sub(started.elapsed()));
            while changed.try_recv().is_ok() {}
        }
    });
}

fn publish_once(
    rt: &tokio::runtime::Handle,
    wire: &Wire,
    node: &InNamespace,
    last: &mut Option<String>,
    parts_written: &mut u32,
) -> Result<()> {
    let state = node.read()?;
    let body = serde_json::to_vec(&state).map_err(|e| Error::internal(e.to_string()))?;
    let enc = payload::encode(&body);
    if last.as_deref() == Some(enc.payload.sha256.as_str()) {
        return Ok(());
    }
    let name = node.name().unwrap_or_default().to_string();
    // Published states always travel as parts (one, mostly): the
    // descriptor on part 0 then carries no second copy of the bytes.
    let (data, descriptor) = enc.into_parts();
    let api = wire.api::<NodePayload>();
    rt.block_on(async {
        for (i, d) in data.iter().enumerate() {
            let part = NodePayload {
                metadata: ObjectMeta {
                    name: Some(published_name(&name, i as u32)),
                    labels: Some(
                        [
                            (NODE_LABEL.to_string(), name.clone()),
                            (PUBLISHED_LABEL.to_string(), name.clone()),
                        ]
                        .into(),
                    ),
                    ..Default::default()
                },
                spec: NodePayloadSpec {
                    request: published_name(&name, 0),
                    index: i as u32,
                    data: d.clone(),
                    payload: (i == 0).then(|| descriptor.clone()),
                },
            };
            put(&api, part).await?;
        }
        // Parts a larger state left behind.
        for i in data.len() as u32..*parts_written {
            let _ = api
                .delete(&published_name(&name, i), &DeleteParams::default())
                .await;
        }
        Ok(())
    })?;
    *parts_written = data.len() as u32;
    *last = Some(descriptor.sha256);
    Ok(())
}

/// Creates or replaces one part.
async fn put(api: &kube::Api<NodePayload>, mut part: NodePayload) -> Result<()> {
    let name = part.metadata.name.clone().unwrap_or_default();
    match api
        .get_opt(&name)
        .await
        .map_err(|e| refused(e, "read the published state"))?
    {
        Some(old) => {
            part.metadata.resource_version = old.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &part).await
        }
        None => api.create(&PostParams::default(), &part).await,
    }
    .map(drop)
    .map_err(|e| refused(e, "publish the node's state (nodepayloads)"))
}

/// Withdraws `node`'s published state (the agent is stopping).
pub async fn withdraw(wire: &Wire, node: &str) {
    let _ = wire
        .api::<NodePayload>()
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&format!("{PUBLISHED_LABEL}={node}")),
        )
        .await;
}
