//! `knetdoctor repair --node NODE`: put a node's dataplane back the way
//! flannel and kube-proxy meant it. [`plan`] (pure) turns the node's
//! findings into typed actions in flannel's order, each with the finding
//! that asks for it and what it replaces; [`apply`] carries them out through
//! rtnetlink inside the node's namespace, journaled before each change so
//! that a repair can be undone exactly, one repair per node at a time.

pub mod apply;
pub mod journal;
pub mod pipeline;
pub mod session;

pub use knetdoctor_core::repair::{Category, Options, Plan, iptables, nftables, plan};
