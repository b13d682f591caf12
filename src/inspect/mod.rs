//! Reading: the cluster from a bundle, kubectl output or an API server, a
//! node's state from its namespace, and how node state is shown.
//! Decides nothing about what is wrong.

pub mod bundle;
pub mod kubectl;
pub mod live;
pub mod node;
pub mod rbac;
pub mod redact;
pub mod render;
pub mod tools;

pub use knetdoctor_core::inspect::chain;
pub use node::NodeSource;
