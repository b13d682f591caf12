//! `knetdoctor agent`: serve this node's requests, or print the manifest.

use knetdoctor::agent::{manifest, serve};
use knetdoctor::error::{Error, Result};
use knetdoctor::inspect::live::LiveSource;

use super::out;
use crate::cli::{AgentArgs, AgentCommand};

pub fn run(a: AgentArgs) -> Result<u8> {
    if let Some(AgentCommand::Manifest { image, namespace }) = a.command {
        out(&manifest::render(&manifest::Options { image, namespace }));
        return Ok(0);
    }
    let node = a.node.ok_or_else(|| {
        Error::usage(
            "the agent needs the name of the node it runs on",
            Some("pass --node NAME (the DaemonSet sets NODE_NAME from spec.nodeName)".to_string()),
        )
    })?;
    serve::run(serve::Options {
        node,
        namespace: a.namespace,
        live: LiveSource {
            kubeconfig: a.kubeconfig,
            context: a.context,
            ..Default::default()
        },
        pod: a.pod,
        heartbeat: a.heartbeat,
        pod_netns: a.pod_netns,
        ttl: a.ttl,
        state_dir: a.state_dir,
        publish_every: a.publish_every,
    })
}
