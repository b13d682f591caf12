//! Live capture on several interfaces at once — of one node, or of several
//! nodes in one capture — with libpcap (the pcap crate): one thread per
//! interface joins its node's network namespace (all namespaces share one
//! clock, so timestamps compare across nodes), opens the interface with
//! a 32 MiB ring and hands frames to the reader in batches of up to 256
//! (what the ring holds at the moment), at most `queue` frames on their
//! way. A consumer that falls behind holds the capture back, so frames
//! wait in the kernel's ring; what overflows it the kernel counts, per
//! interface.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError, channel, sync_channel,
};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::dataplane::Netns;
use crate::error::{Error, Result};

/// Frames handed to the reader at once, at most.
const BATCH: usize = 256;

/// How long the kernel holds a partly filled block of frames (ms).
const BLOCK_TIMEOUT_MS: i32 = 10;

/// The kernel ring of each interface's capture: about 50,000 full-size
/// frames, a second of a saturated 1 Gb/s link (tcpdump's default is 2 MiB).
const RING_BYTES: i32 = 32 << 20;

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The interface's label: its name, or `node/name` when several nodes
    /// are captured.
    pub iface: String,
    /// Which of the spec's interfaces it came from (its place in
    /// `Spec::interfaces`), for callers that know them by more than a label.
    pub index: usize,
    /// Since the capture started, by the kernel's timestamp of the frame (not
    /// when this process read it: interfaces are read by different threads).
    pub at: Duration,
    /// The kernel's timestamp, since the epoch (for capture files).
    pub ts: Duration,
    /// On-the-wire length (the data may be cut at the snaplen).
    pub len: u32,
    pub data: Vec<u8>,
}

/// What one interface's capture saw and lost.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct IfaceStats {
    pub iface: String,
    /// Frames the kernel handed to libpcap.
    pub received: u32,
    /// Dropped by the kernel (buffer full).
    pub kernel_dropped: u32,
    /// Dropped by the interface or driver.
    pub if_dropped: u32,
    /// Given up here because the reader stopped reading (a reader that
    /// is merely slow holds the capture back; the kernel's ring takes up
    /// the slack and counts what overflows it as kernel drops).
    pub queue_dropped: u64,
}

/// One interface to capture on.
#[derive(Debug, Clone)]
pub struct Iface {
    /// The namespace that holds it.
    pub netns: Netns,
    /// Its name in that namespace.
    pub name: String,
    /// The node it belongs to, when captures span nodes.
    pub node: Option<String>,
    /// How its frames are labelled: the name, or `node/name`.
    pub label: String,
}

impl Iface {
    /// `names` in one namespace, labelled `prefix/name` (or just the name).
    pub fn in_netns(netns: &Netns, names: &[String], prefix: Option<&str>) -> Vec<Iface> {
        names
            .iter()
            .map(|n| Iface {
                netns: netns.clone(),
                name: n.clone(),
                node: prefix.map(str::to_string),
                label: prefix
                    .map(|p| format!("{p}/{n}"))
                    .unwrap_or_else(|| n.clone()),
            })
            .collect()
    }
}

/// What to capture.
#[derive(Debug, Clone)]
pub struct Spec {
    pub interfaces: Vec<Iface>,
    /// A BPF filter (tcpdump syntax).
    pub filter: Option<String>,
    pub snaplen: i32,
    /// Frames on their way from the capture to the reader, at most: the
    /// interfaces' threads wait (and the kernel's rings fill) while the
    /// reader has this many to take.
    pub queue: usize,
}

/// A running capture: read frames with [`Running::recv_timeout`] (in
/// batches, each interface's in order), then [`Running::finish`].
pub struct Running {
    frames: Receiver<Vec<Captured>>,
    /// Frames sent and not yet received (the workers wait while it is at
    /// the spec's `queue`).
    queued: Arc<AtomicUsize>,
    /// When the capture started, since the epoch: frames' `at` counts
    /// from it.
    pub started: Duration,
    stop: Arc<AtomicBool>,
    threads: Vec<(String, Arc<AtomicU64>, JoinHandle<Result<IfaceStats>>)>,
}

