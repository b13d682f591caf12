//! `cargo bench --bench tui_live` (as root): a change's way to the screen
//! through the dashboard's own loop — the reader thread woken by the
//! kernel's netlink notification, its reading of every node, the kept
//! verdicts, the snapshot, the loop's wake-up and the frame (ratatui's
//! test backend in place of the terminal: the same drawing, no tty). A lab
//! (`kdlab-kdblive-*`, no link to the root namespace) is brought up; one
//! of its node's peer routes is deleted and put back 200 times, 100 times
//! a second, as a burst of flannel reprogramming would. For each change:
//! the time from just before it was made to the first frame drawn from a
//! reading that began after it (so surely holds it); p50 and p99 (target:
//! 100 ms), and how many readings and frames the burst took.
//!
//! The lab is three nodes: this is the loop's own cost and its way of
//! taking a burst; `tui_watch` runs the same loop at 5,000 nodes with a
//! real API server, `tui_render` the reader's work alone.

mod common;
use common::{Lab, env, flip_route, peer_route, quit_dashboard};

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use knetdoctor::access::Source;
use knetdoctor::tui::{Options, Wake, run_on};

const LAB: &str = "kdblive";

/// Each frame: when it was drawn, and when the reading it shows began.
type Frames = Arc<Mutex<Vec<(Instant, Option<Instant>)>>>;

fn main() {
    knetdoctor::without_huge_pages();
    if !nix::unistd::Uid::effective().is_root() {
        println!("tui_live: not root, skipped (it needs a lab)");
        return;
    }
    let changes = env("KD_BENCH_CHANGES", 200);
    let rate = env("KD_BENCH_RATE", 100) as u64;
    let lab = Lab::up(LAB);
    let topo = &lab.1;
    let node = &topo.nodes[1];
    // A peer route flannel programmed: `DST via GW dev flannel.1 onlink`.
    let route = peer_route(&node.netns);
    let dst = route.0.clone();

    // The dashboard's loop on a test backend; each frame's time and the
    // time its reading began.
    let frames: Frames = Arc::default();
    let (wake_tx, wake) = mpsc::channel::<Wake>();
    let quit = wake_tx.clone();
    let seen = frames.clone();
    let dashboard = std::thread::spawn(move || {
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(160, 48)).expect("terminal");
        let options = Options {
            source: Source {
                bundle: None,
                lab: LAB.into(),
                live: None,
                published: false,
            },
            // Only the kernel's notifications can wake the reader in time.
            refresh: Duration::from_secs(600),
            namespace: None,
        };
        run_on(&mut terminal, options, (wake_tx, wake), |app| {
            let began = app.snapshot.as_ref().and_then(|s| s.reading_began);
            seen.lock().unwrap().push((Instant::now(), began));
        })
    });
    // The first reading of every node on screen.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !frames.lock().unwrap().iter().any(|(_, b)| b.is_some()) {
        assert!(Instant::now() < deadline, "no snapshot in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let first_frame = frames.lock().unwrap().len();

    // The burst: the route deleted and put back, `rate` changes a second.
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut made = Vec::with_capacity(changes);
    for i in 0..changes {
        let at = start + every * i as u32;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let before = Instant::now();
        flip_route(&node.netns, &route, i);
        made.push(before);
    }
    let burst = start.elapsed();
    // What is still on its way reaches the screen.
    std::thread::sleep(Duration::from_secs(2));
    quit_dashboard(&quit, dashboard);

    let frames = frames.lock().unwrap();
    let during = &frames[first_frame..];
    let mut took: Vec<f64> = made
        .iter()
        .map(|&t| {
            during
                .iter()
                .find(|(_, began)| began.is_some_and(|b| b > t))
                .map(|(drawn, _)| (*drawn - t).as_secs_f64() * 1e3)
                .expect("every change reached the screen")
        })
        .collect();
    took.sort_by(f64::total_cmp);
    let readings: std::collections::BTreeSet<Instant> =
        during.iter().filter_map(|(_, b)| *b).collect();
    println!(
        "lab {LAB}: {}'s route to {dst} deleted and put back {changes} times in {:.2} s ({rate} a second); {} readings, {} frames",
        node.name,
        burst.as_secs_f64(),
        readings.len(),
        during.len()
    );
    println!(
        "kernel notification to frame, through the dashboard's loop: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target <= 100 ms)",
        took[took.len() / 2],
        took[took.len() * 99 / 100],
        took[took.len() - 1]
    );
}
