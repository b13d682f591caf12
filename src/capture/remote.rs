//! A bounded capture taken by a node's agent and carried back through the
//! API server: the agent captures on its own node (the same libpcap
//! capture as a local one), the frames travel as pcapng, and the client
//! prints them as a local capture prints its frames.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::live::{self, IfaceStats};
use crate::agent::api::CaptureSpec;
use crate::dataplane::Netns;
use crate::error::{Error, Result};

/// The most a capture request may ask for: an agent is not a packet
/// recorder, and the answer must fit in a few payload parts.
pub const MAX_FRAMES: u32 = 100_000;
pub const MAX_SECONDS: u32 = 300;

/// What an agent's capture saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteCapture {
    /// The frames, one pcapng interface per captured interface.
    #[serde(with = "crate::agent::payload::base64_bytes")]
    pub pcapng: Vec<u8>,
    pub stats: Vec<IfaceStats>,
    /// How long it ran.
    pub seconds: f64,
}

/// Refuses a capture beyond the bounds, before anything starts.
pub fn check_bounds(spec: &CaptureSpec) -> Result<()> {
    if spec.count == 0 || spec.count > MAX_FRAMES || spec.seconds == 0 || spec.seconds > MAX_SECONDS
    {
        return Err(Error::usage(
            format!(
                "a capture through the agent takes 1 to {MAX_FRAMES} frames and 1 to {MAX_SECONDS} seconds ({} frames, {} s asked)",
                spec.count, spec.seconds
            ),
            Some("lower -c / --duration, or run the capture on the node itself".to_string()),
        ));
    }
    Ok(())
}

/// The agent's side: captures on this node until `count` frames or
/// `seconds` pass, whichever first.
pub fn capture_here(spec: &CaptureSpec) -> Result<RemoteCapture> {
    check_bounds(spec)?;
    let interfaces = live::Iface::in_netns(&Netns::Current, &spec.interfaces, None);
    let names: Vec<String> = interfaces.iter().map(|i| i.label.clone()).collect();
    let running = live::start(&live::Spec {
        interfaces,
        filter: spec.filter.clone(),
        snaplen: spec.snaplen,
        queue: 65536,
    })?;
    let started = Instant::now();
    let limit = Duration::from_secs(u64::from(spec.seconds));
    let mut frames = Vec::new();
    let count = spec.count as usize;
    while frames.len() < count && started.elapsed() < limit {
        match running.recv_timeout(Duration::from_millis(50)) {
            Ok(batch) => frames.extend(batch.into_iter().take(count - frames.len())),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = running.finish();
    let pcapng = super::file::pcapng_bytes(
        &names,
        spec.snaplen.max(0) as u32,
        frames
            .iter()
            .map(|f| (f.iface.as_str(), f.ts, f.len, f.data.as_slice())),
    )?;
    Ok(RemoteCapture {
        pcapng,
        stats,
        seconds,
    })
}