/// Starts capturing; returns once every interface is open (or fails with
/// the first that cannot be opened).
pub fn start(spec: &Spec) -> Result<Running> {
    let (tx, rx) = channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Frames carry the kernel's wall-clock timestamps; measure from here.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut threads = Vec::new();
    let (ready_tx, ready_rx) =
        sync_channel::<std::result::Result<(), String>>(spec.interfaces.len());
    for (index, iface) in spec.interfaces.iter().enumerate() {
        let dropped = Arc::new(AtomicU64::new(0));
        let netns = iface.netns.clone();
        let name = iface.label.clone();
        let worker = Worker {
            index,
            iface: iface.name.clone(),
            label: iface.label.clone(),
            filter: spec.filter.clone(),
            snaplen: spec.snaplen,
            started,
            queue: Queue {
                tx: tx.clone(),
                queued: queued.clone(),
                bound: spec.queue.max(1),
            },
            stop: stop.clone(),
            dropped: dropped.clone(),
            ready: ready_tx.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("capture-{}", iface.name))
            .spawn(move || -> Result<IfaceStats> { netns.run(move || worker.run())? })
            .map_err(|e| Error::env(format!("cannot start a capture thread: {e}"), None))?;
        threads.push((name, dropped, handle));
    }
    drop(ready_tx);
    let running = Running {
        frames: rx,
        queued,
        started,
        stop,
        threads,
    };
    for _ in 0..spec.interfaces.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                running.stop.store(true, Ordering::Relaxed);
                let _ = running.finish();
                return Err(Error::env(
                    e,
                    Some(
                        "run as root; `knetdoctor inspect node` lists the node's interfaces"
                            .to_string(),
                    ),
                ));
            }
            // A thread ended without opening its interface: it could not
            // enter the namespace (missing, or not a namespace at all).
            Err(_) => return Err(running.first_error()),
        }
    }
    Ok(running)
}

/// One interface's capture, on a thread of its own inside its namespace.
struct Worker {
    /// Its place in the spec.
    index: usize,
    iface: String,
    /// `node/iface` or `iface`, as frames are labelled.
    label: String,
    filter: Option<String>,
    snaplen: i32,
    /// When the capture started (frames are timed from it).
    started: Duration,
    queue: Queue,
    stop: Arc<AtomicBool>,
    /// Frames the reader was too slow for.
    dropped: Arc<AtomicU64>,
    /// Whether the interface opened, said once.
    ready: SyncSender<std::result::Result<(), String>>,
}

impl Worker {
    fn run(self) -> Result<IfaceStats> {
        let Worker {
            index,
            iface,
            label,
            filter,
            snaplen,
            started,
            queue,
            stop,
            dropped,
            ready,
        } = self;
        let (iface, label, filter) = (iface.as_str(), label.as_str(), filter.as_deref());
        // Every frame read here is timed from `started` and handed over in
        // batches.
        let opened = pcap::Capture::from_device(iface)
            // Not immediate mode: with it libpcap falls back to TPACKET_V2,
            // whose ring has one snaplen-sized (256 KiB) slot per frame, so
            // its 2 MiB holds 8 frames and a burst of a few thousand
            // datagrams a second overflows it. TPACKET_V3 packs frames into
            // blocks the kernel hands over when full or after the timeout
            // (so a frame waits at most 10 ms); the ring is 32 MiB an
            // interface. Reads are non-blocking: we poll the descriptor
            // ourselves, seeing `stop` every 50 ms.
            .and_then(|c| {
                c.timeout(BLOCK_TIMEOUT_MS)
                    .buffer_size(RING_BYTES)
                    .snaplen(snaplen)
                    .open()?
                    .setnonblock()
            })
            .and_then(|mut c| {
                if let Some(f) = filter {
                    c.filter(f, true)?;
                }
                Ok(c)
            });
        let mut cap = match opened {
            Ok(c) => {
                let _ = ready.send(Ok(()));
                c
            }
            Err(e) => {
                let _ = ready.send(Err(format!("cannot capture on {label}: {e}")));
                return Err(Error::env(format!("cannot capture on {label}: {e}"), None));
            }
        };
        // Frames go to the reader in batches: the ring hands over a block
        // of frames at a time, and one hand-over (and one wake-up of the
        // reader) per frame cost more than the reader's work at 100,000
        // frames a second.
        let mut batch = Vec::with_capacity(BATCH);
        while !stop.load(Ordering::Relaxed) {
            match cap.next_packet() {
                Ok(p) => {
                    let ts = Duration::new(
                        p.header.ts.tv_sec.max(0) as u64,
                        (p.header.ts.tv_usec.max(0) as u32).saturating_mul(1000),
                    );
                    batch.push(Captured {
                        index,
                        iface: label.to_string(),
                        at: ts.saturating_sub(started),
                        ts,
                        len: p.header.len,
                        data: p.data.to_vec(),
                    });
                    if batch.len() >= BATCH && !hand_over(&queue, &mut batch, &stop, &dropped) {
                        return Ok(stats(&mut cap, label, &dropped));
                    }
                }
                Err(pcap::Error::TimeoutExpired) => {
                    // The ring is empty for now: what was read goes.
                    if !hand_over(&queue, &mut batch, &stop, &dropped) {
                        return Ok(stats(&mut cap, label, &dropped));
                    }
                    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
                    use std::os::fd::AsFd;
                    let mut fds = [PollFd::new(cap.as_fd(), PollFlags::POLLIN)];
                    let _ = poll(&mut fds, PollTimeout::from(50u16));
                }
                Err(e) => return Err(Error::env(format!("capture on {iface} failed: {e}"), None)),
            }
        }
        let _ = hand_over(&queue, &mut batch, &stop, &dropped);
        Ok(stats(&mut cap, label, &dropped))
    }
}

