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
        Lab::up_with(name, &[])
    }

    /// `lab up --name NAME ARGS` (`--control-plane`, ...).
    pub fn up_with(name: &'static str, args: &[&str]) -> Lab {
        let topo = knetdoctor::lab::Topology::new(knetdoctor::lab::LabParams {
            name: name.into(),
            nodes: 3,
            pods_per_node: 1,
        })
        .expect("the lab's topology");
        let _ = Command::new(BIN)
            .args(["lab", "down", "--name", name])
            .output();
        succeeded(
            Command::new(BIN)
                .args(["lab", "up", "--name", name])
                .args(args),
        );
        Lab(name, topo)
    }
}

impl Lab {
    /// Left up after the bench (not brought down, a panic included): its
    /// topology.
    pub fn kept(self) -> knetdoctor::lab::Topology {
        let lab = std::mem::ManuallyDrop::new(self);
        lab.1.clone()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["lab", "down", "--name", self.0])
            .output();
    }
}

/// Ends the dashboard `run_on` runs on `thread` with `q`, as a user would.
pub fn quit_dashboard(
    wake: &std::sync::mpsc::Sender<knetdoctor::tui::Wake>,
    thread: std::thread::JoinHandle<knetdoctor::Result<()>>,
) {
    use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
    let q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    let _ = wake.send(knetdoctor::tui::Wake::Input(Event::Key(q)));
    thread
        .join()
        .expect("the dashboard's thread")
        .expect("the dashboard ran");
}

/// A peer route flannel programmed in `netns` (`DST via GW dev flannel.1
/// onlink`): its destination and gateway.
pub fn peer_route(netns: &str) -> (String, String) {
    let routes: Vec<serde_json::Value> =
        serde_json::from_str(&succeeded(Command::new("ip").args([
            "-n",
            netns,
            "-4",
            "-j",
            "route",
            "show",
            "dev",
            "flannel.1",
        ])))
        .expect("ip -j");
    let route = routes
        .iter()
        .find(|r| r["gateway"].is_string())
        .expect("a peer route on flannel.1");
    (
        route["dst"].as_str().unwrap().to_string(),
        route["gateway"].as_str().unwrap().to_string(),
    )
}

/// Change `i` of a burst on that route: deleted (even `i`), put back (odd).
pub fn flip_route(netns: &str, (dst, gw): &(String, String), i: usize) {
    let args: Vec<&str> = if i.is_multiple_of(2) {
        vec!["route", "del", dst]
    } else {
        vec![
            "route",
            "replace",
            dst,
            "via",
            gw,
            "dev",
            "flannel.1",
            "onlink",
        ]
    };
    succeeded(Command::new("ip").args(["-n", netns]).args(&args));
}
