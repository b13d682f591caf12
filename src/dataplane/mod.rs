//! Reading (and, for repair, writing) a node's kernel networking state
//! through rtnetlink, in a chosen network namespace. Knows nothing about
//! Kubernetes: it speaks links, addresses, routes, rules, neighbours and FDB.

pub mod batch;
pub mod iptables;
pub mod ipvs;
pub mod lookup;
pub mod netns;
pub mod read;
pub mod state;
pub mod sysctl;
pub mod write;

pub use netns::Netns;
pub use read::read_node_state;
pub use state::NodeState;
