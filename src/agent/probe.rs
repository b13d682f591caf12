//! `trace --probe` through the agents, the client's side: every node of
//! the path watches (captures, netfilter tracing) and says it is armed;
//! then the source's node sends (or this process does, when the source is
//! here); then the watches are told to stop, and each node's answer is
//! what it saw. Three rounds on one batch of requests and one watch.

use std::time::Duration;

use kube::api::{Patch, PatchParams};

use super::api::{Answer, NodeRead, NodeReadSpec, Phase, ProbeSpec, ReadKind};
use super::batch::{Batch, answered};
use super::remote::{Agents, READ_TIMEOUT, parse};
use crate::error::Result;
use crate::trace::probe::Remote;
use crate::trace::probe::station::NodeProbe;

fn armed(a: &Answer) -> bool {
    a.phase == Some(Phase::Armed)
}

fn request((node, spec): (String, ProbeSpec)) -> NodeRead {
    NodeRead::new(
        "",
        NodeReadSpec {
            node,
            read: ReadKind::Probe,
            capture: None,
            drops: None,
            probe: Some(spec),
        },
    )
}

impl Remote for Agents {
    fn reaches(&self, node: &str) -> std::result::Result<(), String> {
        self.reach(node).map_err(|why| why.explain())
    }

    fn probe(
        &self,
        parts: Vec<(String, ProbeSpec)>,
        when_armed: &mut dyn FnMut(),
    ) -> Vec<(String, Result<NodeProbe>)> {
        self.runtime().block_on(async {
            let (senders, watchers): (Vec<_>, Vec<_>) =
                parts.into_iter().partition(|(_, s)| s.send.is_some());
            let reply_wait = senders
                .iter()
                .filter_map(|(_, s)| s.send.as_ref())
                .map(|s| Duration::from_millis(u64::from(s.timeout_ms)))
                .max()
                .unwrap_or_default();
            let mut batch = Batch::<NodeRead>::new(self.wire(), "probe", self.take_timeout());
            let mut watching = batch
                .create(watchers.into_iter().map(request).collect())
                .await;
            // A node not armed in time is reported as not watched; the
            // probe goes on without it.
            batch.wait(&mut watching, armed, READ_TIMEOUT).await;
            when_armed();
            let mut sending = batch
                .create(senders.into_iter().map(request).collect())
                .await;
            batch
                .wait(&mut sending, answered, reply_wait + READ_TIMEOUT)
                .await;
            let stop = Patch::Merge(serde_json::json!({"spec": {"probe": {"stop": true}}}));
            for name in watching.iter().filter_map(|s| s.name()) {
                let _ = batch
                    .api()
                    .patch(name, &PatchParams::default(), &stop)
                    .await;
            }
            batch.wait(&mut watching, answered, READ_TIMEOUT).await;
            let mut out = Vec::new();
            for s in watching.into_iter().chain(sending) {
                let node = s.node.clone();
                let seen = batch
                    .body(s)
                    .await
                    .and_then(|b| parse::<NodeProbe>(&node, &b));
                out.push((node, seen));
            }
            batch.delete().await;
            out
        })
    }
}
