//! The lab's long-running processes: started inside a pod's namespace in a
//! session of their own, tracked by PID and start time, stopped by PID.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::state::TrackedProcess;
use crate::dataplane::Netns;
use crate::dataplane::netns::NETNS_RUN_DIR;
use crate::error::{Error, Result};

/// Field 22 (starttime) of /proc/PID/stat, or `None` if the PID is gone.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields resume after ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Starts `program args` detached inside `netns`, output to `log`.
pub fn spawn(
    netns: &str,
    pod: &str,
    role: &str,
    program: &Path,
    args: &[String],
    log: &Path,
) -> Result<TrackedProcess> {
    spawn_in(&Netns::named(netns), pod, role, program, args, log, None)
}

/// [`spawn`] with `first` put first on the program's PATH.
pub fn spawn_with_path(
    netns: &str,
    pod: &str,
    role: &str,
    program: &Path,
    args: &[String],
    log: &Path,
    first: &Path,
) -> Result<TrackedProcess> {
    spawn_in(
        &Netns::named(netns),
        pod,
        role,
        program,
        args,
        log,
        Some(first),
    )
}

/// [`spawn`] in this machine's own namespace (recorded with an empty
/// namespace name).
pub fn spawn_here(
    pod: &str,
    role: &str,
    program: &Path,
    args: &[String],
    log: &Path,
) -> Result<TrackedProcess> {
    spawn_in(&Netns::Current, pod, role, program, args, log, None)
}

fn spawn_in(
    ns: &Netns,
    pod: &str,
    role: &str,
    program: &Path,
    args: &[String],
    log: &Path,
    path_first: Option<&Path>,
) -> Result<TrackedProcess> {
    let netns = match ns {
        Netns::Current => String::new(),
        other => other.display_name(),
    };
    let out = File::create(log).map_err(|e| Error::io(log, e))?;
    let err = out.try_clone().map_err(|e| Error::io(log, e))?;
    let mut cmd = ns.command(program)?;
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    if let Some(first) = path_first {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        cmd.env("PATH", format!("{}:{path}", first.display()));
    }
    // SAFETY: setsid(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn().map_err(|e| {
        Error::env(
            format!("cannot start {} in {netns}: {e}", program.display()),
            Some("apt-get install -y dnsmasq-base nginx-light".to_string()),
        )
    })?;
    let pid = child.id() as i32;
    // Not waited for here: the process outlives this command; init reaps it.
    std::mem::forget(child);
    Ok(TrackedProcess {
        pid,
        start_time: start_time(pid).unwrap_or(0),
        role: role.to_string(),
        pod: pod.to_string(),
        netns: netns.to_string(),
    })
}

/// True if the tracked process is still the one we started.
pub fn is_alive(p: &TrackedProcess) -> bool {
    start_time(p.pid).is_some_and(|t| p.start_time == 0 || t == p.start_time) && !is_zombie(p.pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Sends SIGTERM to each PID (checked against its start time), waits up to
/// two seconds, then SIGKILLs what is left and waits until it is gone.
pub fn stop_all(pids: &[(i32, Option<u64>)]) {
    let still_ours = |pid: i32, t: Option<u64>| match (start_time(pid), t) {
        (Some(now), Some(then)) => then == 0 || now == then,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let targets: Vec<(i32, Option<u64>)> = pids
        .iter()
        .copied()
        .filter(|(p, t)| still_ours(*p, *t))
        .collect();
    let alive = |(p, t): &(i32, Option<u64>)| still_ours(*p, *t) && !is_zombie(*p);
    // Waits up to `limit` until none of `targets` is alive.
    let wait_gone = |limit: Duration| {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && targets.iter().any(alive) {
            std::thread::sleep(Duration::from_millis(10));
            reap();
        }
    };
    for (pid, _) in &targets {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    wait_gone(Duration::from_secs(2));
    for target in targets.iter().filter(|t| alive(t)) {
        let _ = kill(Pid::from_raw(target.0), Signal::SIGKILL);
    }
    // A killed process takes a moment to go (a large server unmapping its
    // memory): return only when none is left, so `lab down` means gone.
    wait_gone(Duration::from_secs(5));
    reap();
}

/// Collects exited children of this process (lab processes started by this
/// same invocation), so they do not linger as zombies.
fn reap() {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if matches!(status, nix::sys::wait::WaitStatus::StillAlive) {
            break;
        }
    }
}

/// PIDs of every process whose network namespace is one of `netns_names`
/// (compared by the namespace file's device and inode, never by name).
pub fn pids_in_namespaces(netns_names: &[String]) -> Vec<i32> {
    let mut ids = std::collections::HashSet::new();
    for n in netns_names {
        if let Ok(m) = std::fs::metadata(Path::new(NETNS_RUN_DIR).join(n)) {
            ids.insert((m.dev(), m.ino()));
        }
    }
    if ids.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| ids.contains(&(m.dev(), m.ino())))
                .unwrap_or(false)
        })
        .collect()
}
