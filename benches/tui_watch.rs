//! `cargo bench --bench tui_watch` (as root): a change's way to the screen
//! at 5,000 nodes / 150,000 pods through the dashboard's own loop, with
//! the cluster held by a real API server.
//!
//! A lab run by the real control plane (`lab up --control-plane --k8s
//! 1.32`: etcd, kube-apiserver, kube-controller-manager, kube-proxy on its
//! three nodes) is brought up, and the synthetic cluster is created in its
//! API server beside the lab's own objects: 5,000 Nodes, 150,000 Pods,
//! 10,000 Services with an EndpointSlice each. The synthetic nodes have no
//! kubelet, so they are created as the controller manager would leave a
//! node whose kubelet went silent (every condition Unknown, the
//! `unreachable` taints) and their pods tolerate that, as DaemonSet pods
//! do: the real controllers have nothing to rewrite and the bench's
//! changes are the only ones. The Services have no selector and their
//! slices are the bench's (`endpointslice.kubernetes.io/managed-by`), as a
//! custom endpoint controller's would be; kube-proxy on the lab's nodes
//! programs all 10,000 (and their changes, as in a real cluster).
//!
//! The dashboard reads it as `knetdoctor --lab kdbwatch` would: the
//! objects through watches, the three lab nodes from their kernels, the
//! 5,000 others said unread. Its loop draws on ratatui's test backend.
//! Two bursts of 200 changes, 100 a second, each change timed from just
//! before it was made to the first frame drawn from a snapshot holding it:
//! - watch events: an endpoint of a different Service goes NotReady each
//!   time (a JSON patch of its slice, as the endpoint controller writes);
//!   and a different pod's Ready condition is written False each time
//!   (its status, as a kubelet writes a failing readiness probe);
//! - kernel notifications: a lab node's peer route deleted and put back.
//!
//! Each burst runs three times: with kube-proxy as it runs; with the lab's
//! three kube-proxies on idle cores only (`SCHED_IDLE`), as on nodes of
//! their own (here they re-program 10,000 Services after every change on
//! the two cores the dashboard shares); and so again with the dashboard's
//! threads at nice -5, as an operator starts it on a node the cluster
//! keeps busy (README). A watch event's time is also split
//! at its arrival at a watch of the bench's own: the API server's part
//! before, the dashboard's after; and each reading is timed from its start
//! to its frame.
//!
//! p50 and p99 of each (target: 100 ms). `KD_BENCH_KEEP=1` leaves the lab
//! and its objects up for the next run (which then loads nothing);
//! `KD_BENCH_NODES`, `KD_BENCH_PODS`, `KD_BENCH_SERVICES` scale it down.

mod common;
use common::{Lab, env, flip_route, peer_route, quit_dashboard};

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service, Taint, Toleration};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use knetdoctor::access::Source;
use knetdoctor::synthetic::{self, Size};
use knetdoctor::tui::snapshot::{ReadingCost, Snapshot};
use knetdoctor::tui::{Options, Wake, run_on};

const LAB: &str = "kdbwatch";
/// The label of the bench's slices (no controller of the cluster's own
/// touches them).
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by=knetdoctor-bench";
/// Requests in flight while the cluster is created.
const IN_FLIGHT: usize = 48;

/// A change waiting for the frame that shows it: when it was made, and
/// how to know a snapshot holds it.
struct Pending {
    made: Instant,
    /// A watch event's object (namespace, name), a slice or a pod: when
    /// the dashboard's watch received it is known too, and for a slice
    /// when the bench's own watch saw it arrive.
    object: Option<(String, String)>,
    shown: Box<dyn Fn(&Snapshot) -> bool + Send>,
}

/// A change on screen: when it was made, its object, when its frame was drawn.
struct Shown {
    made: Instant,
    object: Option<(String, String)>,
    drawn: Instant,
    /// When the reading whose snapshot showed it began, and what it cost:
    /// a slow change waited before its reading, or in it.
    reading: Option<(Instant, Option<ReadingCost>)>,
}

/// The changes on their way and, per burst, what became of them.
#[derive(Default)]
struct Timings {
    pending: Vec<Pending>,
    shown: Vec<Shown>,
    /// Each new snapshot's reading, from its start to its frame (ms): the
    /// dashboard's own part, without the wait for the reading before.
    readings: Vec<f64>,
    /// The same readings' costs, phase by phase (the slowest are printed).
    costs: Vec<(f64, ReadingCost)>,
    /// When a watch of the bench's own (beside the dashboard's, on the
    /// same API server) saw each slice's change arrive.
    delivered: std::collections::HashMap<(String, String), Instant>,
    /// When the dashboard's own watch received each (its
    /// `knetdoctor::watch` trace events, [`Received`]).
    received: std::collections::HashMap<(String, String), Instant>,
    snapshots: usize,
}

impl Timings {
    /// Forgets the readings before a burst (the settling's, the first).
    fn clear_readings(&mut self) {
        self.readings.clear();
        self.costs.clear();
    }
}

