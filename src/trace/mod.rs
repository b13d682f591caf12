//! `knetdoctor trace`: the simulation is the core's (`sim`, `resolve`,
//! `text`); the real packet sent along the path is this crate's `probe`.

pub use knetdoctor_core::trace::*;

pub mod probe;
