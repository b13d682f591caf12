//! `cargo bench --bench agent_scale` (as root): the node agent at scale.
//!
//! 1. The payload of one node at the scale (5,000 nodes, so 4,999
//!    peers; 10,000 Services; the matching kube-proxy + flannel ruleset):
//!    its JSON, compressed by the agent's encoder, beside `gzip -6` on the
//!    same bytes.
//! 2. On the control-plane lab (real kube-apiserver 1.32, one real agent
//!    per node): every node's state through the agents against the local
//!    path, in the same run.
//! 3. One client gathering the state of 500 simulated nodes through the
//!    same API server (a responder answers their NodeReads from synthetic
//!    states, as agents would), with the API server's request count
//!    (`apiserver_request_total`) and the time, beside one LIST of the same
//!    500 states published as objects (the least any client could do).
//!
//! Sizes scale down with KD_BENCH_NODES, KD_BENCH_SERVICES, KD_BENCH_SIM.

mod common;
use common::env;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use knetdoctor::agent::api::{
    Answer, NODE_LABEL, NodeAgent, NodeAgentSpec, NodeAgentStatus, NodePayload, NodePayloadSpec,
    NodeRead, PUBLISHED_LABEL, Phase, published_name,
};
use knetdoctor::agent::payload;
use knetdoctor::agent::remote::Agents;
use knetdoctor::agent::wire::Wire;
use knetdoctor::dataplane::iptables::save;
use knetdoctor::dataplane::state::IptablesBackendState;
use knetdoctor::inspect::live::LiveSource;
use knetdoctor::synthetic::{self, Size};
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

const BIN: &str = env!("CARGO_BIN_EXE_knetdoctor");
const LAB: &str = "abench";
const NS: &str = "knetdoctor";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn payload_at_scale() {
    let size = Size {
        nodes: env("KD_BENCH_NODES", 5000),
        pods: env("KD_BENCH_PODS", 150_000),
        services: env("KD_BENCH_SERVICES", 10_000),
        endpoints_per_service: 3,
    };
    let cluster = synthetic::cluster(size);
    let mut state = synthetic::node_state(&cluster, 0);
    let text = synthetic::iptables_text(&cluster, 0);
    state.iptables.push(IptablesBackendState {
        backend: "nft".into(),
        ruleset: save::parse(&text).expect("synthetic rules parse"),
        raw: Some(text),
    });
    let body = serde_json::to_vec(&state).expect("state serializes");
    let t = Instant::now();
    let enc = payload::encode(&body);
    let ours = t.elapsed().as_secs_f64();
    let compressed = enc
        .payload
        .inline
        .as_ref()
        .map_or_else(|| enc.parts.iter().map(String::len).sum(), String::len)
        * 3
        / 4;
    let t = Instant::now();
    let mut gzip = Command::new("gzip")
        .arg("-6c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = gzip.stdin.take().unwrap();
    let b = body.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&b));
    let out = gzip.wait_with_output().expect("gzip runs");
    let _ = writer.join();
    let theirs = t.elapsed().as_secs_f64();
    println!(
        "payload of one node ({} peers, {} Services): JSON {:.1} MiB -> {:.0} KiB compressed ({} object(s) of at most {} KiB) in {:.0} ms; gzip -6: {:.0} KiB in {:.0} ms; size ratio {:.2}, time ratio {:.2}",
        size.nodes - 1,
        size.services,
        body.len() as f64 / 1048576.0,
        compressed as f64 / 1024.0,
        enc.parts.len().max(1),
        payload::PART_BYTES / 1024,
        ours * 1e3,
        out.stdout.len() as f64 / 1024.0,
        theirs * 1e3,
        compressed as f64 / out.stdout.len().max(1) as f64,
        ours / theirs.max(1e-9),
    );
}

struct LabGuard;
impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["lab", "down", "--name", LAB])
            .output();
    }
}

