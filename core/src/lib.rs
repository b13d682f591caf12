//! knetdoctor's core: everything that decides, without I/O. The cluster
//! objects joined into a model (`model`), what flannel and kube-proxy would
//! program (`model::expect`), the verdicts (`check`), the linked views
//! (`inspect::chain`), the path simulation (`trace`), repair planning
//! (`repair::plan`), the node-state and ruleset types and their parsers
//! (`dataplane`), frame decoding (`capture::decode`), and the seed
//! cluster as data (`lab::topology`, `lab::objects`). The application
//! crate reads and writes; this one only computes, so its tests need
//! neither root nor libpcap.

pub mod capture;
pub mod check;
pub mod dataplane;
pub mod error;
pub mod inspect;
pub mod lab;
pub mod model;
pub mod repair;
pub mod suggest;
pub mod synthetic;
pub mod trace;
pub mod wire_bytes;

pub use error::{Error, Result};
