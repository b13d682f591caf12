//! `cargo bench --bench trace_scale` (as root): static traces on the
//! 5,000-node synthetic cluster after the model is loaded — time per trace
//! (target < 1 ms) and all pairs among 1,000 pods — and, side by side, the
//! kernel's own lookup for one hop of the same job: `ip route get` over the
//! same 5,000 overlay routes loaded into a scratch namespace.

mod common;
use common::{Scratch, env};

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Instant;

use knetdoctor::dataplane::iptables::save;
use knetdoctor::dataplane::state::IptablesBackendState;
use knetdoctor::synthetic::{self, Size};
use knetdoctor::trace::Proto;
use knetdoctor::trace::resolve::{End, classify_ip};
use knetdoctor::trace::sim::{World, trace};

/// `ip -batch` of `route get` for `ips` in a namespace holding node 0's
/// overlay routes; seconds per lookup.
fn ip_route_get(state: &knetdoctor::dataplane::NodeState, ips: &[IpAddr]) -> Option<f64> {
    let ns = Scratch::new("trace")?;
    let mut setup = String::from(
        "link add flannel.1 type veth peer name flpeer\nlink set flannel.1 up\nlink set flpeer up\nlink add eth0 type veth peer name ethpeer\nlink set eth0 up\nlink set ethpeer up\naddr add 192.168.0.1/16 dev eth0\n",
    );
    for r in state
        .routes
        .iter()
        .filter(|r| r.dev.as_deref() == Some("flannel.1") && r.gateway.is_some())
    {
        setup.push_str(&format!(
            "route add {} via {} dev flannel.1 onlink\n",
            r.dst, r.gateway?
        ));
    }
    let batch = |input: &str| -> Option<()> {
        let mut c = Command::new("ip")
            .args(["-n", &ns.0, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        c.stdin.take()?.write_all(input.as_bytes()).ok()?;
        let ok = c.wait().ok()?.success();
        if !ok {
            eprintln!("ip -batch failed in the scratch namespace");
        }
        ok.then_some(())
    };
    batch(&setup)?;
    let gets: String = ips.iter().map(|ip| format!("route get {ip}\n")).collect();
    let t = Instant::now();
    batch(&gets)?;
    Some(t.elapsed().as_secs_f64() / ips.len() as f64)
}

fn main() {
    knetdoctor::without_huge_pages();
    let size = Size {
        nodes: env("KD_BENCH_NODES", 5000),
        pods: env("KD_BENCH_PODS", 150_000),
        services: env("KD_BENCH_SERVICES", 10_000),
        endpoints_per_service: 3,
    };
    let t = Instant::now();
    let cluster = synthetic::cluster(size);
    // 1,000 pods on the first nodes (30 per node), with those nodes' states.
    let pods: Vec<(String, String, IpAddr)> = cluster
        .pods
        .iter()
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone()?;
            let idx: usize = node.trim_start_matches("node-").parse().ok()?;
            if idx >= 34 {
                return None;
            }
            Some((
                format!(
                    "{}/{}",
                    p.metadata.namespace.clone()?,
                    p.metadata.name.clone()?
                ),
                node,
                p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?,
            ))
        })
        .take(env("KD_BENCH_TRACE_PODS", 1000))
        .collect();
    let mut nodes: Vec<(String, knetdoctor::dataplane::NodeState)> = (0..34)
        .map(|i| (format!("node-{i:05}"), synthetic::node_state(&cluster, i)))
        .collect();
    let ruleset = save::parse(&synthetic::iptables_text(&cluster, 0)).expect("ruleset");
    nodes[0].1.iptables.push(IptablesBackendState {
        backend: "legacy".into(),
        ruleset,
        raw: None,
    });
    let findings = knetdoctor::check::share(knetdoctor::check::run(&cluster, &nodes));
    let world = World::new(&cluster, &nodes, &findings);
    println!(
        "model loaded in {:.2} s: {} nodes, {} pods, {} services; tracing among {} pods on 34 nodes",
        t.elapsed().as_secs_f64(),
        size.nodes,
        size.pods,
        size.services,
        pods.len()
    );
    let end = |ip: IpAddr| classify_ip(&cluster, ip);

    if std::env::var("KD_BENCH_DEBUG").is_ok() {
        let t = trace(
            &world,
            &end(pods[0].2),
            &end(pods[1].2),
            Proto::Tcp,
            Some(8080),
        );
        println!("{}", knetdoctor::trace::text::render(&t));
    }
    // Single traces: pod -> pod across nodes, and pod -> Service through node 0's kube-proxy rules.
    let samples = 2000.min(pods.len() * (pods.len() - 1));
    let t = Instant::now();
    let mut reachable = 0;
    for k in 0..samples {
        let (a, b) = (&pods[k % pods.len()], &pods[(k * 7 + 1) % pods.len()]);
        if a.2 == b.2 {
            continue;
        }
        reachable += trace(&world, &end(a.2), &end(b.2), Proto::Tcp, Some(8080)).reachable as usize;
    }
    let per_pod = t.elapsed().as_secs_f64() / samples as f64;
    let src0 = pods
        .iter()
        .find(|p| p.1 == "node-00000")
        .expect("a pod on node 0");
    let svc_ip: IpAddr = cluster.services[5]
        .spec
        .as_ref()
        .unwrap()
        .cluster_ip
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    let t = Instant::now();
    let svc_runs = 500;
    let mut svc_ok = 0;
    for _ in 0..svc_runs {
        svc_ok += trace(
            &world,
            &end(src0.2),
            &End::Service {
                namespace: String::new(),
                name: String::new(),
                ip: svc_ip,
                port: Some(80),
            },
            Proto::Tcp,
            Some(80),
        )
        .reachable as usize;
    }
    let per_svc = t.elapsed().as_secs_f64() / svc_runs as f64;
    println!(
        "knetdoctor trace: pod -> pod {:.1} us per trace ({reachable}/{samples} reachable), pod -> Service {:.1} us ({svc_ok}/{svc_runs} reachable) (target < 1000 us)",
        per_pod * 1e6,
        per_svc * 1e6
    );

    // All pairs among the pods.
    let t = Instant::now();
    let mut pairs = 0usize;
    let mut ok = 0usize;
    for a in &pods {
        let src = end(a.2);
        for b in &pods {
            if a.2 != b.2 {
                pairs += 1;
                ok += trace(&world, &src, &end(b.2), Proto::Tcp, Some(8080)).reachable as usize;
            }
        }
    }
    let all = t.elapsed().as_secs_f64();
    println!(
        "knetdoctor trace: all {pairs} pairs among {} pods in {all:.1} s ({:.1} us each), {ok} reachable",
        pods.len(),
        all / pairs as f64 * 1e6
    );

    // Lookups of other nodes' pods (node 0's own pod CIDR is not in the scratch namespace).
    let ips: Vec<IpAddr> = pods
        .iter()
        .filter(|p| p.1 != "node-00000")
        .map(|p| p.2)
        .take(1000)
        .collect();
    match ip_route_get(&nodes[0].1, &ips) {
        Some(per) => println!(
            "ip route get (one routing hop, over node 0's same {} overlay routes, via ip -batch): {:.1} us per lookup; a full knetdoctor trace costs {:.2}x one such lookup",
            nodes[0]
                .1
                .routes
                .iter()
                .filter(|r| r.gateway.is_some())
                .count(),
            per * 1e6,
            per_pod / per
        ),
        None => println!("ip route get: not measured (needs root)"),
    }
}
