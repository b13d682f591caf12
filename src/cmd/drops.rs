//! `knetdoctor drops`: what the kernel drops, live: when, where (the node,
//! the pod namespace, the device), its reason, the function that freed the
//! packet and the packet's headers, then the counts by reason and place.
//! One kernel serves every network namespace on the machine (a lab's nodes
//! included): NODE narrows the watch to one node's namespaces. Through a
//! node's agent (--kubeconfig) the watch is bounded and printed at its end.

use std::io::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use knetdoctor::access;
use knetdoctor::agent::api::DropsSpec;
use knetdoctor::capture::decode::VXLAN_PORTS;
use knetdoctor::capture::drops::{self, KernelDrop};
use knetdoctor::capture::dropwatch::owners::{Owners, Place};
use knetdoctor::capture::dropwatch::{DropWatch, Selection};
use knetdoctor::error::{Error, Result};
use knetdoctor::lab::LabState;

use super::emit;
use crate::cli::{DropProtocol, DropsArgs, Output};

/// One drop as shown.
#[derive(Serialize)]
struct Shown {
    /// Seconds since the watch started.
    at: f64,
    reason: String,
    function: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    place: Option<Place>,
    netns_inode: u32,
    ifindex: u32,
    protocol: u16,
    /// The packet's headers, as `capture` prints them.
    packet: String,
}

impl Shown {
    fn new(d: &KernelDrop, place: Option<Place>, started_nanos: u64) -> Shown {
        Shown {
            at: d.ts_nanos.saturating_sub(started_nanos) as f64 / 1e9,
            reason: d.reason.clone(),
            function: d.function.clone(),
            place,
            netns_inode: d.netns,
            ifindex: d.ifindex,
            protocol: d.protocol,
            packet: d.frame(&VXLAN_PORTS).line(),
        }
    }

    /// `  0.512345 k8s-node-12 cni0  NETFILTER_DROP in nf_hook_slow: IP ...`.
    fn line(&self) -> String {
        let place = self
            .place
            .as_ref()
            .map(Place::label)
            .unwrap_or_else(|| format!("netns {} ifindex {}", self.netns_inode, self.ifindex));
        format!(
            "{:>10.6} {place}  {} in {}: {}",
            self.at, self.reason, self.function, self.packet
        )
    }
}

/// The namespaces NODE (or, without one, the lab's nodes) stand for, and
/// whether only those are shown.
fn owners(a: &DropsArgs) -> Result<(Owners, bool)> {
    let mut owners = Owners::default();
    match &a.node {
        Some(node) => {
            owners.add(node, access::resolve(Some(node), None, &a.lab)?.as_ref())?;
            Ok((owners, true))
        }
        None => {
            // The lab only names the drops' places: one that cannot be
            // read leaves them as namespace inodes.
            if let Ok(Some(state)) = LabState::load(&a.lab) {
                for n in &state.topology.nodes {
                    let node = access::InNamespace::lab_node(&state, &n.name);
                    let _ = owners.add(&n.name, &node);
                }
            }
            Ok((owners, false))
        }
    }
}

fn protocol(a: &DropsArgs) -> Option<u16> {
    match a.protocol {
        DropProtocol::Ipv4 => Some(0x0800),
        DropProtocol::Ipv6 => Some(0x86dd),
        DropProtocol::Arp => Some(0x0806),
        DropProtocol::Any => None,
    }
}

pub fn run(a: DropsArgs) -> Result<u8> {
    let shown = if a.agents.source().is_some() {
        through_agent(&a)?
    } else {
        here(&a)?
    };
    let counts = drops::tally(shown.iter().map(|(_, d)| d));
    let mut stdout = anstream::stdout();
    match a.output {
        Output::Json | Output::Yaml => emit(
            a.output,
            &serde_json::json!({
                "drops": shown.iter().map(|(s, _)| s).collect::<Vec<_>>(),
                "counts": counts,
            }),
        ),
        Output::Text | Output::Wide => {
            let _ = writeln!(stdout, "{} drops", shown.len());
            for c in &counts {
                let _ = writeln!(stdout, "{:>8} {} in {}", c.count, c.reason, c.function);
            }
        }
    }
    Ok(0)
}

