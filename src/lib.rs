//! knetdoctor: diagnose and repair Kubernetes networking on flannel (VXLAN)
//! and kube-proxy clusters. See DESIGN.md for the data flow:
//! sources (`inspect`, `lab`) -> joined view (`model`) -> verdicts -> faces.

pub mod dataplane;
pub mod error;
pub mod model;

pub use error::{Error, Result};
