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
pub mod trace;
pub mod tui;

pub use error::{Error, Result};

/// mimalloc instead of glibc's malloc: loading a 150,000-pod cluster is
/// millions of small allocations from several threads, where glibc's
/// arenas spent a sixth of the time in malloc, free and consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