fn main() {
    knetdoctor::without_huge_pages();
    if !nix::unistd::Uid::effective().is_root() {
        println!("tui_watch: not root, skipped (it needs a lab)");
        return;
    }
    let size = Size {
        nodes: env("KD_BENCH_NODES", Size::LARGE.nodes),
        pods: env("KD_BENCH_PODS", Size::LARGE.pods),
        services: env("KD_BENCH_SERVICES", Size::LARGE.services),
        endpoints_per_service: 3,
    };
    let changes = env("KD_BENCH_CHANGES", 200);
    let rate = env("KD_BENCH_RATE", 100) as u64;
    let keep = std::env::var("KD_BENCH_KEEP").is_ok();
    let lab = match knetdoctor::lab::LabState::load(LAB).ok().flatten() {
        Some(s) if keep && s.control_plane.is_some() => Lab(LAB, s.topology.clone()),
        _ => Lab::up_with(LAB, &["--control-plane", "--k8s", "1.32"]),
    };
    // Kept: never brought down by this run, a panic included (the cluster
    // took twenty minutes to create); else down however the run ends.
    let (topology, _down) = match keep {
        true => (lab.kept(), None),
        false => (lab.1.clone(), Some(lab)),
    };
    let kubeconfig = knetdoctor::lab::LabState::require(LAB)
        .expect("the lab's state")
        .kubeconfig
        .expect("a control-plane lab has a kubeconfig");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = rt
        .block_on(knetdoctor::inspect::live::client(
            &knetdoctor::inspect::live::LiveSource {
                kubeconfig: Some(kubeconfig),
                ..Default::default()
            },
        ))
        .expect("a client of the lab's API server")
        .0;
    let cluster = synthetic::cluster(size);
    rt.block_on(create(&client, &cluster));
    println!(
        "waiting for the machine to settle (kube-proxy programs {} Services on each lab node)",
        size.services
    );
    settle(Duration::from_secs(600));

    // The dashboard's loop on a test backend, each frame checked against
    // the changes on their way.
    let timings: Arc<Mutex<Timings>> = Arc::default();
    {
        use tracing_subscriber::prelude::*;
        let only = tracing_subscriber::filter::Targets::new()
            .with_target("knetdoctor::watch", tracing::Level::TRACE);
        tracing_subscriber::registry()
            .with(Received(timings.clone()).with_filter(only))
            .init();
    }
    let (wake_tx, wake) = mpsc::channel::<Wake>();
    let quit = wake_tx.clone();
    let seen = timings.clone();
    let first: Arc<Mutex<Option<(Instant, usize, usize)>>> = Arc::default();
    let first_seen = first.clone();
    let started = Instant::now();
    let dashboard = std::thread::Builder::new()
        .name("kd-render".into())
        .spawn(move || {
            let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(160, 48))
                .expect("terminal");
            let options = Options {
                source: Source {
                    lab: LAB.into(),
                    ..Default::default()
                },
                // Only notifications and watches wake the reader in time.
                refresh: Duration::from_secs(600),
                namespace: None,
            };
            // Not the snapshot itself: the last one held would be freed here,
            // on the render thread, instead of on the dashboard's own.
            let mut last: Option<std::sync::Weak<Snapshot>> = None;
            run_on(&mut terminal, options, (wake_tx, wake), |app| {
                if let Some(e) = &app.error
                    && app.snapshot.is_none()
                {
                    eprintln!("dashboard: {e}");
                }
                let Some(s) = &app.snapshot else { return };
                if last
                    .as_ref()
                    .is_some_and(|l| std::ptr::eq(l.as_ptr(), Arc::as_ptr(s)))
                {
                    return;
                }
                last = Some(Arc::downgrade(s));
                let now = Instant::now();
                let mut f = first_seen.lock().unwrap();
                if f.is_none() {
                    *f = Some((now, s.cluster.nodes.len(), s.cluster.pods.len()));
                }
                let mut t = seen.lock().unwrap();
                t.snapshots += 1;
                if let Some(began) = s.reading_began {
                    let took = (now - began).as_secs_f64() * 1e3;
                    t.readings.push(took);
                    if let Some(cost) = &s.reading_cost {
                        t.costs.push((took, cost.clone()));
                    }
                }
                let mut shown = Vec::new();
                t.pending.retain_mut(|p| {
                    let on_screen = (p.shown)(s);
                    if on_screen {
                        shown.push(Shown {
                            made: p.made,
                            object: p.object.take(),
                            drawn: now,
                            reading: s.reading_began.map(|b| (b, s.reading_cost.clone())),
                        });
                    }
                    !on_screen
                });
                t.shown.extend(shown);
            })
        })
        .expect("the dashboard's thread");
    let deadline = Instant::now() + Duration::from_secs(900);
    let (at, nodes, pods) = loop {
        if let Some(f) = *first.lock().unwrap() {
            break f;
        }
        assert!(Instant::now() < deadline, "no snapshot in 900 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "dashboard: first snapshot {:.2} s after start ({nodes} nodes, {pods} pods from the watches' initial lists)",
        (at - started).as_secs_f64()
    );
    settle(Duration::from_secs(120));

    // The bursts, each timed twice: with kube-proxy as it runs, and with
    // kube-proxy on the lab's three nodes scheduled only on an idle core
    // (`SCHED_IDLE`). In a cluster each kube-proxy has its own node's
    // cores; here three re-program 10,000 Services (113,000 rules each,
    // iptables-restore after every change) on the two cores the API server,
    // etcd and the dashboard share, and the first figures measure that.
    let state = knetdoctor::lab::LabState::require(LAB).expect("the lab's state");
    let lab_processes: Vec<(String, i32)> = state
        .processes
        .iter()
        .map(|p| (p.role.clone(), p.pid))
        .collect();
    let proxies: Vec<i32> = state
        .processes
        .iter()
        .filter(|p| p.role == "kube-proxy")
        .map(|p| p.pid)
        .collect();
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let step = (size.services / changes).max(1);
    let pod_step = (size.pods / changes).max(1);
    let node = &topology.nodes[1];
    let route = peer_route(&node.netns);
    let scale = format!("{} nodes, {} pods", size.nodes, size.pods);
    // A burst timed to the screen, then reported with the CPU each
    // thread and lab process used over it.
    let measured = |what: &str, burst: &dyn Fn()| {
        let before = CpuUse::now(&lab_processes);
        burst();
        let readings = report(&timings, &scale, what);
        CpuUse::now(&lab_processes).print_since(&before, readings);
    };
    for (round, (idle, nice)) in [(false, 0), (true, 0), (true, NICE)]
        .into_iter()
        .enumerate()
    {
        schedule(&proxies, idle);
        renice_dashboard(nice);
        println!(
            "kube-proxy ({} processes) {}{}:",
            proxies.len(),
            if idle {
                "on idle cores only (SCHED_IDLE), as on nodes of their own"
            } else {
                "as it runs (SCHED_OTHER), on the cores the dashboard uses"
            },
            if nice != 0 {
                format!(
                    "; the dashboard's threads at nice {nice}, as `nice -n {nice} knetdoctor` starts them"
                )
            } else {
                String::new()
            }
        );
        // Each round's own Services: an endpoint of a different one goes
        // NotReady each time.
        let slices: Vec<&EndpointSlice> = (0..changes)
            .map(|i| &cluster.endpoint_slices[(i * step + round * step / 3) % size.services])
            .collect();
        put_back(&rt, &client, &slices);
        settle(Duration::from_secs(120));
        measured("watch event (an endpoint NotReady)", &|| {
            slice_burst(&rt, &client, &timings, &slices, every)
        });
        // A pod's Ready condition written False, as its kubelet writes a
        // failing readiness probe: a pod's most common change.
        let pods: Vec<&Pod> = (0..changes)
            .map(|i| &cluster.pods[(i * pod_step + round * 7) % cluster.pods.len()])
            .collect();
        pods_ready(&rt, &client, &pods);
        settle(Duration::from_secs(120));
        measured("watch event (a pod NotReady)", &|| {
            pod_burst(&rt, &client, &timings, &pods, every)
        });
        settle(Duration::from_secs(120));
        // A lab node's peer route deleted and put back.
        timings.lock().unwrap().clear_readings();
        measured("kernel notification (a peer route)", &|| {
            let start = Instant::now();
            for i in 0..changes {
                let at = start + every * i as u32;
                if let Some(wait) = at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                // A reading that began after the change holds it.
                let made = Instant::now();
                timings.lock().unwrap().pending.push(Pending {
                    made,
                    object: None,
                    shown: Box::new(move |s: &Snapshot| s.reading_began.is_some_and(|b| b > made)),
                });
                flip_route(&node.netns, &route, i);
            }
        });
        settle(Duration::from_secs(120));
    }
    schedule(&proxies, false);
    renice_dashboard(0);

    quit_dashboard(&quit, dashboard);
    if keep {
        println!("lab {LAB} kept up (KD_BENCH_KEEP)");
    }
}

/// Whether snapshot `s` shows slice `ns/name`'s first endpoint not ready.
fn not_ready(s: &Snapshot, ns: &str, name: &str) -> bool {
    let slices = &s.cluster.endpoint_slices;
    slices
        .binary_search_by(|e| {
            (e.metadata.namespace.as_deref(), e.metadata.name.as_deref())
                .cmp(&(Some(ns), Some(name)))
        })
        .ok()
        .and_then(|i| slices[i].endpoints.first()?.conditions.as_ref()?.ready)
        == Some(false)
}

/// Whether snapshot `s` shows pod `ns/name` not ready.
fn pod_not_ready(s: &Snapshot, ns: &str, name: &str) -> bool {
    let pods = &s.cluster.pods;
    pods.binary_search_by(|p| {
        (p.metadata.namespace.as_deref(), p.metadata.name.as_deref()).cmp(&(Some(ns), Some(name)))
    })
    .ok()
    .and_then(|i| {
        let conditions = pods[i].status.as_ref()?.conditions.as_ref()?;
        let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
        Some(ready.status == "False")
    }) == Some(true)
}

/// The Ready condition of each of `pods` written (a merge patch of its
/// status, as a kubelet writes it), `ready` or not; with `every`, one
/// write every `every`, each timed to the frame showing it.
fn write_ready(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    pods: &[&Pod],
    ready: bool,
    mut each: impl FnMut(&str, &str),
    every: Option<Duration>,
) {
    let body = json!({"status": {"conditions": [
        {"type": "Ready", "status": if ready { "True" } else { "False" }}
    ]}});
    let start = Instant::now();
    rt.block_on(async {
        let mut sent = Vec::new();
        for (i, pod) in pods.iter().enumerate() {
            if let Some(every) = every {
                tokio::time::sleep_until((start + every * i as u32).into()).await;
            }
            let (ns, name) = (
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default(),
            );
            each(ns, name);
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let (name, body) = (name.to_string(), body.clone());
            let write = async move {
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                    .map(drop)
            };
            match every {
                // Not waited for: the next write keeps the rate.
                Some(_) => sent.push(tokio::spawn(write)),
                // Untimed, one at a time (200 at once timed out).
                None => write.await.expect("the pod's status written"),
            }
        }
        for s in sent {
            s.await
                .expect("the write's task")
                .expect("the pod's status written");
        }
    });
}

/// Puts `pods` back ready (untimed): a kept cluster's were left NotReady.
fn pods_ready(rt: &tokio::runtime::Runtime, client: &kube::Client, pods: &[&Pod]) {
    write_ready(rt, client, pods, true, |_, _| {}, None);
}

/// One burst of pod status writes: each of `pods` written NotReady, one
/// every `every`, each timed from just before its write to the frame
/// showing it (and split at the dashboard's own watch).
fn pod_burst(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    timings: &Arc<Mutex<Timings>>,
    pods: &[&Pod],
    every: Duration,
) {
    {
        let mut t = timings.lock().unwrap();
        t.received.clear();
        t.clear_readings();
    }
    let pending = |ns: &str, name: &str| {
        let (ns, name) = (ns.to_string(), name.to_string());
        let key = (ns.clone(), name.clone());
        timings.lock().unwrap().pending.push(Pending {
            made: Instant::now(),
            object: Some(key),
            shown: Box::new(move |s: &Snapshot| pod_not_ready(s, &ns, &name)),
        });
    };
    write_ready(rt, client, pods, false, pending, Some(every));
}

/// p50, p99 and max of `v` (ms), sorted in place.
fn quantiles(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => "none".into(),
        n => format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            v[n / 2],
            v[n * 99 / 100],
            v[n - 1]
        ),
    }
}

