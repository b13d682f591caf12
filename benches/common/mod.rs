//! What the benchmarks share: sizes from the environment, scratch network
//! namespaces under the lab's prefix (`kdlab-bench-*`, so `lab down --name
//! bench` finds one a crashed run left) that are always deleted, and labs
//! brought down however a bench ends.
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// `name` from the environment, else `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A scratch namespace, deleted on drop.
pub struct Scratch(pub String);

impl Scratch {
    /// `kdlab-bench-WHAT-PID`, fresh; `None` (with a word on stderr) when
    /// it cannot be made (not root).
    pub fn new(what: &str) -> Option<Scratch> {
        let s = Scratch(format!("kdlab-bench-{what}-{}", std::process::id()));
        let _ = Command::new("ip")
            .args(["netns", "del", &s.0])
            .stderr(Stdio::null())
            .status();
        let made = Command::new("ip")
            .args(["netns", "add", &s.0])
            .status()
            .is_ok_and(|st| st.success());
        if !made {
            eprintln!("cannot create the scratch namespace {} (not root?)", s.0);
            return None;
        }
        Some(s)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// What `cmd` printed; it must succeed (a bench's own set-up: a failure
/// panics with what it said).
pub fn succeeded(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The knetdoctor binary the benches run.
pub const BIN: &str = env!("CARGO_BIN_EXE_knetdoctor");

/// A lab (`knetdoctor lab up --name NAME`, the default three nodes with a
/// pod each), brought down however the bench ends.
pub struct Lab(pub &'static str, pub knetdoctor::lab::Topology);

impl Lab {
    pub fn up(name: &'static str) -> Lab {
        let topo = knetdoctor::lab::Topology::new(knetdoctor::lab::LabParams {
            name: name.into(),
            nodes: 3,
            pods_per_node: 1,
        })
        .expect("the lab's topology");
        let _ = Command::new(BIN)
            .args(["lab", "down", "--name", name])
            .output();
        succeeded(Command::new(BIN).args(["lab", "up", "--name", name]));
        Lab(name, topo)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["lab", "down", "--name", self.0])
            .output();
    }
}
