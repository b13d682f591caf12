//! Repair planning (pure): a node's findings turned into typed actions in
//! flannel's order, and the iptables-restore input for the chains.

pub mod iptables;
pub mod plan;

pub use plan::{Category, Options, Plan, plan};
