//! The joined cluster view and what flannel, kube-proxy and the CNI would
//! program on each node. Pure: no I/O beyond (de)serializing objects.

pub mod cluster;
pub mod dns;
pub mod expect;
pub mod flannel;
pub mod hash;
pub mod kube_proxy;
pub mod portmap;
pub mod ruleset;

pub use cluster::{Cluster, ClusterNetwork};
pub use ruleset::Ruleset;
