//! knetdoctor: diagnose and repair Kubernetes networking on flannel (VXLAN)
//! and kube-proxy clusters. The data flow (DESIGN.md): sources (`inspect`,
//! `lab`, reached through `access`) feed the joined view (`model`);
//! verdicts are pure functions of it; faces only present. Everything that
//! decides lives in the `knetdoctor-core` crate (no I/O) and is re-exported
//! here under the same paths; this crate reads, writes, captures, runs the
//! lab and the dashboard. Only `dataplane` (and the lab's own builder)
//! change the kernel.

pub use knetdoctor_core::{check, error, model, suggest, synthetic};

pub mod access;
pub mod agent;
pub mod capture;
pub mod dataplane;
pub mod files;
pub mod inspect;
pub mod lab;
pub mod repair;
pub mod sched;
pub mod signal;
pub mod trace;
pub mod tui;

pub use error::{Error, Result};

/// mimalloc instead of glibc's malloc: loading a 150,000-pod cluster is
/// millions of small allocations from several threads, where glibc's
/// arenas spent a sixth of the time in malloc, free and consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (prctl
/// `PR_SET_THP_DISABLE`, inherited by what it runs); `main` calls it first,
/// and so does each benchmark, which measures what the binary does.
///
/// A large cluster is a gigabyte of small objects whose pages the kernel
/// clears as the load first touches them. With 2 MiB pages (mimalloc asks
/// for them) that clearing cost, on the 2-core VMs this was measured on,
/// 1.2 to 8.6 s of system time for the same gigabyte — the host backing
/// memory other processes had just freed — and the 150,000-pod load took
/// 1.4 to 5.7 s, its node's check 1.3 s more. With 4 KiB pages: 0.7 to
/// 0.8 s of system time, the load 0.95 to 1.13 s, the check 0.4 s, peak
/// memory 20 MiB lower (`benches/check_scale`, six fresh processes
/// alternating). Where the call fails (a kernel without it) nothing changes.
pub fn without_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory
    // of ours.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}
