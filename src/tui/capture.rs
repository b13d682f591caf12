//! The capture view's engine: `capture`'s live capture on a node's cni0,
//! flannel.1 and eth0 in a thread of its own, into a bounded buffer the
//! render thread only reads — each frame decoded once (VXLAN down to the
//! inner packet) and, when grouped, one packet followed across the
//! interfaces by `capture`'s correlation. Beside the frames, what the
//! kernel drops on the node (its namespace and its pods'), with its reason
//! and the function, from the drop watch. Pausing keeps the buffer as it
//! is; `w` writes the frames to a pcapng file.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::capture::drops::KernelDrop;
use crate::capture::dropwatch::DropWatch;
use crate::capture::dropwatch::owners::Owners;
use crate::capture::{correlate, decode, file, live};
use crate::dataplane::Netns;
use crate::error::Result;

/// The interfaces a node's capture opens: the pods' side, the overlay and
/// the underlay.
pub const INTERFACES: [&str; 3] = ["cni0", "flannel.1", "eth0"];

/// Frames kept; older ones fall off the front.
pub const CAPACITY: usize = 10_000;
/// Drops kept (the counts by reason count them all).
pub const DROPS_KEPT: usize = 200;

/// How often the groups are followed again while frames arrive.
const REGROUP: Duration = Duration::from_millis(250);

/// One captured frame and its decoded line.
#[derive(Debug, Clone)]
pub struct Packet {
    pub iface: String,
    /// Seconds since the capture started.
    pub at: f64,
    /// The kernel's timestamp since the epoch (for the pcapng file).
    pub ts: Duration,
    pub len: u32,
    pub data: Vec<u8>,
    /// `iface  at  line`, as `knetdoctor capture` prints it.
    pub line: String,
    /// What identifies the packet across interfaces (its key, the VNI it
    /// was carried in, the ICMP kind), kept from the one decode.
    follow: Option<(
        correlate::PacketKey,
        Option<correlate::Outer>,
        Option<decode::IcmpKind>,
    )>,
}

impl Packet {
    /// Decodes the frame once: its line and what follows it.
    pub fn new(iface: String, at: f64, ts: Duration, len: u32, data: Vec<u8>) -> Packet {
        let f = decode::decode(&data, &decode::VXLAN_PORTS);
        Packet {
            line: format!("{iface:<10} {at:>9.6}  {}", f.line()),
            follow: correlate::frame_key(&f)
                .map(|(key, vni)| (key, vni, correlate::icmp_kind(&f).cloned())),
            iface,
            at,
            ts,
            len,
            data,
        }
    }
}

/// What the capture view shows.
#[derive(Debug, Default)]
pub struct Buffer {
    pub node: String,
    /// Interface labels, in the order the pcapng declares them.
    pub interfaces: Vec<String>,
    pub packets: VecDeque<Packet>,
    /// One line per packet followed across interfaces (when `grouped`).
    pub groups: Vec<String>,
    /// Frames not kept: seen while paused, or beyond the capacity.
    pub dropped: u64,
    pub paused: bool,
    pub grouped: bool,
    /// Why the capture stopped or could not start.
    pub error: Option<String>,
    /// Set once every interface is open, until the capture stops.
    pub running: bool,
    /// What the kernel dropped on the node, newest last: `at  place
    /// REASON in function: packet`.
    pub drops: VecDeque<String>,
    /// How many drops, by reason and function, most first.
    pub drop_counts: Vec<crate::capture::drops::DropCount>,
    /// Why the kernel's drops are not shown.
    pub drops_note: Option<String>,
}

impl Buffer {
    pub(crate) fn push(&mut self, p: Packet) {
        if self.paused {
            self.dropped += 1;
            return;
        }
        if self.packets.len() == CAPACITY {
            self.packets.pop_front();
            self.dropped += 1;
        }
        self.packets.push_back(p);
    }

    /// Adds a drop seen `at` seconds into the capture, at `place`.
    pub(crate) fn push_drop(&mut self, at: f64, place: &str, d: &KernelDrop) {
        if self.paused {
            return;
        }
        if self.drops.len() == DROPS_KEPT {
            self.drops.pop_front();
        }
        self.drops.push_back(format!(
            "{at:>9.6}  {place}  {} in {}: {}",
            d.reason,
            d.function,
            d.frame(&decode::VXLAN_PORTS).line()
        ));
        match self
            .drop_counts
            .iter_mut()
            .find(|c| c.reason == d.reason && c.function == d.function)
        {
            Some(c) => c.count += 1,
            None => self.drop_counts.push(crate::capture::drops::DropCount {
                reason: d.reason.clone(),
                function: d.function.clone(),
                count: 1,
            }),
        }
        self.drop_counts.sort_by_key(|c| std::cmp::Reverse(c.count));
    }

    /// Follows the buffered packets across interfaces (from the keys kept
    /// at capture: nothing is decoded again).
    pub fn regroup(&mut self) {
        let mut c = correlate::Correlator::default();
        for p in &self.packets {
            if let Some((key, vni, icmp)) = &p.follow {
                c.push(&p.iface, p.at, *key, *vni, icmp.as_ref());
            }
        }
        self.groups = c.groups().iter().map(correlate::group_line).collect();
    }

    /// Writes the buffer to `path` as pcapng; returns how many frames.
    pub fn write(&self, path: &Path) -> Result<usize> {
        let mut out = file::PcapNgOut::create(path, &self.interfaces, 262_144)?;
        for p in &self.packets {
            out.write(&p.iface, p.ts, p.len, &p.data)?;
        }
        out.finish()?;
        Ok(self.packets.len())
    }
}

