//! `knetdoctor drops`: what the kernel drops, live: when, where (the node,
//! the pod namespace, the device), its reason, the function that freed the
//! packet and the packet's headers, then the counts by reason and place.
//! One kernel serves every network namespace on the machine (a lab's nodes
//! included): NODE narrows the watch to one node's namespaces.

use std::io::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use knetdoctor::access;
use knetdoctor::capture::decode::VXLAN_PORTS;
use knetdoctor::capture::drops::{self, KernelDrop};
use knetdoctor::capture::dropwatch::owners::{Owners, Place};
use knetdoctor::capture::dropwatch::{DropFilter, DropWatch};
use knetdoctor::error::Result;
use knetdoctor::lab::LabState;

use super::json;
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
            if let Some(state) = LabState::load(&a.lab)? {
                for n in &state.topology.nodes {
                    let node = access::InNamespace::lab_node(&state, &n.name);
                    let _ = owners.add(&n.name, &node);
                }
            }
            Ok((owners, false))
        }
    }
}

pub fn run(a: DropsArgs) -> Result<u8> {
    let protocol = match a.protocol {
        DropProtocol::Ipv4 => Some(0x0800),
        DropProtocol::Ipv6 => Some(0x86dd),
        DropProtocol::Arp => Some(0x0806),
        DropProtocol::Any => None,
    };
    let filter = a.filter.as_deref().map(DropFilter::new).transpose()?;
    let (owners, only_owned) = owners(&a)?;
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
    let started_nanos = now_nanos();
    let mut shown: Vec<(Shown, KernelDrop)> = Vec::new();
    let mut stdout = anstream::stdout();
    let mut take = |d: KernelDrop, shown: &mut Vec<(Shown, KernelDrop)>| {
        if protocol.is_some_and(|p| p != d.protocol)
            || filter.as_ref().is_some_and(|f| !f.matches(&d))
        {
            return;
        }
        let place = owners.place(d.netns, d.ifindex);
        if only_owned && place.is_none() {
            return;
        }
        let s = Shown {
            at: d.ts_nanos.saturating_sub(started_nanos) as f64 / 1e9,
            reason: d.reason.clone(),
            function: d.function.clone(),
            place,
            netns_inode: d.netns,
            ifindex: d.ifindex,
            protocol: d.protocol,
            packet: d.frame(&VXLAN_PORTS).line(),
        };
        if a.output == Output::Text {
            let _ = writeln!(stdout, "{}", line(&s));
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
    let counts = drops::tally(shown.iter().map(|(_, d)| d));
    let mut stdout = anstream::stdout();
    match a.output {
        Output::Json => json(&serde_json::json!({
            "drops": shown.iter().map(|(s, _)| s).collect::<Vec<_>>(),
            "counts": counts,
        })),
        Output::Text => {
            let _ = writeln!(stdout, "{} drops", shown.len());
            for c in &counts {
                let _ = writeln!(stdout, "{:>8} {} in {}", c.count, c.reason, c.function);
            }
        }
    }
    Ok(0)
}

/// `  0.512345 k8s-node-12 cni0  NETFILTER_DROP in nf_hook_slow: IP ...`.
fn line(s: &Shown) -> String {
    let place = s
        .place
        .as_ref()
        .map(Place::label)
        .unwrap_or_else(|| format!("netns {} ifindex {}", s.netns_inode, s.ifindex));
    format!(
        "{:>10.6} {place}  {} in {}: {}",
        s.at, s.reason, s.function, s.packet
    )
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
