//! A spinner on standard error for what takes longer than a second, on a
//! terminal only: piped or redirected output stays exactly the command's
//! (indicatif draws nothing where stderr is not a terminal). It appears
//! after [`AFTER`], so quick commands never flicker, and is cleared before
//! the command prints its answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a command runs before the spinner shows.
pub const AFTER: Duration = Duration::from_secs(1);

/// A running spinner; dropping it clears it.
pub struct Spinner {
    bar: ProgressBar,
    /// Set once the spinner is gone, so a late start does not draw it.
    done: Arc<Mutex<bool>>,
}

impl Spinner {
    /// Shows `what` (`probing the path`) with the time taken, from
    /// [`AFTER`] on.
    pub fn start(what: &str) -> Spinner {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"),
        );
        bar.set_message(what.to_string());
        let done = Arc::new(Mutex::new(false));
        let (late, finished) = (bar.clone(), done.clone());
        std::thread::spawn(move || {
            std::thread::sleep(AFTER);
            let finished = finished.lock().unwrap_or_else(|p| p.into_inner());
            if !*finished {
                late.set_draw_target(ProgressDrawTarget::stderr());
                late.enable_steady_tick(Duration::from_millis(100));
            }
        });
        Spinner { bar, done }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        *done = true;
        self.bar.finish_and_clear();
    }
}
