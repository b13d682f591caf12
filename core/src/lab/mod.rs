//! The seed cluster as data: its topology (nodes, pods, addresses) and
//! the Kubernetes objects that describe it. The application's `lab` builds
//! it for real.

pub mod objects;
pub mod topology;

pub use topology::{LabParams, Topology};

/// The lab's default name.
pub const DEFAULT_NAME: &str = "seed";
