//! `knetdoctor trace SRC DST [--probe]`: the path hop by hop over the
//! real node state, and with `--probe` a real packet along it.

use knetdoctor::error::{Error, Result};
use knetdoctor::trace::{probe, resolve, sim, text};

use super::{emit, out, source_in};
use crate::cli::{Output, TraceArgs};

pub fn run(a: TraceArgs) -> Result<u8> {
    let target = source_in(&a.source, &a.namespace).target()?;
    let reading = super::progress::Spinner::start("reading the cluster and its nodes");
    let g = target.gather(None)?;
    drop(reading);
    let ns = a.source.namespace(&a.namespace);
    let src = resolve::resolve(&g.cluster, &a.src, &ns)?;
    let dst = resolve::resolve(&g.cluster, &a.dst, &ns)?;
    let world = sim::World::new(&g.cluster, &g.states, &g.findings);
    let t = sim::trace(&world, &src, &dst, a.proto, a.port);
    if !a.probe {
        match a.output {
            Output::Json | Output::Yaml => emit(a.output, &t),
            Output::Text | Output::Wide => out(&text::render(&t)),
        }
        return Ok(if t.reachable { 0 } else { 1 });
    }
    if !(0.05..=60.0).contains(&a.timeout.as_secs_f64()) {
        return Err(Error::usage(
            format!("--timeout {:?} is out of range", a.timeout),
            Some("give 0.05 to 60 seconds".to_string()),
        ));
    }
    let opts = target.probe_options(a.timeout, a.size)?;
    let probing = super::progress::Spinner::start("probing the path");
    let p = probe::run(&t, &src, &opts)?;
    drop(probing);
    match a.output {
        Output::Json | Output::Yaml => emit(a.output, &serde_json::json!({"trace": t, "probe": p})),
        Output::Text | Output::Wide => out(&format!(
            "{}{}",
            text::render(&t),
            probe::text::render_probe(&p)
        )),
    }
    Ok(if p.judgement.reached { 0 } else { 1 })
}
