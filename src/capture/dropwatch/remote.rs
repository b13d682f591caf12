//! A bounded watch of the kernel's drops taken by a node's agent and
//! carried back through the API server: the same watch as a local one, the
//! drops placed on the agent's node (its kernel is its own) and filtered
//! there, so only what was asked for travels.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::owners::{Owners, PlacedDrop};
use super::{DropWatch, Selection};
use crate::access::NodeAccess;
use crate::agent::api::DropsSpec;
use crate::error::{Error, Result};

/// The longest watch an agent takes on, and the most drops it sends back
/// (about 400 bytes each in JSON; the rest are counted).
pub const MAX_SECONDS: u32 = 300;
pub const MAX_DROPS: usize = 10_000;

/// What an agent's watch saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteDrops {
    pub drops: Vec<PlacedDrop>,
    /// Drops that matched beyond [`MAX_DROPS`], not sent.
    pub not_sent: usize,
    /// When the watch started, nanoseconds since the epoch (the node's
    /// clock).
    pub started_nanos: u64,
    pub seconds: f64,
}

/// Refuses a watch beyond the bounds, before anything starts.
pub fn check_bounds(spec: &DropsSpec) -> Result<()> {
    if spec.seconds == 0 || spec.seconds > MAX_SECONDS {
        return Err(Error::usage(
            format!(
                "a watch of the drops through the agent takes 1 to {MAX_SECONDS} seconds ({} s asked)",
                spec.seconds
            ),
            Some("lower --duration, or run `knetdoctor drops` on the node itself".to_string()),
        ));
    }
    Ok(())
}

/// The agent's side: watches this node's kernel for `spec.seconds`.
pub fn drops_here(spec: &DropsSpec, node: &str, access: &dyn NodeAccess) -> Result<RemoteDrops> {
    check_bounds(spec)?;
    let selection = Selection::new(spec.protocol, spec.filter.as_deref())?;
    let mut owners = Owners::default();
    owners.add(node, access)?;
    let started_nanos = super::now_nanos();
    let watch = DropWatch::start()?;
    let started = Instant::now();
    let limit = Duration::from_secs(u64::from(spec.seconds));
    let mut out = RemoteDrops {
        drops: Vec::new(),
        not_sent: 0,
        started_nanos,
        seconds: 0.0,
    };
    let mut take = |d: crate::capture::drops::KernelDrop| {
        if !selection.keeps(&d) {
            return;
        }
        let Some(place) = owners.place(d.netns, d.ifindex) else {
            return;
        };
        if out.drops.len() < MAX_DROPS {
            out.drops.push(PlacedDrop { place, drop: d });
        } else {
            out.not_sent += 1;
        }
    };
    while let Some(left) = limit.checked_sub(started.elapsed()) {
        if let Ok(d) = watch
            .drops
            .recv_timeout(left.min(Duration::from_millis(100)))
        {
            take(d);
        }
    }
    for d in watch.finish() {
        take(d);
    }
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}