/// Waits (up to 60 s) for every change to reach the screen, then prints
/// p50, p99 and max (a change never shown counts as the slowest, and is
/// said) — from the change, and for a watch event also from its arrival
/// at the bench's own watch — and starts the next burst afresh. Returns
/// how many readings it drew.
fn report(timings: &Mutex<Timings>, scale: &str, what: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !timings.lock().unwrap().pending.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut t = timings.lock().unwrap();
    let shown = std::mem::take(&mut t.shown);
    let delivered = std::mem::take(&mut t.delivered);
    let received = std::mem::take(&mut t.received);
    let mut readings = std::mem::take(&mut t.readings);
    let mut costs = std::mem::take(&mut t.costs);
    let missing = std::mem::take(&mut t.pending).len();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut took: Vec<f64> = shown.iter().map(|s| ms(s.drawn - s.made)).collect();
    if missing > 0 {
        println!(
            "  {missing} of {} changes not on screen 60 s after the burst (counted as the slowest)",
            missing + took.len()
        );
        took.extend(std::iter::repeat_n(f64::INFINITY, missing));
    }
    println!(
        "  {what} to frame, through the dashboard's loop: {} over {} changes at {scale} (target <= 100 ms)",
        quantiles(&mut took),
        took.len()
    );
    let watched: Vec<&Shown> = shown.iter().filter(|s| s.object.is_some()).collect();
    if !watched.is_empty() {
        // Arrival at a watch beside the dashboard's: the API server's and
        // etcd's part before it, the dashboard's after (a frame drawn
        // before the bench's watch heard of it counts as 0).
        let arrived = |s: &Shown| delivered.get(s.object.as_ref()?).copied();
        let mut api: Vec<f64> = watched
            .iter()
            .filter_map(|s| Some(ms(arrived(s)?.saturating_duration_since(s.made))))
            .collect();
        let mut ours: Vec<f64> = watched
            .iter()
            .filter_map(|s| Some(ms(s.drawn.saturating_duration_since(arrived(s)?))))
            .collect();
        // Only the slices have a watch of the bench's own beside.
        if !api.is_empty() {
            println!(
                "    of which the API server's, the change to its watch event's arrival: {}",
                quantiles(&mut api)
            );
            println!(
                "    and the dashboard's, the watch event's arrival to the frame: {} ({} of {} arrivals seen)",
                quantiles(&mut ours),
                ours.len(),
                watched.len()
            );
        }
        // The same, split at the dashboard's own watch: the API server's
        // delivery to it (after the bench's watch: it serves watchers one
        // by one), and the dashboard's own work after.
        let received_at = |s: &Shown| received.get(s.object.as_ref()?).copied();
        let mut delivery: Vec<f64> = watched
            .iter()
            .filter_map(|s| Some(ms(received_at(s)?.saturating_duration_since(arrived(s)?))))
            .collect();
        let mut own: Vec<f64> = watched
            .iter()
            .filter_map(|s| Some(ms(s.drawn.saturating_duration_since(received_at(s)?))))
            .collect();
        if !delivery.is_empty() {
            println!(
                "      the bench's watch to the dashboard's: {}",
                quantiles(&mut delivery)
            );
        }
        println!(
            "      the dashboard's watch to the frame: {} ({} of {} seen by it)",
            quantiles(&mut own),
            own.len(),
            watched.len()
        );
        // The slowest: a wait before their reading began (the reading
        // before it still running, or the reader not woken), or the
        // reading itself.
        let mut slowest: Vec<(f64, &Shown, Instant)> = watched
            .iter()
            .filter_map(|s| {
                let at = received_at(s)?;
                Some((ms(s.drawn.saturating_duration_since(at)), *s, at))
            })
            .collect();
        slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (took, s, at) in slowest.iter().take(3) {
            let Some((began, cost)) = &s.reading else {
                continue;
            };
            let before = ms(began.saturating_duration_since(*at));
            let reading = ms(s.drawn.saturating_duration_since(*began));
            println!(
                "        {took:.1} ms: {before:.1} ms before its reading began, {reading:.1} ms its reading to the frame{}",
                match cost {
                    Some(c) => format!(" ({})", cost_line(reading, c)),
                    None => String::new(),
                }
            );
        }
    }
    println!(
        "    each reading, its start to its frame: {} over {} snapshots",
        quantiles(&mut readings),
        readings.len()
    );
    // Where the slowest went: the reader's own work, or waits.
    costs.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (took, c) in costs.iter().take(3) {
        println!("      {took:.1} ms: {}", cost_line(*took, c));
    }
    readings.len()
}

