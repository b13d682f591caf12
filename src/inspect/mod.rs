//! Reading: where the cluster and a node's state come from (a lab, a
//! bundle, this namespace, a named one) and how node state is shown.
//! Decides nothing about what is wrong.

pub mod bundle;
pub mod chain;
pub mod kubectl;
pub mod live;
pub mod node;
pub mod redact;
pub mod render;
pub mod source;
pub mod tools;

pub use node::{NodeSource, resolve_node};
pub use source::Target;
