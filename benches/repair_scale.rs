//! `cargo bench --bench repair_scale` (as root): a node of the 5,000-node
//! synthetic cluster has lost all its flannel state — flannel.1 is there,
//! but none of its 4,999 routes, neighbours and FDB entries. knetdoctor
//! reads the node, checks it, plans and applies the repair (journaled);
//! side by side in the same run, `ip -batch` and `bridge -batch` load the
//! same entries into the same, fresh namespace. Prints both times and the
//! ratio (target: at most 0.9 of the two batches together).
//!
//! The namespace is `kdlab-bench-repair-<pid>`, with no link to the root
//! namespace; nothing is sent anywhere (entries only).

mod common;
use common::{Scratch, env};

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use knetdoctor::dataplane::{Netns, NodeState, read_node_state};
use knetdoctor::model::ClusterNetwork;
use knetdoctor::repair::{Category, Options, apply, plan};
use knetdoctor::synthetic::{self, Size};

/// A scratch namespace holding node 0's devices as flannel left them (eth0
/// with the node's address, flannel.1 on top).
fn flannel_node(state: &NodeState) -> Scratch {
    let ns = Scratch::new("repair").expect("a scratch namespace (run as root)");
    let vtep = state.link("flannel.1").expect("synthetic flannel.1");
    let vx = vtep.vxlan.as_ref().expect("vxlan");
    let local = vx.local.expect("local");
    let setup = format!(
        "link add eth0 type veth peer name eth0peer\n\
         addr add {local}/16 dev eth0\n\
         link set eth0 up\nlink set eth0peer up\n\
         link add flannel.1 address {} mtu {} type vxlan id {} local {local} dev eth0 dstport {} nolearning\n\
         link set flannel.1 up\n",
        vtep.mac.as_deref().unwrap_or_default(),
        vtep.mtu,
        vx.vni,
        vx.port
    );
    batch(&ns, "ip", &setup);
    ns
}

