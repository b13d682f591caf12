//! knetdoctor: diagnose and repair Kubernetes networking on flannel (VXLAN)
//! and kube-proxy clusters. The data flow (DESIGN.md): sources (`inspect`,
//! `lab`) feed the joined view (`model`); verdicts are pure functions of it;
//! faces only present. Only `dataplane` (and the lab's own builder) change
//! the kernel.

pub mod access;
pub mod capture;
pub mod check;
pub mod dataplane;
pub mod error;
pub mod files;
pub mod inspect;
pub mod lab;
pub mod model;
pub mod repair;
pub mod suggest;
pub mod synthetic;
pub mod trace;
pub mod tui;

pub use error::{Error, Result};
