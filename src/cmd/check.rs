//! `knetdoctor check`: every broken link between what the API says and
//! what the nodes in reach do; exit 1 on findings.

use knetdoctor::error::Result;

use super::{emit, out, source};
use crate::cli::{CheckArgs, Output};

pub fn run(a: CheckArgs) -> Result<u8> {
    let g = source(&a.source).target()?.gather(a.node.as_deref())?;
    let names: Vec<String> = g.states.iter().map(|(n, _)| n.clone()).collect();
    match a.output {
        Output::Json | Output::Yaml => emit(
            a.output,
            &serde_json::json!({
                "nodes": names,
                "not_read": g.not_read,
                "findings": g.findings,
            }),
        ),
        Output::Text => out(&knetdoctor::check::text::render(
            &g.findings,
            &names,
            &g.not_read,
        )),
    }
    Ok(if g.findings.is_empty() { 0 } else { 1 })
}
