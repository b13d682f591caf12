//! Capture: decoding frames (VXLAN-in-UDP down to the inner packet), and in
//! time, live capture on several interfaces of a node and correlation of
//! one packet across them.

pub mod correlate;
pub mod decode;
pub mod dns_watch;
pub mod file;
pub mod filter;
pub mod live;
pub mod sink;
#[cfg(test)]
pub(crate) mod test_frames;
pub mod view;

pub use decode::{Frame, decode};
