//! Capture: decoding frames (VXLAN-in-UDP down to the inner packet), and in
//! time, live capture on several interfaces of a node and correlation of
//! one packet across them.

pub mod dns_watch;
pub mod dropwatch;
pub mod file;
pub mod filter;
pub mod live;
pub mod remote;
pub mod sink;

pub use knetdoctor_core::capture::{
    Frame, correlate, decode, drop_program, drops, link, test_frames, view,
};
