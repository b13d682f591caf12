//! Capture: decoding frames (VXLAN-in-UDP down to the inner packet), and in
//! time, live capture on several interfaces of a node and correlation of
//! one packet across them.

pub mod correlate;
pub mod decode;
pub mod file;
pub mod filter;
pub mod live;
#[cfg(test)]
pub(crate) mod test_frames;

pub use decode::{Frame, decode};