/// Hands `batch` (emptied) to the reader. A reader that falls behind holds
/// the capture back rather than losing frames: they wait in the kernel's
/// ring (32 MiB), which reports what overflows it as kernel drops. Only
/// once the reader stops are frames given up (and counted). False when
/// the reader is gone.
fn hand_over(
    queue: &Queue,
    batch: &mut Vec<Captured>,
    stop: &AtomicBool,
    dropped: &AtomicU64,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let n = batch.len();
    // Room for it, or nothing queued at all (a batch is never refused).
    while queue.queued.load(Ordering::Acquire) + n > queue.bound
        && queue.queued.load(Ordering::Acquire) > 0
    {
        if stop.load(Ordering::Relaxed) {
            dropped.fetch_add(n as u64, Ordering::Relaxed);
            batch.clear();
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    queue.queued.fetch_add(n, Ordering::AcqRel);
    let frames = std::mem::replace(batch, Vec::with_capacity(BATCH));
    queue.tx.send(frames).is_ok()
}

/// The frames on their way to the reader, bounded in frames (not batches:
/// a quiet interface's batches hold a frame or two).
struct Queue {
    tx: Sender<Vec<Captured>>,
    /// Frames sent and not yet taken by the reader.
    queued: Arc<AtomicUsize>,
    bound: usize,
}

/// What an interface's capture received and lost, by libpcap's counters
/// and ours.
fn stats(cap: &mut pcap::Capture<pcap::Active>, label: &str, dropped: &AtomicU64) -> IfaceStats {
    let st = cap.stats().unwrap_or(pcap::Stat {
        received: 0,
        dropped: 0,
        if_dropped: 0,
    });
    IfaceStats {
        iface: label.to_string(),
        received: st.received,
        kernel_dropped: st.dropped,
        if_dropped: st.if_dropped,
        queue_dropped: dropped.load(Ordering::Relaxed),
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Running {
    /// The next batch of frames (a few hundred at most), waiting up to
    /// `timeout` for one; disconnected once every interface's thread ended.
    pub fn recv_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Vec<Captured>, RecvTimeoutError> {
        let batch = self.frames.recv_timeout(timeout)?;
        self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        Ok(batch)
    }

    /// The next batch of frames if one is waiting.
    pub fn try_recv(&self) -> std::result::Result<Vec<Captured>, TryRecvError> {
        let batch = self.frames.try_recv()?;
        self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        Ok(batch)
    }

    /// Stops every interface and returns their counters.
    /// Stops every thread and returns the first error one ended with.
    fn first_error(mut self) -> Error {
        self.stop.store(true, Ordering::Relaxed);
        let mut first = None;
        for (_, _, h) in std::mem::take(&mut self.threads) {
            let e = match h.join() {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => continue,
                Err(_) => Error::internal("a capture thread panicked"),
            };
            first.get_or_insert(e);
        }
        first.unwrap_or_else(|| {
            Error::env("the capture ended before its interfaces were open", None)
        })
    }

    pub fn finish(mut self) -> Vec<IfaceStats> {
        self.stop.store(true, Ordering::Relaxed);
        std::mem::take(&mut self.threads)
            .into_iter()
            .map(|(iface, dropped, h)| {
                h.join().ok().and_then(|r| r.ok()).unwrap_or(IfaceStats {
                    iface,
                    queue_dropped: dropped.load(Ordering::Relaxed),
                    ..Default::default()
                })
            })
            .collect()
    }
}
