//! The kernel's own account of the packets it drops: a BPF program on the
//! `kfree_skb` tracepoint (built by `capture::drop_program` for this
//! kernel's structure layout, read from its BTF) queues every drop with
//! its reason, location, device, namespace and first bytes; a thread here
//! takes them off the queue every 10 ms and names them
//! ([`crate::capture::drops`]). One kernel serves every network namespace,
//! so a watch sees the whole machine; a drop's namespace inode says whose
//! it was, and [`DropFilter`] picks packets by a tcpdump filter.
//!
//! Nothing is left behind: the program and its queue are file descriptors
//! of this process, freed by the kernel however it ends.

mod bpf;
mod btf;
pub mod owners;
pub mod remote;

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::capture::drop_program;
use crate::capture::drops::{self, DropRecord, KernelDrop, RECORD_SIZE, Symbols};
use crate::capture::link::Link;
use crate::error::{Error, Result};

/// How many drops the kernel may queue between two reads (10 ms apart):
/// 200 bytes each, 800 KiB in all, room for 400,000 drops a second.
const QUEUE_ENTRIES: u32 = 4096;
/// How often the queue is read.
const POLL: Duration = Duration::from_millis(10);

/// A running watch; [`DropWatch::finish`] stops it.
pub struct DropWatch {
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    /// Each drop as the kernel reports it.
    pub drops: Receiver<KernelDrop>,
}

/// Why the watch cannot start, as an environment error with what to do.
fn unavailable(why: String) -> Error {
    Error::env(
        format!("the kernel's drop reasons cannot be read: {why}"),
        Some("run as root on a kernel with BPF and BTF (5.17 or later names the reasons)".into()),
    )
}

/// The program loaded and attached, with its queue.
struct Loaded {
    queue: OwnedFd,
    _program: OwnedFd,
    _attached: OwnedFd,
}

/// The program for this kernel, loaded, with the names to read its
/// records by.
fn load() -> std::result::Result<(Loaded, BTreeMap<u32, String>, Symbols), String> {
    let btf = btf::load()?;
    let offsets = btf::offsets(&btf)?;
    let reasons = btf::reasons(&btf)?;
    let not_specified = drops::reason_number(&reasons, "NOT_SPECIFIED").unwrap_or(u32::MAX);
    let queue = bpf::queue(RECORD_SIZE as u32, QUEUE_ENTRIES)
        .map_err(|e| format!("the kernel refused a BPF queue: {e}"))?;
    let insns = drop_program::program(&offsets, queue.as_raw_fd(), not_specified);
    let program = bpf::load(&insns)?;
    let attached = bpf::attach(&program, "kfree_skb")
        .map_err(|e| format!("cannot attach to the kfree_skb tracepoint: {e}"))?;
    let symbols = Symbols::parse(&std::fs::read_to_string("/proc/kallsyms").unwrap_or_default());
    Ok((
        Loaded {
            queue,
            _program: program,
            _attached: attached,
        },
        reasons,
        symbols,
    ))
}

/// Now, nanoseconds since the epoch.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl DropWatch {
    /// Starts watching every drop on this machine. An environment error
    /// says why the kernel cannot be asked (no BTF, no BPF, not root).
    pub fn start() -> Result<DropWatch> {
        let (loaded, reasons, symbols) = load().map_err(unavailable)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = channel();
        let flag = stop.clone();
        let reader = std::thread::spawn(move || {
            // The whole of it, not just the queue the loop reads: the
            // program stays attached while its descriptors live.
            let loaded = loaded;
            let mut buf = vec![0u8; RECORD_SIZE];
            loop {
                // Told to stop: one last drain, then the descriptors close
                // and the kernel detaches the program.
                let last = flag.load(Ordering::Relaxed);
                while let Ok(true) = bpf::pop(&loaded.queue, &mut buf) {
                    let Some(r) = DropRecord::parse(&buf) else {
                        continue;
                    };
                    let d = KernelDrop::from_record(&r, &reasons, &symbols, now_nanos());
                    if tx.send(d).is_err() {
                        return;
                    }
                }
                if last {
                    return;
                }
                std::thread::sleep(POLL);
            }
        });
        Ok(DropWatch {
            stop,
            reader: Some(reader),
            drops: rx,
        })
    }

    /// Stops the watch and returns the drops not yet taken from
    /// [`DropWatch::drops`].
    pub fn finish(mut self) -> Vec<KernelDrop> {
        self.stop_reader();
        self.drops.try_iter().collect()
    }

    fn stop_reader(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for DropWatch {
    fn drop(&mut self) {
        self.stop_reader();
    }
}

/// Which drops a watch keeps: of one EtherType (all when `None`) and
/// matching a tcpdump filter (all when `None`). One decision for `drops`
/// here and the agent's watch alike.
pub struct Selection {
    protocol: Option<u16>,
    filter: Option<DropFilter>,
}

impl Selection {
    /// Compiles `filter`; a usage error naming it when libpcap cannot.
    pub fn new(protocol: Option<u16>, filter: Option<&str>) -> Result<Selection> {
        Ok(Selection {
            protocol,
            filter: filter.map(DropFilter::new).transpose()?,
        })
    }

    /// Whether `d` is one of them.
    pub fn keeps(&self, d: &KernelDrop) -> bool {
        self.protocol.is_none_or(|p| p == d.protocol)
            && self.filter.as_ref().is_none_or(|f| f.matches(d))
    }
}

/// A tcpdump filter over dropped packets' headers, compiled by libpcap
/// for both ways a drop's bytes are read (from Ethernet, or raw IP).
pub struct DropFilter {
    ethernet: pcap::BpfProgram,
    raw: pcap::BpfProgram,
}

impl DropFilter {
    /// Compiles `expr`; a usage error naming it when libpcap cannot.
    pub fn new(expr: &str) -> Result<DropFilter> {
        let compile = |linktype| {
            pcap::Capture::dead(linktype)
                .and_then(|c| c.compile(expr, true))
                .map_err(|e| {
                    Error::usage(
                        format!("filter {expr:?}: {e}"),
                        Some("the filter is tcpdump's (pcap-filter(7)), e.g. `host 10.2.0.42 and icmp`".into()),
                    )
                })
        };
        Ok(DropFilter {
            ethernet: compile(pcap::Linktype::ETHERNET)?,
            // libpcap opens by DLT, and Linux's DLT_RAW is 12 (LINKTYPE_RAW,
            // 101, is only what files record).
            raw: compile(pcap::Linktype(12))?,
        })
    }

    /// Whether the drop's packet matches.
    pub fn matches(&self, d: &KernelDrop) -> bool {
        match d.link {
            Link::Ethernet => self.ethernet.filter(&d.header),
            _ => self.raw.filter(&d.header),
        }
    }
}