/// A reading's phases, `took` ms from its start to its frame.
fn cost_line(took: f64, c: &ReadingCost) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "reader CPU {:.1} ms, waiting for a core {}, {} page faults; objects {:.1}, nodes and verdicts {:.1} (verdicts {:.1}), snapshot {:.1}, then to the frame {:.1}; changed {:?}{}{}{}",
        ms(c.cpu),
        c.waited.map_or("?".into(), |w| format!("{:.1} ms", ms(w))),
        c.faults,
        ms(c.objects),
        ms(c.gather),
        ms(c.judge),
        ms(c.build),
        took - ms(c.objects + c.gather + c.build),
        c.changed,
        if c.whole { ", every node read" } else { "" },
        match c.kinds_copied.is_empty() {
            true => String::new(),
            false => format!("; copied whole: {:?}", c.kinds_copied),
        },
        match c.indexed.is_empty() {
            true => String::new(),
            false => format!("; indexed again: {:?}", c.indexed),
        }
    )
}

/// Puts kube-proxy's processes `pids` (every thread) under `SCHED_IDLE`
/// (`idle`) or back under `SCHED_OTHER`; threads made later inherit it.
fn schedule(pids: &[i32], idle: bool) {
    let policy = if idle {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param { sched_priority: 0 };
    for pid in pids {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("kube-proxy's threads");
        for tid in tasks.filter_map(|t| t.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
            // SAFETY: a valid parameter for a thread id just listed; a
            // thread gone since is refused, which is all it does.
            unsafe { libc::sched_setscheduler(tid, policy, &param) };
        }
    }
}

/// Puts `slices` back as the cluster has them (untimed): a kept
/// cluster's were left NotReady by the run before.
fn put_back(rt: &tokio::runtime::Runtime, client: &kube::Client, slices: &[&EndpointSlice]) {
    rt.block_on(async {
        for slice in slices {
            let api: Api<EndpointSlice> =
                Api::namespaced(client.clone(), slice.metadata.namespace.as_deref().unwrap());
            let body = json!({ "endpoints": slice.endpoints });
            let name = slice.metadata.name.as_deref().unwrap();
            api.patch(name, &PatchParams::default(), &Patch::Merge(body))
                .await
                .expect("the slice put back");
        }
    });
}

/// One burst of watch events: each of `slices` has its first endpoint
/// written not ready (its endpoints as the endpoint controller writes
/// them: a merge patch replaces the list), one every `every`, with a watch
/// of the bench's own noting when each change arrives.
fn slice_burst(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    timings: &Arc<Mutex<Timings>>,
    slices: &[&EndpointSlice],
    every: Duration,
) {
    let targets: Vec<(String, String, serde_json::Value)> = slices
        .iter()
        .map(|slice| {
            let mut endpoints = slice.endpoints.clone();
            if let Some(c) = endpoints[0].conditions.as_mut() {
                c.ready = Some(false);
            }
            (
                slice.metadata.namespace.clone().unwrap_or_default(),
                slice.metadata.name.clone().unwrap_or_default(),
                json!({ "endpoints": endpoints }),
            )
        })
        .collect();
    // The put-back's own events are not this burst's.
    timings.lock().unwrap().received.clear();
    let all: Api<EndpointSlice> = Api::all(client.clone());
    let version = rt
        .block_on(all.list_metadata(&ListParams::default().labels(MANAGED_BY).limit(1)))
        .expect("list slices")
        .metadata
        .resource_version
        .expect("a list's resourceVersion");
    let arrivals = timings.clone();
    let watch = rt.spawn(async move {
        let events = all
            .watch(&WatchParams::default().labels(MANAGED_BY), &version)
            .await
            .expect("a watch of the slices");
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            if let Ok(WatchEvent::Modified(slice)) = event {
                let key = (
                    slice.metadata.namespace.clone().unwrap_or_default(),
                    slice.metadata.name.clone().unwrap_or_default(),
                );
                arrivals
                    .lock()
                    .unwrap()
                    .delivered
                    .entry(key)
                    .or_insert_with(Instant::now);
            }
        }
    });
    timings.lock().unwrap().clear_readings();
    let start = Instant::now();
    rt.block_on(async {
        let mut sent = Vec::new();
        for (i, (ns, name, body)) in targets.into_iter().enumerate() {
            tokio::time::sleep_until((start + every * i as u32).into()).await;
            let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
            let (ns2, name2) = (ns.clone(), name.clone());
            timings.lock().unwrap().pending.push(Pending {
                made: Instant::now(),
                object: Some((ns.clone(), name.clone())),
                shown: Box::new(move |s: &Snapshot| not_ready(s, &ns2, &name2)),
            });
            sent.push(tokio::spawn(async move {
                let t = Instant::now();
                api.patch(&name, &PatchParams::default(), &Patch::Merge(body))
                    .await
                    .map(|_| t.elapsed().as_secs_f64() * 1e3)
            }));
        }
        let mut answered = Vec::new();
        for s in sent {
            answered.push(s.await.expect("the patch task").expect("the slice patched"));
        }
        println!(
            "  the API server answered each patch (written in etcd): {}",
            quantiles(&mut answered)
        );
    });
    // Every change on screen (or 60 s) before the watch ends.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !timings.lock().unwrap().pending.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    watch.abort();
}

