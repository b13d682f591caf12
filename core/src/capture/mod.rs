//! Frames decoded (Ethernet, IPv4, UDP/TCP/ICMP, VXLAN to its inner frame,
//! DNS, HTTP) and followed across interfaces.

pub mod correlate;
pub mod decode;
pub mod drop_program;
pub mod drops;
pub mod link;
#[doc(hidden)]
pub mod test_frames;
pub mod view;

pub use decode::{Frame, decode};