/// `TOOL -n NS -batch -` with `input`; seconds.
fn batch(ns: &Scratch, tool: &str, input: &str) -> f64 {
    let t = Instant::now();
    let mut c = Command::new(tool)
        .args(["-n", &ns.0, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "{tool} -batch failed");
    t.elapsed().as_secs_f64()
}

/// Routes, neighbours and FDB entries on flannel.1, as iproute2 counts them.
fn counts(ns: &Scratch) -> (usize, usize, usize) {
    let count = |argv: &[&str]| -> usize {
        let out = Command::new(argv[0])
            .args(["-n", &ns.0])
            .args(&argv[1..])
            .output()
            .unwrap();
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            .map(|v| v.len())
            .unwrap_or(0)
    };
    (
        count(&["ip", "-4", "-j", "route", "show", "dev", "flannel.1"]),
        count(&["ip", "-4", "-j", "neigh", "show", "dev", "flannel.1"]),
        count(&["bridge", "-j", "fdb", "show", "dev", "flannel.1"]),
    )
}

/// Removes `ns` with the kernel's work done before it returns: its devices
/// are deleted first, which flushes their 15,000 entries synchronously,
/// where `ip netns del` alone leaves them to a kernel worker that would
/// still be freeing them, under the same lock, while the next side is
/// timed.
fn remove(ns: Scratch) {
    for dev in ["flannel.1", "eth0"] {
        let _ = Command::new("ip")
            .args(["-n", &ns.0, "link", "del", dev])
            .status();
    }
    drop(ns);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    knetdoctor::without_huge_pages();
    if std::env::var("KD_BENCH_DEBUG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter("knetdoctor=debug")
            .with_writer(std::io::stderr)
            .init();
    }
    let nodes = env("KD_BENCH_NODES", 5000);
    let rounds = env("KD_BENCH_ROUNDS", 3);
    let t = Instant::now();
    let cluster = synthetic::cluster(Size {
        nodes,
        pods: nodes,
        services: 10,
        endpoints_per_service: 1,
    });
    let node = "node-00000";
    let healthy = synthetic::node_state(&cluster, 0);
    let net = ClusterNetwork::from_cluster(&cluster).expect("network config");
    println!(
        "cluster of {nodes} nodes built in {:.2} s; node 0 should hold {} routes, {} neigh, {} FDB entries on flannel.1",
        t.elapsed().as_secs_f64(),
        healthy
            .routes
            .iter()
            .filter(|r| r.dev.as_deref() == Some("flannel.1") && r.gateway.is_some())
            .count(),
        healthy.neighs.len(),
        healthy.fdb.len()
    );
    let opts = Options {
        only: vec![Category::Neigh, Category::Fdb, Category::Routes],
        include_kube_proxy: false,
    };
    let journal = std::env::temp_dir().join(format!("kd-bench-repair-{}", std::process::id()));
    std::fs::create_dir_all(&journal).unwrap();

    // The same entries as iproute2 batches, written as flannel would.
    let mut ip_input = String::new();
    let mut bridge_input = String::new();
    for n in healthy.neighs.iter().filter(|n| n.dev == "flannel.1") {
        ip_input.push_str(&format!(
            "neigh replace {} lladdr {} dev flannel.1 nud permanent\n",
            n.dst,
            n.lladdr.as_deref().unwrap_or_default()
        ));
    }
    for f in healthy.fdb.iter().filter(|f| f.dev == "flannel.1") {
        if let Some(dst) = f.dst {
            bridge_input.push_str(&format!(
                "fdb replace {} dev flannel.1 dst {dst} self permanent\n",
                f.mac
            ));
        }
    }
    for r in &healthy.routes {
        if let (Some("flannel.1"), Some(gw)) = (r.dev.as_deref(), r.gateway) {
            ip_input.push_str(&format!(
                "route replace {} via {gw} dev flannel.1 onlink\n",
                r.dst
            ));
        }
    }

    let (mut ours, mut read_plan, mut applied, mut theirs) = (vec![], vec![], vec![], vec![]);
    let mut steps = 0;
    for round in 0..rounds {
        // knetdoctor: read, check, plan, apply — the whole repair.
        let ns = flannel_node(&healthy);
        let netns = Netns::named(ns.0.clone());
        let t = Instant::now();
        let state = read_node_state(&netns).expect("read the node");
        let t_read = t.elapsed().as_secs_f64();
        let mut findings = Vec::new();
        knetdoctor::check::check_node(&cluster, node, &state, Some(&net), &mut findings);
        let t_check = t.elapsed().as_secs_f64();
        let p = plan(node, &findings, &state, Default::default, &opts);
        if std::env::var("KD_BENCH_DEBUG").is_ok() {
            eprintln!(
                "read {t_read:.3} s, check {:.3} s, plan {:.3} s",
                t_check - t_read,
                t.elapsed().as_secs_f64() - t_check
            );
        }
        let planned = t.elapsed().as_secs_f64();
        let j = apply::apply(&netns, node, &p.steps, &state, &journal).expect("apply");
        let total = t.elapsed().as_secs_f64();
        assert!(
            j.entries.iter().all(|e| e.applied),
            "a step failed: {:?}",
            j.entries.iter().find(|e| e.error.is_some())
        );
        let got = counts(&ns);
        assert_eq!(
            got,
            (nodes - 1, nodes - 1, nodes - 1),
            "knetdoctor's repair"
        );
        steps = p.steps.len();
        read_plan.push(planned);
        applied.push(total - planned);
        ours.push(total);
        remove(ns);

        // iproute2: the same entries, from ready-made batch files.
        let ns = flannel_node(&healthy);
        let t = Instant::now();
        batch(&ns, "ip", &ip_input);
        batch(&ns, "bridge", &bridge_input);
        theirs.push(t.elapsed().as_secs_f64());
        assert_eq!(counts(&ns), got, "iproute2 loaded other entries");
        remove(ns);
        println!(
            "round {}: knetdoctor {:.3} s (read+check+plan {:.3} s, apply {:.3} s), ip -batch + bridge -batch {:.3} s",
            round + 1,
            ours[round],
            read_plan[round],
            applied[round],
            theirs[round]
        );
    }
    let _ = std::fs::remove_dir_all(&journal);
    let (ours, theirs, applied) = (median(ours), median(theirs), median(applied));
    println!(
        "knetdoctor repair (read + check + plan + journaled apply of {steps} actions): {ours:.3} s median of {rounds}; read+check+plan {:.3} s, apply {:.3} s",
        median(read_plan),
        applied
    );
    println!("ip -batch + bridge -batch (same {steps} entries): {theirs:.3} s median");
    println!(
        "ratio knetdoctor / iproute2 = {:.2} (target <= 0.9); the journaled apply alone: {:.2}",
        ours / theirs,
        applied / theirs
    );
}