/// Waits until both cores have been mostly idle (< 25 % busy) for three
/// seconds in a row, or `most` has passed: a burst timed while kube-proxy
/// still programs 10,000 Services measures the machine, not the path.
fn settle(most: Duration) {
    fn busy_idle() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
        (cpu.iter().sum::<u64>() - idle, idle)
    }
    let start = Instant::now();
    let mut quiet = 0;
    let mut last = busy_idle();
    while quiet < 3 && start.elapsed() < most {
        std::thread::sleep(Duration::from_secs(1));
        let now = busy_idle();
        let (busy, idle) = (now.0 - last.0, now.1 - last.1);
        last = now;
        quiet = if busy * 4 < busy + idle { quiet + 1 } else { 0 };
    }
    println!(
        "  settled after {:.0} s{}",
        start.elapsed().as_secs_f64(),
        if quiet < 3 {
            " (still busy: timed anyway)"
        } else {
            ""
        }
    );
}

/// Creates the synthetic cluster in the API server, unless a kept run
/// already did: its namespaces, nodes (as the controller manager leaves a
/// node whose kubelet is silent), pods (their status as a kubelet would
/// report it), selector-less Services and their slices.
async fn create(client: &kube::Client, cluster: &knetdoctor::model::Cluster) {
    let nodes: Api<Node> = Api::all(client.clone());
    // The slices are made last: all there, all the rest is.
    let have = Api::<EndpointSlice>::all(client.clone())
        .list_metadata(&ListParams::default().labels(MANAGED_BY))
        .await
        .expect("list slices")
        .items
        .len();
    if have >= cluster.endpoint_slices.len() {
        println!("the API server already holds the synthetic cluster ({have} of its slices)");
        return;
    }
    let start = Instant::now();
    let pp = PostParams::default();
    let namespaces: std::collections::BTreeSet<String> = cluster
        .pods
        .iter()
        .filter_map(|p| p.metadata.namespace.clone())
        .collect();
    for ns in &namespaces {
        let n = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(ns.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        let namespaces_api = Api::<Namespace>::all(client.clone());
        created(|| namespaces_api.create(&pp, &n)).await;
    }
    // The ServiceAccount admission plugin holds a pod until its namespace's
    // `default` account is there: the controller manager makes it.
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let made = accounts
            .list_metadata(&ListParams::default().fields("metadata.name=default"))
            .await
            .expect("list service accounts")
            .items
            .iter()
            .filter(|a| namespaces.contains(a.metadata.namespace.as_deref().unwrap_or_default()))
            .count();
        if made == namespaces.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no default ServiceAccounts in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hour_ago = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(1),
    );
    let unreachable = |effect: &str| Taint {
        key: "node.kubernetes.io/unreachable".into(),
        effect: effect.into(),
        time_added: (effect == "NoExecute").then(|| hour_ago.clone()),
        ..Default::default()
    };
    let n = futures::stream::iter(cluster.nodes.iter().cloned())
        .map(|mut node| {
            let api = nodes.clone();
            let spec = node.spec.get_or_insert_default();
            spec.taints = Some(vec![unreachable("NoSchedule"), unreachable("NoExecute")]);
            let ip = node
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(knetdoctor::model::flannel::annotation::PUBLIC_IP))
                .cloned();
            let hour_ago = hour_ago.clone();
            async move {
                let name = node.metadata.name.clone().unwrap_or_default();
                let pp = PostParams::default();
                created(|| api.create(&pp, &node)).await;
                let conditions: Vec<_> = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"]
                    .into_iter()
                    .map(|t| {
                        json!({"type": t, "status": "Unknown", "reason": "NodeStatusUnknown",
                               "message": "Kubelet stopped posting node status.",
                               "lastHeartbeatTime": hour_ago, "lastTransitionTime": hour_ago})
                    })
                    .collect();
                let status = json!({"status": {"conditions": conditions,
                    "addresses": [{"type": "InternalIP", "address": ip}]}});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await
                    .expect("node status");
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .count()
        .await;
    let tolerate = |key: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        ..Default::default()
    };
    let p = futures::stream::iter(cluster.pods.iter().cloned())
        .map(|mut pod| {
            let api: Api<Pod> =
                Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap());
            let status = pod.status.take();
            let spec = pod.spec.get_or_insert_default();
            for c in &mut spec.containers {
                c.image = Some("registry.k8s.io/pause:3.10".into());
            }
            spec.tolerations = Some(vec![
                tolerate("node.kubernetes.io/unreachable"),
                tolerate("node.kubernetes.io/not-ready"),
            ]);
            async move {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let pp = PostParams::default();
                created(|| api.create(&pp, &pod)).await;
                let status = status.expect("synthetic pods have a status");
                let ip = status.pod_ip.clone();
                let body = json!({"status": {"phase": status.phase, "podIP": ip,
                    "podIPs": [{"ip": ip}], "conditions": status.conditions}});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(body))
                    .await
                    .expect("pod status");
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .count()
        .await;
    let s = futures::stream::iter(cluster.services.iter().cloned())
        .map(|mut svc| {
            let api: Api<Service> =
                Api::namespaced(client.clone(), svc.metadata.namespace.as_deref().unwrap());
            let spec = svc.spec.get_or_insert_default();
            // The server's own ranges give the addresses and node ports
            // (the lab's Services hold some of the synthetic ones).
            spec.cluster_ip = None;
            spec.cluster_ips = None;
            spec.selector = None;
            for p in spec.ports.iter_mut().flatten() {
                p.node_port = None;
            }
            async move {
                let pp = PostParams::default();
                created(|| api.create(&pp, &svc)).await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .count()
        .await;
    let (label, value) = MANAGED_BY.split_once('=').expect("a label");
    let e = futures::stream::iter(cluster.endpoint_slices.iter().cloned())
        .map(|mut slice| {
            let api: Api<EndpointSlice> =
                Api::namespaced(client.clone(), slice.metadata.namespace.as_deref().unwrap());
            slice
                .metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(label.into(), value.into());
            async move {
                let pp = PostParams::default();
                created(|| api.create(&pp, &slice)).await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .count()
        .await;
    let secs = start.elapsed().as_secs_f64();
    let requests = namespaces.len() + 2 * n + 2 * p + s + e;
    println!(
        "created in the API server in {secs:.0} s ({:.0} requests/s): {n} nodes, {p} pods, {s} Services, {e} EndpointSlices",
        requests as f64 / secs
    );
}

/// A create made, or already there (a run before made it); a request
/// the connection lost is sent again (the API server, busy with 150,000
/// pods, once dropped one after twenty minutes and the run was lost).
async fn created<K, F>(mut create: impl FnMut() -> F)
where
    F: std::future::Future<Output = kube::Result<K>>,
{
    for attempt in 1.. {
        match create().await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 409 => return,
            Err(e) if attempt < 5 && !matches!(e, kube::Error::Api(_)) => {
                eprintln!("create: {e}; sent again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("create: {e}"),
        }
    }
}

/// CPU time and run-queue wait (schedstat, ns) per thread of this process
/// (by name: the dashboard names its threads) and per lab process (by
/// role, all its threads): where a burst's readings spent their time, on a
/// core or waiting for one.
#[derive(Default)]
struct CpuUse(BTreeMap<String, (u64, u64)>);

impl CpuUse {
    fn now(lab: &[(String, i32)]) -> CpuUse {
        let mut by = BTreeMap::<String, (u64, u64)>::new();
        let mut add = |name: String, task: &std::path::Path| {
            let Ok(s) = std::fs::read_to_string(task.join("schedstat")) else {
                return;
            };
            let mut f = s.split_whitespace().filter_map(|v| v.parse::<u64>().ok());
            let (run, wait) = (f.next().unwrap_or(0), f.next().unwrap_or(0));
            let e = by.entry(name).or_default();
            e.0 += run;
            e.1 += wait;
        };
        let tasks = |pid: &str| {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .filter_map(|t| Some(t.ok()?.path()))
                .collect::<Vec<_>>()
        };
        for task in tasks("self") {
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            // Unnamed threads carry the bench binary's name.
            let name = match comm.trim() {
                c if c.starts_with("tui_watch") => "bench (unnamed threads)".to_string(),
                c => c.to_string(),
            };
            add(name, &task);
        }
        for (role, pid) in lab {
            for task in tasks(&pid.to_string()) {
                add(format!("lab: {role}"), &task);
            }
        }
        // The time the virtual machine's host ran something else on its
        // cores (/proc/stat "steal", in USER_HZ ticks of 10 ms): a reading
        // that took 100 ms of "CPU" for 7 ms of work was stalled so.
        let steal = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .next()?
                .split_whitespace()
                .nth(8)?
                .parse::<u64>()
                .ok()
        });
        if let Some(ticks) = steal {
            by.insert("host: steal (both cores)".into(), (ticks * 10_000_000, 0));
        }
        CpuUse(by)
    }

    /// What each used since `before`, printed: ms on a core and ms
    /// runnable but waiting for one, and per reading for the reader.
    fn print_since(&self, before: &CpuUse, readings: usize) {
        println!("    CPU over the burst (ms on a core / ms waiting for one):");
        for (name, (run, wait)) in &self.0 {
            let (r0, w0) = before.0.get(name).copied().unwrap_or_default();
            let (run, wait) = (run.saturating_sub(r0), wait.saturating_sub(w0));
            if run < 1_000_000 {
                continue;
            }
            let per = match (name.as_str(), readings) {
                ("kd-reader", n) if n > 0 => format!(
                    "  ({:.1} / {:.1} per reading)",
                    run as f64 / 1e6 / n as f64,
                    wait as f64 / 1e6 / n as f64
                ),
                _ => String::new(),
            };
            println!(
                "      {name:<26} {:>8.0} / {:>8.0}{per}",
                run as f64 / 1e6,
                wait as f64 / 1e6
            );
        }
    }
}

/// Notes when the dashboard's watch received each slice's change, from
/// its `knetdoctor::watch` trace events.
struct Received(Arc<Mutex<Timings>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Received {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        /// The event's namespace and name, and its kind.
        #[derive(Default)]
        struct Key(String, String, String);
        impl tracing::field::Visit for Key {
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                match f.name() {
                    "namespace" => self.0 = v.to_string(),
                    "name" => self.1 = v.to_string(),
                    _ => {}
                }
            }
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "kind" {
                    self.2 = format!("{v:?}");
                }
            }
        }
        let at = Instant::now();
        let mut k = Key::default();
        e.record(&mut k);
        // A re-list (no object of its own): said as it happens.
        if *e.metadata().level() == tracing::Level::DEBUG {
            println!("    (the dashboard's watch of {} re-listed)", k.2);
            return;
        }
        self.0
            .lock()
            .unwrap()
            .received
            .entry((k.0, k.1))
            .or_insert(at);
    }
}

/// The nice value of the last round's dashboard: what an operator who
/// starts it on a node the cluster keeps busy would give it (README).
const NICE: i32 = -5;

/// Puts the dashboard's threads on a change's way to the screen (the
/// watches', the reader's, the render loop's and the kernels' notification
/// threads) at nice `nice`; the bench's own threads are left as they are.
fn renice_dashboard(nice: i32) {
    let tasks = std::fs::read_dir("/proc/self/task").expect("this process's threads");
    for task in tasks.filter_map(|t| t.ok()) {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let on_the_way = ["kd-reader", "kd-watches", "kd-render", "kd-notify"];
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        if on_the_way.contains(&comm.trim()) {
            // SAFETY: plain integers; a thread gone since is refused.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) };
        }
    }
}
