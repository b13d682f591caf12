//! The dashboard in a real terminal: tmux runs `knetdoctor tui` on a lab,
//! `lab break route-missing` from outside makes the finding appear on the
//! screen (read with capture-pane) within 2 s — by the kernel's netlink
//! notification, the periodic re-read being 30 s away — `:node` shows the
//! entry marked missing, the repair view (`r`, `a`, `y`) fixes it and the
//! finding disappears, and `q` leaves the terminal as it was.

mod common;
use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

const LAB: &str = "tui";

/// A tmux session, killed on drop.
struct Tmux(String);

impl Tmux {
    fn pane(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.0];
        args.extend_from_slice(keys);
        assert!(Command::new("tmux").args(&args).status().unwrap().success());
    }

    /// Waits up to `limit` for the screen to contain `text`; how long it took.
    fn wait_for(&self, text: &str, limit: Duration) -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if self.pane().contains(text) {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[test]
fn a_broken_route_shows_up_within_two_seconds_and_q_restores_the_terminal() {
    let lab = Lab::up(LAB, &[]);
    let t = Tmux(format!("kdtui-{}", std::process::id()));
    // The periodic re-read is 30 s away: only the kernel's notifications
    // can bring the change to the screen in time.
    let command =
        format!("{BIN} tui --lab {LAB} --refresh-ms 30000; echo dashboard-exited-$?; sleep 60");
    assert!(
        Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &t.0,
                "-x",
                "120",
                "-y",
                "30",
                &command
            ])
            .status()
            .expect("tmux (apt-get install tmux)")
            .success()
    );
    assert!(
        t.wait_for("0 findings", Duration::from_secs(10)).is_some(),
        "the healthy lab never showed:\n{}",
        t.pane()
    );
    assert!(t.pane().contains("k8s-node-12"));

    lab.kd(&["lab", "break", "route-missing", "--node", "k8s-node-12"]);
    let took = t.wait_for("route-missing", Duration::from_secs(5));
    assert!(
        took.is_some_and(|d| d < Duration::from_secs(2)),
        "route-missing took {took:?}:\n{}",
        t.pane()
    );
    eprintln!("route-missing on screen after {took:?}");

    t.keys(&[":node k8s-node-12", "Enter"]);
    assert!(
        t.wait_for("not ok", Duration::from_secs(2)).is_some(),
        "{}",
        t.pane()
    );
    let pane = t.pane();
    assert!(
        pane.lines()
            .any(|l| l.contains("missing") && l.contains("route ") && l.contains("onlink")),
        "{pane}"
    );

    // The repair view: the plan, a yes, the repair, the finding gone.
    t.keys(&["r"]);
    assert!(
        t.wait_for("ip route replace", Duration::from_secs(2))
            .is_some(),
        "{}",
        t.pane()
    );
    t.keys(&["a"]);
    assert!(
        t.wait_for("(y/n)", Duration::from_secs(2)).is_some(),
        "{}",
        t.pane()
    );
    t.keys(&["y"]);
    assert!(
        t.wait_for("the findings it targeted are gone", Duration::from_secs(5))
            .is_some(),
        "{}",
        t.pane()
    );
    t.keys(&[":node k8s-node-12", "Enter"]);
    assert!(
        t.wait_for("0 not ok", Duration::from_secs(3)).is_some(),
        "the repaired node never showed clean:\n{}",
        t.pane()
    );
    // Independently: the route is back in the kernel.
    let (_, routes) = in_ns_text(&lab.node("k8s-node-12"), &["ip", "route"]);
    assert!(
        routes.contains("10.2.0.0/24 via 10.2.0.0 dev flannel.1 onlink"),
        "{routes}"
    );
    t.keys(&[":overview", "Enter"]);
    assert!(
        t.wait_for("-route-missing (k8s-node-12)", Duration::from_secs(3))
            .is_some(),
        "{}",
        t.pane()
    );

    t.keys(&["q"]);
    assert!(
        t.wait_for("dashboard-exited-0", Duration::from_secs(3))
            .is_some(),
        "{}",
        t.pane()
    );
    // Back on the normal screen: the dashboard's frame is gone.
    assert!(!t.pane().contains("knetdoctor  node"), "{}", t.pane());
}
