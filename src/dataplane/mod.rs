//! Reading (and, for repair, writing) a node's kernel networking state
//! through rtnetlink, in a chosen network namespace. Knows nothing about
//! Kubernetes: it speaks links, addresses, routes, rules, neighbours and FDB.

pub mod batch;
pub mod netns;
pub mod notify;
pub mod read;
pub mod sysctl;
pub mod write;

pub use knetdoctor_core::dataplane::{
    Mac, NodeState, RouteDst, addr, iptables, ipvs, lookup, nft_table, nftables, state,
};
pub use netns::Netns;
pub use read::read_node_state;
