//! The dashboard in a real terminal: a tmux session to type into and read
//! the screen of (capture-pane).

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux session, killed on drop.
pub struct Tmux(pub String);

impl Tmux {
    /// Runs `command` in a new detached 120x30 session named `name`.
    pub fn start(name: &str, command: &str) -> Tmux {
        assert!(
            Command::new("tmux")
                .args([
                    "new-session",
                    "-d",
                    "-s",
                    name,
                    "-x",
                    "120",
                    "-y",
                    "30",
                    command
                ])
                .status()
                .expect("tmux (apt-get install tmux)")
                .success()
        );
        Tmux(name.to_string())
    }

    pub fn pane(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.0];
        args.extend_from_slice(keys);
        assert!(Command::new("tmux").args(&args).status().unwrap().success());
    }

    /// Waits up to `limit` for the screen to contain `text`; how long it took.
    /// The screen once one of its lines satisfies `line` (within `limit`;
    /// else the last screen seen, as the error). A screen captured while
    /// the dashboard redraws can be half old, half new: a check of one
    /// capture is a check of whichever half it caught.
    pub fn wait_for_line(
        &self,
        line: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> Result<String, String> {
        let t = Instant::now();
        loop {
            let pane = self.pane();
            if pane.lines().any(&line) {
                return Ok(pane);
            }
            if t.elapsed() >= limit {
                return Err(pane);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_for(&self, text: &str, limit: Duration) -> Option<Duration> {
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

/// Waits for `text` or fails with the screen.
pub fn expect_screen(t: &Tmux, text: &str, secs: u64) {
    assert!(
        t.wait_for(text, Duration::from_secs(secs)).is_some(),
        "{text:?} never showed:\n{}",
        t.pane()
    );
}

impl Tmux {
    /// Asserts that `text` shows within `limit` (waiting longer to say how
    /// long it did take) and returns how long it took.
    pub fn shows_within(&self, text: &str, limit: Duration) -> Duration {
        let took = self.wait_for(text, limit * 3);
        assert!(
            took.is_some_and(|d| d < limit),
            "{text:?} took {took:?} (limit {limit:?}):\n{}",
            self.pane()
        );
        took.unwrap_or(limit)
    }
}
