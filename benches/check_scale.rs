//! `cargo bench --bench check_scale` (as root): the scale — 5,000
//! nodes, 150,000 pods, 10,000 Services with 3 endpoints each, and the
//! matching kube-proxy + flannel ruleset on one node. It loads the cluster
//! JSON, parses and indexes the ruleset, builds the model and runs every
//! check for that node; in the same run `iptables-legacy-restore` loads the
//! same ruleset into a scratch network namespace. Prints times, peak memory
//! and the ratio. Sizes can be scaled down with KD_BENCH_NODES etc.

mod common;
use common::{Scratch, env};

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use knetdoctor::dataplane::iptables::save;
use knetdoctor::dataplane::state::IptablesBackendState;
use knetdoctor::inspect::kubectl;
use knetdoctor::synthetic::{self, Size};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// This process's CPU time so far, user and system, in seconds: the
/// system part of a load is mostly the kernel clearing fresh pages, which
/// on this VM costs from 0.1 s to several seconds for the same gigabyte
/// (the host backs freed memory again), whatever the load itself does.
fn cpu_secs() -> (f64, f64) {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (f64::NAN, f64::NAN);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

fn restore_legacy(text: &str) -> Option<f64> {
    // Without one (not root) the side-by-side run is skipped.
    let ns = Scratch::new("check")?;
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0, "iptables-legacy-restore", "-w"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        eprintln!(
            "iptables-legacy-restore failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(secs)
}

/// The knetdoctor side, run in a child process so that its peak memory is
/// its own: load the JSON in `dir`, parse the ruleset in `rules`, build the
/// model and run every check for node-00000. Prints `PARSE_SECS=`.
fn measure(dir: &str, rules_file: &str) {
    let t_all = Instant::now();
    let t = Instant::now();
    let cluster = kubectl::read_dir(std::path::Path::new(dir)).expect("read the cluster JSON");
    let load = t.elapsed().as_secs_f64();
    let t = Instant::now();
    cluster.index();
    let index = t.elapsed().as_secs_f64();
    let (user, system) = cpu_secs();
    // The load's own peak: the node's ruleset is read after it.
    println!(
        "knetdoctor: JSON into the indexed cluster {:.3} s (target < 1 s), CPU {user:.2} s user + {system:.2} s system on {} cores; peak RSS {:.0} MiB (target < 1126, the 1.1 GiB before)",
        load + index,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        peak_rss_mib()
    );
    let text = std::fs::read_to_string(rules_file).expect("ruleset file");
    let t = Instant::now();
    let ruleset = save::parse(&text).expect("parse the ruleset");
    let parse = t.elapsed().as_secs_f64();
    let mut state = synthetic::node_state(&cluster, 0);
    state.iptables.push(IptablesBackendState {
        backend: "legacy".into(),
        ruleset,
        raw: None,
    });
    let t = Instant::now();
    let findings = knetdoctor::check::run(&cluster, &[("node-00000".to_string(), state.clone())]);
    let check = t.elapsed().as_secs_f64();
    incremental(&cluster, state);
    let total = t_all.elapsed().as_secs_f64();
    println!(
        "knetdoctor: load JSON {load:.3} s, parse+index ruleset {parse:.3} s, index model {index:.3} s, every check {check:.3} s ({} findings)",
        findings.len()
    );
    println!(
        "knetdoctor: full check of one node {:.3} s after loading (target < 2 s); end to end incl. JSON {total:.3} s; peak RSS {:.0} MiB (target < 1536)",
        parse + index + check,
        peak_rss_mib()
    );
    assert!(
        findings.is_empty(),
        "the synthetic cluster is healthy: {:?}",
        findings.first()
    );
    println!("PARSE_SECS={parse}");
}

/// The live path's re-check of node-00000 after one change of its state,
/// against the full check of the node: a route gone (flannel's part again,
/// the 113,000 rules kept) and a Service chain gone (the whole node).
fn incremental(cluster: &knetdoctor::model::Cluster, state: knetdoctor::dataplane::NodeState) {
    use knetdoctor::check::incremental::Verdicts;
    use std::sync::Arc;
    let node = "node-00000".to_string();
    let mut v = Verdicts::new();
    v.update(
        cluster,
        &knetdoctor::model::reading::ApiKind::ALL
            .into_iter()
            .collect(),
        &Arc::new(vec![(node.clone(), state.clone())]),
    );
    let mut no_route = state.clone();
    let peer_route = no_route
        .routes
        .iter()
        .position(|r| r.gateway.is_some())
        .expect("a route to a peer");
    no_route.routes.remove(peer_route);
    let t = Instant::now();
    let f = v.update(
        cluster,
        &Default::default(),
        &Arc::new(vec![(node.clone(), no_route)]),
    );
    let route = t.elapsed().as_secs_f64();
    let route_rules = v.last_rules_checked;
    assert!(!f.is_empty(), "the missing route is found");
    let mut no_chain = state;
    let chain = no_chain.iptables[0]
        .ruleset
        .table("nat")
        .and_then(|t| t.chains().iter().find(|c| c.name.starts_with("KUBE-SVC-")))
        .map(|c| c.name.clone())
        .expect("a service chain");
    no_chain.iptables[0]
        .ruleset
        .table_mut("nat")
        .remove_chain(&chain);
    let t = Instant::now();
    let f = v.update(
        cluster,
        &Default::default(),
        &Arc::new(vec![(node, no_chain)]),
    );
    let rules = t.elapsed().as_secs_f64();
    assert!(!f.is_empty(), "the missing chain is found");
    println!(
        "knetdoctor: re-check after one change of node-00000 (check::incremental): a route gone {:.0} ms ({} nodes' rules judged again), a Service chain gone {:.0} ms ({})",
        route * 1000.0,
        route_rules,
        rules * 1000.0,
        v.last_rules_checked
    );
}

fn main() {
    knetdoctor::without_huge_pages();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--measure") {
        return measure(&args[i + 1], &args[i + 2]);
    }
    let size = Size {
        nodes: env("KD_BENCH_NODES", Size::LARGE.nodes),
        pods: env("KD_BENCH_PODS", Size::LARGE.pods),
        services: env("KD_BENCH_SERVICES", Size::LARGE.services),
        endpoints_per_service: 3,
    };
    println!(
        "synthetic cluster: {} nodes, {} pods, {} services x 3 endpoints",
        size.nodes, size.pods, size.services
    );

    let t = Instant::now();
    let generated = synthetic::cluster(size);
    let dir = std::env::temp_dir().join(format!("knetdoctor-bench-{}", std::process::id()));
    kubectl::write_dir(&generated, &dir).expect("write the cluster JSON");
    let json_mib: f64 = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len() as f64)
        .sum::<f64>()
        / 1048576.0;
    let text = synthetic::iptables_text(&generated, 0);
    let rules_file = dir.with_extension("rules");
    std::fs::write(&rules_file, &text).expect("write the ruleset");
    let rules = text.lines().filter(|l| l.starts_with("-A ")).count();
    let chains = text.lines().filter(|l| l.starts_with(':')).count();
    drop(generated);
    println!(
        "generated in {:.2} s: {json_mib:.0} MiB of kubectl JSON, ruleset of {rules} rules in {chains} chains",
        t.elapsed().as_secs_f64()
    );

    // What was just written is on disk first: the kernel's write-back of
    // 118 MiB is not the load's to pay (it made the load 2-4x slower).
    let _ = Command::new("sync").status();
    // Twice: on this VM the first process to touch fresh memory after the
    // generator freed gigabytes waits on the host for its pages (the
    // kernel's page clearing was 63 % of a 1.7 s load), the second does
    // not. Both are printed; the ratio takes the faster parse.
    let mut parse = f64::INFINITY;
    for run in ["first", "second"] {
        let child = Command::new(std::env::current_exe().expect("own path"))
            .args([
                "--measure",
                dir.to_str().unwrap(),
                rules_file.to_str().unwrap(),
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("run the measuring child");
        let out = String::from_utf8_lossy(&child.stdout);
        println!("{run} run:");
        out.lines()
            .filter(|l| !l.starts_with("PARSE_SECS="))
            .for_each(|l| println!("  {l}"));
        assert!(child.status.success(), "the measuring child failed");
        parse = parse.min(
            out.lines()
                .find_map(|l| l.strip_prefix("PARSE_SECS=")?.parse().ok())
                .expect("child reports its parse time"),
        );
    }
    // KD_BENCH_KEEP=1 keeps the files for profiling the child alone
    // (`check_scale --measure DIR RULES`).
    if std::env::var("KD_BENCH_KEEP").is_err() {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&rules_file);
    } else {
        println!("kept {} and {}", dir.display(), rules_file.display());
    }

    match restore_legacy(&text) {
        Some(restore) => println!(
            "iptables-legacy-restore: {restore:.3} s for the same {rules} rules; parse+index / restore = {:.3} (target <= 0.1)",
            parse / restore
        ),
        None => println!("iptables-legacy-restore: not measured"),
    }
}
