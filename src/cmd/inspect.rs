//! `knetdoctor inspect node|pod|svc|ingress|dns`: a node's dataplane, or
//! one object and everything it links to.

use knetdoctor::access;
use knetdoctor::error::Result;
use knetdoctor::inspect;

use super::{emit, out, source, source_in};
use crate::cli::{InspectCommand, InspectNodeArgs, InspectObjectArgs, Output};

pub fn run(cmd: InspectCommand) -> Result<u8> {
    match cmd {
        InspectCommand::Node(a) => node(a),
        InspectCommand::Pod(a) => linked(a, inspect::chain::pod),
        InspectCommand::Svc(a) => linked(a, inspect::chain::service),
        InspectCommand::Ingress(a) => linked(a, inspect::chain::ingress),
        InspectCommand::Dns(a) => linked(a, inspect::chain::dns_name),
    }
}

/// `inspect node [NAME] [--netns NS]`: what the node's kernel holds.
fn node(a: InspectNodeArgs) -> Result<u8> {
    let src = source(&a.source);
    let node = if src.bundle.is_some() || src.live.is_some() {
        let (Some(name), None) = (a.node.as_deref(), &a.netns) else {
            return Err(knetdoctor::Error::usage(
                "--bundle, --kubeconfig and --context read a node by name, not a namespace",
                Some("name the node (`inspect node k8s-node-12 --kubeconfig FILE`) and leave out --netns".to_string()),
            ));
        };
        src.target()?.node(name)?
    } else {
        access::resolve(a.node.as_deref(), a.netns.as_deref(), &a.source.lab)?
    };
    let state = node.read()?;
    match a.output {
        Output::Json | Output::Yaml => emit(a.output, &state),
        Output::Text | Output::Wide => out(&inspect::render::node_text(&state, node.name())),
    }
    Ok(0)
}

type LinkedFn = fn(
    &knetdoctor::model::Cluster,
    &[(String, knetdoctor::dataplane::NodeState)],
    &[std::sync::Arc<knetdoctor::check::Finding>],
    &str,
    &str,
) -> Result<inspect::chain::LinkedView>;

/// `inspect pod|svc|ingress|dns`: the linked view; exit 1 when a link is broken.
fn linked(a: InspectObjectArgs, view: LinkedFn) -> Result<u8> {
    let reading = super::progress::Spinner::start("reading the cluster and its nodes");
    let g = source_in(&a.source, &a.namespace).target()?.gather(None)?;
    drop(reading);
    let ns = a.source.namespace(&a.namespace);
    let v = view(&g.cluster, &g.states, &g.findings, &a.name, &ns)?;
    match a.output {
        Output::Json | Output::Yaml => emit(a.output, &v),
        Output::Text | Output::Wide => out(&inspect::chain::text(&v)),
    }
    Ok(if v.lines.iter().any(|l| l.ok == Some(false)) {
        1
    } else if !v.unread.is_empty() {
        knetdoctor::check::INCOMPLETE
    } else {
        knetdoctor::check::exit_code(&v.findings)
    })
}
