//! The joined cluster view and what flannel, kube-proxy and the CNI would
//! program on each node. Pure: no I/O beyond (de)serializing objects.

pub mod cluster;
pub mod compact;
pub mod convert;
pub mod dns;
pub mod expect;
pub mod flannel;
pub mod flannel_nft;
pub mod hash;
pub mod index;
pub mod kube_proxy;
pub mod kube_proxy_nft;
pub mod portmap;
pub mod reading;
pub mod shared;
pub mod trim;

pub use crate::dataplane::iptables::Ruleset;
pub use cluster::{Cluster, ClusterNetwork};
