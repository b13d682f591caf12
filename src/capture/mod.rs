//! Capture: decoding frames (VXLAN-in-UDP down to the inner packet), and in
//! time, live capture on several interfaces of a node and correlation of
//! one packet across them.

pub mod dns_watch;
pub mod file;
pub mod filter;
pub mod kfree;
pub mod live;
pub mod remote;
pub mod sink;

pub use knetdoctor_core::capture::{Frame, correlate, decode, drops, link, test_frames, view};
