//! `knetdoctor repair --node NODE`: put a node's dataplane back the way
//! flannel and kube-proxy meant it. Today: the plan — the typed actions
//! that take the node from what it holds to what the checks expect, in
//! flannel's order, each with the finding that asks for it and what it
//! replaces; nothing on the node is changed.

pub mod apply;
pub mod plan;

pub use plan::{Category, Options, Plan, plan};