/// Watches this machine's kernel, printing each drop as it comes.
fn here(a: &DropsArgs) -> Result<Vec<(Shown, KernelDrop)>> {
    let selection = Selection::new(protocol(a), a.filter.as_deref())?;
    let (owners, only_owned) = owners(a)?;
    let watch = DropWatch::start()?;
    let _ = writeln!(
        anstream::stderr(),
        "watching the kernel's drops{} for {:.1}s",
        a.node
            .as_ref()
            .map(|n| format!(" on {n}"))
            .unwrap_or_default(),
        a.duration.as_secs_f64()
    );
    let started = Instant::now();
    let started_nanos = knetdoctor::capture::dropwatch::now_nanos();
    let mut shown: Vec<(Shown, KernelDrop)> = Vec::new();
    let mut stdout = anstream::stdout();
    let mut take = |d: KernelDrop, shown: &mut Vec<(Shown, KernelDrop)>| {
        if !selection.keeps(&d) {
            return;
        }
        let place = owners.place(d.netns, d.ifindex);
        if only_owned && place.is_none() {
            return;
        }
        let s = Shown::new(&d, place, started_nanos);
        if a.output.is_text() {
            let _ = writeln!(stdout, "{}", s.line());
        }
        shown.push((s, d));
    };
    while let Some(left) = a.duration.checked_sub(started.elapsed()) {
        if let Ok(d) = watch
            .drops
            .recv_timeout(left.min(Duration::from_millis(100)))
        {
            take(d, &mut shown);
        }
    }
    for d in watch.finish() {
        take(d, &mut shown);
    }
    Ok(shown)
}

/// Has NODE's agent watch its kernel for the duration; prints what it saw.
fn through_agent(a: &DropsArgs) -> Result<Vec<(Shown, KernelDrop)>> {
    let Some(node) = &a.node else {
        return Err(Error::usage(
            "a watch through the agents names its node",
            Some("`knetdoctor drops k8s-node-12 --kubeconfig FILE`".to_string()),
        ));
    };
    let target = super::through_agents(&a.lab, &a.agents)?;
    let access = target.node(node)?;
    let Some(agent) = access.agent() else {
        return Err(Error::usage(
            format!("{node} is this machine: watch it without --kubeconfig"),
            None,
        ));
    };
    let spec = DropsSpec {
        seconds: a.duration.as_secs_f64().ceil() as u32,
        filter: a.filter.clone(),
        protocol: protocol(a),
    };
    // A bad filter is refused here, before the agent is asked.
    Selection::new(spec.protocol, spec.filter.as_deref())?;
    let _ = writeln!(
        anstream::stderr(),
        "watching the kernel's drops on {node} through its agent for {}s",
        spec.seconds
    );
    let waiting = super::progress::Spinner::start("waiting for the agent's watch");
    let mut answers = agent.agents().drops(std::slice::from_ref(node), &spec)?;
    drop(waiting);
    let seen = answers.remove(0).1?;
    if seen.not_sent > 0 {
        let _ = writeln!(
            anstream::stderr(),
            "{} more drops matched and were not sent (the agent sends the first {})",
            seen.not_sent,
            knetdoctor::capture::dropwatch::remote::MAX_DROPS
        );
    }
    let mut stdout = anstream::stdout();
    Ok(seen
        .drops
        .into_iter()
        .map(|p| {
            let s = Shown::new(&p.drop, Some(p.place), seen.started_nanos);
            if a.output.is_text() {
                let _ = writeln!(stdout, "{}", s.line());
            }
            (s, p.drop)
        })
        .collect())
}
