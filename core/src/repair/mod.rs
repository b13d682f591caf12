//! Repair planning (pure): a node's findings turned into typed actions in
//! flannel's order, the iptables-restore input for the chains and the
//! `nft -j -f` input for kube-proxy's nftables table.

pub mod iptables;
pub mod nftables;
pub mod plan;

pub use plan::{Category, Options, Plan, plan};
