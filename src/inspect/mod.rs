//! Reading: where a node's state comes from (this namespace, a named one, a
//! lab node) and how it is shown. Decides nothing about what is wrong.

pub mod node;
pub mod render;

pub use node::{NodeSource, resolve_node};
