//! The kernel's own account of the packets it drops: the `skb:kfree_skb`
//! tracepoint in a tracefs instance of this process's (so another tracer's
//! settings are left alone), filtered to one protocol and to frees with a
//! reason (NOT_SPECIFIED is mostly not a drop), read from the instance's
//! `trace_pipe` on a thread. One kernel serves every network namespace: on
//! a lab machine a drop is the machine's, not one node's. Parsing is pure
//! ([`crate::capture::drops`]).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::capture::drops::{self, KernelDrop};
use crate::error::{Error, Result};

/// Where tracefs is mounted on current systems.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// A running watch; [`DropWatch::finish`] stops it and removes the instance.
pub struct DropWatch {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    /// Each drop as the kernel reports it.
    pub drops: Receiver<KernelDrop>,
}

/// tracefs with the tracepoint, mounted if it is not yet; why not, when
/// this kernel or this process cannot have it.
fn tracefs() -> std::result::Result<PathBuf, String> {
    let root = Path::new(TRACEFS);
    if !root.join("instances").is_dir() {
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tracefs", "nodev", TRACEFS])
            .output()
            .map_err(|e| format!("cannot run mount for tracefs: {e}"))?;
        if !mounted.status.success() {
            return Err(format!(
                "tracefs is not mounted at {TRACEFS} and cannot be ({})",
                String::from_utf8_lossy(&mounted.stderr).trim()
            ));
        }
    }
    if !root.join("events/skb/kfree_skb/format").is_file() {
        return Err("this kernel has no skb:kfree_skb tracepoint".to_string());
    }
    Ok(root.to_path_buf())
}

/// Removes instances left by knetdoctor processes that are gone.
fn sweep_stale(instances: &Path) {
    let Ok(rd) = std::fs::read_dir(instances) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let pid = name
            .strip_prefix("knetdoctor-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

impl DropWatch {
    /// Starts watching drops of packets of EtherType `protocol` (all when
    /// `None`). An environment error says why the kernel cannot be asked.
    pub fn start(protocol: Option<u16>) -> Result<DropWatch> {
        let root = tracefs().map_err(|why| {
            Error::env(
                format!("the kernel's drop reasons cannot be read: {why}"),
                Some(
                    "run as root on a kernel with tracefs (5.17 or later names the reasons)".into(),
                ),
            )
        })?;
        let format = std::fs::read_to_string(root.join("events/skb/kfree_skb/format"))
            .map_err(|e| Error::io(root.join("events/skb/kfree_skb/format"), e))?;
        let names = drops::reason_names(&format);
        let mut filter: Vec<String> = Vec::new();
        if let Some(p) = protocol {
            filter.push(format!("protocol == {p}"));
        }
        if let Some(n) = drops::reason_number(&names, "NOT_SPECIFIED") {
            filter.push(format!("reason != {n}"));
        }
        let instances = root.join("instances");
        sweep_stale(&instances);
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = instances.join(format!(
            "knetdoctor-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let event = dir.join("events/skb/kfree_skb");
        let setup = (|| -> std::io::Result<()> {
            if !filter.is_empty() {
                std::fs::write(event.join("filter"), filter.join(" && "))?;
            }
            std::fs::write(event.join("enable"), "1")
        })();
        if let Err(e) = setup {
            let _ = std::fs::remove_dir(&dir);
            return Err(Error::io(&event, e));
        }
        let pipe = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(dir.join("trace_pipe"))
            .map_err(|e| Error::io(dir.join("trace_pipe"), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = channel();
        let flag = stop.clone();
        let reader = std::thread::spawn(move || {
            let mut pipe = pipe;
            let mut buf = vec![0u8; 64 * 1024];
            let mut partial = String::new();
            loop {
                match pipe.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        partial.push_str(&String::from_utf8_lossy(&buf[..n]));
                        while let Some(end) = partial.find('\n') {
                            let line: String = partial.drain(..=end).collect();
                            if let Some(d) = drops::parse_line(&line)
                                && tx.send(d).is_err()
                            {
                                return;
                            }
                        }
                    }
                    // Nothing buffered: stop once told and drained.
                    _ => {
                        if flag.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        });
        Ok(DropWatch {
            dir,
            stop,
            reader: Some(reader),
            drops: rx,
        })
    }

    /// Stops the watch, removes its instance, and returns the drops not
    /// yet taken from [`DropWatch::drops`].
    pub fn finish(mut self) -> Vec<KernelDrop> {
        self.stop_reader();
        self.drops.try_iter().collect()
    }

    fn stop_reader(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let _ = std::fs::write(self.dir.join("events/skb/kfree_skb/enable"), "0");
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl Drop for DropWatch {
    fn drop(&mut self) {
        if self.reader.is_some() {
            self.stop_reader();
        }
    }
}
