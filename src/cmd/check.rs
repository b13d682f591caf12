//! `knetdoctor check`: every broken link between what the API says and
//! what the nodes in reach do; exit 1 on findings.

use knetdoctor::error::Result;

use super::{emit, out, source_in};
use crate::cli::{CheckArgs, Output};

pub fn run(a: CheckArgs) -> Result<u8> {
    let reading = super::progress::Spinner::start("reading the cluster and its nodes");
    let g = source_in(&a.source, &a.namespace)
        .target()?
        .gather(a.node.as_deref())?;
    drop(reading);
    let names: Vec<String> = g.states.iter().map(|(n, _)| n.clone()).collect();
    // -n: the namespace's findings; the others are counted, not hidden.
    // Each finding is held once here: taken out of its `Arc`, not copied.
    let all = g.findings.into_iter().map(knetdoctor::check::unshare);
    let (findings, elsewhere): (Vec<_>, Vec<_>) = match &a.namespace {
        Some(ns) => all.partition(|f| f.in_namespace(ns)),
        None => (all.collect(), Vec::new()),
    };
    match a.output {
        Output::Json | Output::Yaml => {
            let mut doc = serde_json::json!({
                "nodes": names,
                "not_read": g.not_read,
                // The lists the API server refused (each is also an
                // api-unreadable finding): kind, namespace, code, message.
                "unread": g.cluster.unread,
                "findings": findings,
            });
            if let Some(ns) = &a.namespace {
                doc["namespace"] = ns.clone().into();
                doc["outside_namespace"] = elsewhere.len().into();
            }
            emit(a.output, &doc)
        }
        Output::Text | Output::Wide => {
            let render = if a.output == Output::Wide {
                knetdoctor::check::text::render_wide
            } else {
                knetdoctor::check::text::render
            };
            let mut text = render(&findings, &names, &g.not_read);
            if let (Some(ns), false) = (&a.namespace, elsewhere.is_empty()) {
                text.push_str(&format!(
                    "{} more finding(s) name no object of namespace {ns} (nodes' dataplane, other namespaces): -A shows them\n",
                    elsewhere.len()
                ));
            }
            out(&text)
        }
    }
    Ok(knetdoctor::check::exit_code(&findings))
}
