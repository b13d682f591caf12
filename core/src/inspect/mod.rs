//! The linked views: one object and everything it links to.

pub mod chain;
