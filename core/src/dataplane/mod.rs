//! What a node's kernel holds, as typed data (read by the application's
//! `dataplane::read`): links, addresses, routes, rules, neighbours, FDB,
//! iptables rulesets and IPVS tables, with their parsers and the route
//! lookup the kernel does.

pub mod addr;
pub mod iptables;
pub mod ipvs;
pub mod lookup;
pub mod nft_table;
pub mod nftables;
pub mod state;

pub use addr::{Mac, RouteDst};
pub use state::NodeState;