/// A capture running in its own thread.
pub struct Session {
    pub buffer: Arc<Mutex<Buffer>>,
    stop: Arc<AtomicBool>,
}

impl Session {
    /// Starts capturing on the node's interfaces, in the namespace
    /// `access` says it has (a lab node's, this machine's when it is the
    /// node); a node out of reach is an error on the screen.
    pub fn start(node: &str, source: crate::access::Source) -> Session {
        let buffer = Arc::new(Mutex::new(Buffer {
            node: node.to_string(),
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, halt, node) = (buffer.clone(), stop.clone(), node.to_string());
        std::thread::spawn(move || {
            let mut owners = Owners::default();
            let netns = source.target().and_then(|t| t.node(&node)).and_then(|a| {
                // Drops are placed in its namespaces (its own, its pods').
                let _ = owners.add(&node, a.as_ref());
                a.netns()
            });
            if let Err(e) = netns.and_then(|netns| run(&netns, &owners, &b, &halt))
                && let Ok(mut b) = b.lock()
            {
                b.error = Some(e.to_string());
            }
            if let Ok(mut b) = b.lock() {
                b.running = false;
            }
        });
        Session { buffer, stop }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(netns: &Netns, owners: &Owners, buffer: &Mutex<Buffer>, stop: &AtomicBool) -> Result<()> {
    let names: Vec<String> = INTERFACES.iter().map(|s| s.to_string()).collect();
    let spec = live::Spec {
        interfaces: live::Iface::in_netns(netns, &names, None),
        filter: None,
        snaplen: 262_144,
        queue: 65_536,
    };
    let running = live::start(&spec)?;
    let drops = DropWatch::start();
    if let Ok(mut b) = buffer.lock() {
        b.interfaces = names;
        b.running = true;
        b.drops_note = drops.as_ref().err().map(|e| e.to_string());
    }
    let since_start = |ts_nanos: u64| {
        Duration::from_nanos(ts_nanos)
            .saturating_sub(running.started)
            .as_secs_f64()
    };
    let mut regrouped = Instant::now();
    let mut fresh = false;
    while !stop.load(Ordering::Relaxed) {
        let first = running.recv_timeout(Duration::from_millis(50));
        // Decode outside the lock; take whatever else is waiting too (up
        // to 16 batches, about 4,000 frames).
        let batch: Vec<Packet> = first
            .into_iter()
            .chain(std::iter::from_fn(|| running.try_recv().ok()).take(15))
            .flatten()
            .map(|c| {
                let at = c.at.as_secs_f64();
                Packet::new(c.iface, at, c.ts, c.len, c.data)
            })
            .collect();
        let dropped: Vec<(f64, String, KernelDrop)> = drops
            .as_ref()
            .map(|w| {
                w.drops
                    .try_iter()
                    .filter_map(|d| {
                        let place = owners.place(d.netns, d.ifindex)?;
                        Some((since_start(d.ts_nanos), place.within(), d))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let Ok(mut b) = buffer.lock() else {
            break;
        };
        fresh |= !batch.is_empty() && !b.paused;
        for p in batch {
            b.push(p);
        }
        for (at, place, d) in &dropped {
            b.push_drop(*at, place, d);
        }
        if b.grouped && fresh && regrouped.elapsed() >= REGROUP {
            b.regroup();
            regrouped = Instant::now();
            fresh = false;
        } else if b.grouped && b.groups.is_empty() && !b.packets.is_empty() {
            b.regroup();
        }
    }
    running.finish();
    Ok(())
}

/// Where `w` writes: `knetdoctor-NODE-SECONDS.pcapng` in the working
/// directory.
pub fn pcapng_path(node: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from(format!("knetdoctor-{node}-{secs}.pcapng"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::test_frames::{icmp_echo, in_vxlan};

    fn packet(iface: &str, at: f64, data: Vec<u8>) -> Packet {
        let len = data.len() as u32;
        Packet::new(
            iface.into(),
            at,
            Duration::from_secs_f64(1_700_000_000.0 + at),
            len,
            data,
        )
    }

    #[test]
    fn one_packet_is_followed_from_the_bridge_into_vxlan_and_written_back() {
        let inner = icmp_echo([10, 2, 2, 50], [10, 2, 0, 42], 7);
        let mut b = Buffer {
            interfaces: INTERFACES.iter().map(|s| s.to_string()).collect(),
            grouped: true,
            ..Default::default()
        };
        b.push(packet("cni0", 0.000_010, inner.clone()));
        b.push(packet("flannel.1", 0.000_020, inner.clone()));
        b.push(packet("eth0", 0.000_030, in_vxlan(&inner, 1)));
        assert!(
            b.packets[2].line.contains("10.2.2.50"),
            "{}",
            b.packets[2].line
        );
        b.regroup();
        assert_eq!(b.groups.len(), 1, "{:?}", b.groups);
        let g = &b.groups[0];
        assert!(
            g.contains("cni0") && g.contains("flannel.1") && g.contains("eth0[vxlan 1]"),
            "{g}"
        );
        b.paused = true;
        b.push(packet("cni0", 0.1, inner));
        assert_eq!((b.packets.len(), b.dropped), (3, 1));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcapng");
        assert_eq!(b.write(&path).unwrap(), 3);
        let back = file::read(&path).unwrap();
        let ifaces: Vec<&str> = back.iter().map(|f| f.iface.as_str()).collect();
        assert_eq!(ifaces, ["cni0", "flannel.1", "eth0"]);
        assert_eq!(back[2].data, b.packets[2].data);
    }
}
