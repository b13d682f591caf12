//! Running code and commands inside a network namespace without ever moving
//! the process itself: work runs on a dedicated thread that joins the
//! namespace and ends with it, and child processes join it between fork and
//! exec.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::{CloneFlags, setns};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where named namespaces live (`ip netns add` puts them there).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A network namespace to work in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Netns {
    /// The caller's own namespace.
    Current,
    /// A named namespace under /run/netns.
    Named(String),
    /// A namespace file (`/proc/PID/ns/net`, a bind mount, ...).
    Path(PathBuf),
}

impl Netns {
    /// A named namespace.
    pub fn named(name: impl Into<String>) -> Self {
        Netns::Named(name.into())
    }

    /// The namespace file, or `None` for the current namespace.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Netns::Current => None,
            Netns::Named(n) => Some(Path::new(NETNS_RUN_DIR).join(n)),
            Netns::Path(p) => Some(p.clone()),
        }
    }

    /// The namespace's inode: what names it to the kernel (a dropped
    /// packet's namespace is known only by this).
    pub fn inode(&self) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        let path = self
            .path()
            .unwrap_or_else(|| PathBuf::from("/proc/thread-self/ns/net"));
        std::fs::metadata(&path)
            .map(|m| m.ino())
            .map_err(|e| Error::io(path, e))
    }

    /// The name to show people.
    pub fn display_name(&self) -> String {
        match self {
            Netns::Current => "the current network namespace".into(),
            Netns::Named(n) => n.clone(),
            Netns::Path(p) => p.display().to_string(),
        }
    }

    /// Opens the namespace file; a clear error when it does not exist.
    fn open(&self) -> Result<Option<OwnedFd>> {
        let Some(path) = self.path() else {
            return Ok(None);
        };
        match File::open(&path) {
            Ok(f) => Ok(Some(f.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::env(
                format!("network namespace {} does not exist", self.display_name()),
                Some("`ip netns list` shows the named namespaces; `knetdoctor lab status` shows the lab's".to_string()),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(Error::env(
                format!("cannot open network namespace {}: permission denied", self.display_name()),
                Some("run as root; a /proc/PID/ns/net path also needs ptrace access to that process".to_string()),
            )),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Runs `f` on a thread that has joined this namespace. Sockets `f`
    /// creates (netlink included) and /proc/sys/net reads it makes belong to
    /// the namespace; the calling thread never changes namespace.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        let fd = self.open()?;
        let name = self.display_name();
        let handle = std::thread::Builder::new()
            .name("netns".into())
            .spawn(move || -> Result<R> {
                if let Some(fd) = fd {
                    setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| match e {
                        nix::errno::Errno::EINVAL => Error::env(
                            format!("{name} is not a network namespace"),
                            Some("name one under /run/netns (`ip netns list`) or a /proc/PID/ns/net path".to_string()),
                        ),
                        _ => Error::env(
                            format!("cannot enter network namespace {name}: {e}"),
                            Some("run knetdoctor as root (CAP_SYS_ADMIN is needed to enter a namespace)".to_string()),
                        ),
                    })?;
                }
                Ok(f())
            })
            .map_err(|e| Error::env(format!("cannot start a thread: {e}"), None))?;
        handle
            .join()
            .map_err(|_| Error::internal("a worker thread panicked inside the namespace"))?
    }

    /// A `Command` whose child joins this namespace before it executes.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        let mut cmd = Command::new(program);
        if let Some(fd) = self.open()? {
            // SAFETY: setns(2) is async-signal-safe; the closure touches no
            // allocator or lock between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
                });
            }
        }
        Ok(cmd)
    }

    /// Runs `tool args` in this namespace, with `input` on its stdin when
    /// given, and returns its stdout: the one way knetdoctor runs a
    /// standard tool (iptables-save, conntrack, ethtool, nft, ip and
    /// bridge batches, iptables-restore). A failure keeps its class and
    /// cause: a tool not installed is an environment error with a hint, a
    /// tool that ran and refused is `Error::Command` with its stderr.
    pub fn exec(&self, tool: &str, args: &[&str], input: Option<&str>) -> Result<String> {
        use std::io::Write;
        use std::process::Stdio;
        let shown = || match self {
            Netns::Current => format!("{tool} {}", args.join(" ")),
            ns => format!("{tool} {} (in {})", args.join(" "), ns.display_name()),
        };
        let mut child = self
            .command(tool)?
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::env(
                    format!("{tool} is not installed"),
                    Some(format!("install the package that provides {tool}")),
                ),
                _ => Error::Command {
                    command: shown(),
                    stderr: format!("could not start: {e}"),
                },
            })?;
        if let (Some(mut stdin), Some(text)) = (child.stdin.take(), input) {
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| Error::Command {
                    command: shown(),
                    stderr: format!("writing its input: {e}"),
                })?;
        }
        let out = child.wait_with_output().map_err(|e| Error::Command {
            command: shown(),
            stderr: e.to_string(),
        })?;
        if !out.status.success() {
            return Err(Error::Command {
                command: shown(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `tool args` in this namespace with `input` on its stdin (nft
    /// scripts, iptables-restore inputs).
    pub fn feed(&self, tool: &str, args: &[&str], input: &str) -> Result<()> {
        self.exec(tool, args, Some(input)).map(|_| ())
    }
}