fn kubeconfig() -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/run/knetdoctor/lab/{LAB}/cp/pki/admin.kubeconfig"))
}

/// The API server's request count so far (every verb, every resource).
async fn requests(client: &kube::Client) -> f64 {
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn lab_side_by_side() {
    let local = knetdoctor::access::Source {
        lab: LAB.into(),
        ..Default::default()
    };
    // A copy of the kubeconfig: the client is not the lab (no --lab).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("config");
    std::fs::copy(kubeconfig(), &copy).unwrap();
    let agents = knetdoctor::access::Source {
        lab: "nolab".into(),
        live: Some(LiveSource {
            kubeconfig: Some(copy),
            ..Default::default()
        }),
        ..Default::default()
    };
    let time = |s: &knetdoctor::access::Source| {
        median(
            (0..10)
                .map(|_| {
                    let t = Instant::now();
                    let target = s.target().unwrap();
                    let g = target.gather(None).unwrap();
                    assert_eq!(g.states.len(), 3, "{:?}", g.not_read);
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        )
    };
    let (l, a) = (time(&local), time(&agents));
    println!(
        "lab, 3 nodes, what `check` gathers (the cluster from the API server, every node's state, the checks): local {:.0} ms, through the agents {:.0} ms (median of 10, connection included); ratio {:.2}",
        l * 1e3,
        a * 1e3,
        a / l
    );
}

/// Answers every NodeRead for a simulated node with that node's state,
/// as an agent would (one status patch, inline payload).
async fn respond(wire: Wire, bodies: std::sync::Arc<Vec<payload::Encoded>>) {
    let api: Api<NodeRead> = wire.api();
    let mut events = Box::pin(watcher(
        api.clone(),
        watcher::Config::default().labels(NODE_LABEL),
    ));
    while let Some(e) = events.next().await {
        let Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) = e else {
            continue;
        };
        let Some(i) = r
            .spec
            .node
            .strip_prefix("sim-")
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        if r.status.is_some() {
            continue;
        }
        let api = api.clone();
        let bodies = bodies.clone();
        tokio::spawn(async move {
            let answer = Answer {
                phase: Some(Phase::Done),
                payload: Some(bodies[i].payload.clone()),
                error: None,
            };
            let _ = api
                .patch_status(
                    &r.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({ "status": answer })),
                )
                .await;
        });
    }
}

fn simulated(n: usize) {
    let size = Size {
        nodes: n,
        pods: n * 30,
        services: env("KD_BENCH_SIM_SERVICES", 1000),
        endpoints_per_service: 3,
    };
    let cluster = synthetic::cluster(size);
    let bodies: Vec<payload::Encoded> = (0..n)
        .map(|i| payload::encode(&serde_json::to_vec(&synthetic::node_state(&cluster, i)).unwrap()))
        .collect();
    let per_node = bodies
        .iter()
        .map(|b| b.payload.inline.as_ref().map_or(0, String::len))
        .sum::<usize>()
        / n;
    let bodies = std::sync::Arc::new(bodies);
    let names: Vec<String> = (0..n).map(|i| format!("sim-{i:03}")).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let live = LiveSource {
        kubeconfig: Some(kubeconfig()),
        ..Default::default()
    };
    let client = rt
        .block_on(knetdoctor::inspect::live::client(&live))
        .unwrap()
        .0;
    let wire = Wire {
        client: client.clone(),
        namespace: NS.into(),
    };
    // The simulated agents: present (renewed now, a long heartbeat), their
    // states published (for the LIST beside), and answering.
    rt.block_on(async {
        let agents: Api<NodeAgent> = wire.api();
        let parts: Api<NodePayload> = wire.api();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        futures::stream::iter(names.iter().enumerate())
            .for_each_concurrent(32, |(i, name)| {
                let (agents, parts, bodies) = (agents.clone(), parts.clone(), bodies.clone());
                async move {
                    let mut a = NodeAgent::new(
                        name,
                        NodeAgentSpec {
                            node: name.clone(),
                            pod: String::new(),
                            version: "bench".into(),
                            heartbeat_seconds: 600,
                        },
                    );
                    a.metadata.labels = Some([(NODE_LABEL.to_string(), name.clone())].into());
                    let _ = agents.create(&PostParams::default(), &a).await;
                    let _ = agents
                        .patch_status(
                            name,
                            &PatchParams::default(),
                            &Patch::Merge(serde_json::json!({"status": NodeAgentStatus { renewed: Some(now) }})),
                        )
                        .await;
                    let p = NodePayload {
                        metadata: ObjectMeta {
                            name: Some(published_name(name, 0)),
                            labels: Some([(PUBLISHED_LABEL.to_string(), name.clone())].into()),
                            ..Default::default()
                        },
                        spec: NodePayloadSpec {
                            request: published_name(name, 0),
                            index: 0,
                            // As an agent publishes it: one part, the
                            // descriptor without a second copy.
                            data: bodies[i].payload.inline.clone().unwrap_or_default(),
                            payload: Some(knetdoctor::agent::api::Payload {
                                inline: None,
                                parts: 1,
                                ..bodies[i].payload.clone()
                            }),
                        },
                    };
                    let _ = parts.create(&PostParams::default(), &p).await;
                }
            })
            .await;
    });
    rt.spawn(respond(wire.clone(), bodies.clone()));
    let agents = Agents::connect(&live, NS).unwrap();
    let mut gathered = Vec::new();
    let mut counted = Vec::new();
    for _ in 0..3 {
        let before = rt.block_on(requests(&client));
        let t = Instant::now();
        let states = agents.read_states(&names);
        gathered.push(t.elapsed().as_secs_f64());
        let after = rt.block_on(requests(&client));
        let ok = states.iter().filter(|(_, s)| s.is_ok()).count();
        assert_eq!(
            ok,
            n,
            "every simulated node answers: {:?}",
            states
                .iter()
                .find_map(|(_, s)| s.as_ref().err().map(|e| e.to_string()))
        );
        // The metrics request itself is one of them.
        counted.push(after - before - 1.0);
    }
    let mut listed = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let states = agents.published(&names);
        listed.push(t.elapsed().as_secs_f64());
        assert_eq!(states.iter().filter(|(_, s)| s.is_ok()).count(), n);
    }
    let (g, l) = (median(gathered), median(listed));
    println!(
        "{n} simulated nodes ({} peers each, {:.0} KiB compressed per node): gathered through NodeRead requests in {:.0} ms with {:.0} API requests (client and responders; median of 3); one LIST of the same states published: {:.0} ms; ratio {:.2}",
        n - 1,
        per_node as f64 * 0.75 / 1024.0,
        g * 1e3,
        median(counted),
        l * 1e3,
        g / l
    );
    let _ = rt.block_on(async {
        let parts: Api<NodePayload> = wire.api();
        parts.list(&ListParams::default().limit(1)).await
    });
}

fn main() {
    knetdoctor::without_huge_pages();
    payload_at_scale();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: the lab part (the agents on the real API server) is skipped");
        return;
    }
    let _ = Command::new(BIN)
        .args(["lab", "down", "--name", LAB])
        .output();
    let _guard = LabGuard;
    let up = Command::new(BIN)
        .args([
            "lab",
            "up",
            "--name",
            LAB,
            "--control-plane",
            "--k8s",
            "1.32",
            "--agents",
        ])
        .output()
        .expect("knetdoctor lab up");
    if !up.status.success() {
        eprintln!(
            "the control-plane lab did not come up (is Kubernetes 1.32 built? scripts/build-k8s-1.32.sh): {}",
            String::from_utf8_lossy(&up.stderr)
        );
        return;
    }
    std::thread::sleep(Duration::from_millis(500));
    lab_side_by_side();
    simulated(env("KD_BENCH_SIM", 500));
}
