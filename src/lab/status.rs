//! `lab status`: what exists, what runs, which faults are injected, and
//! whether each of the lab's paths works, probed with the standard tools
//! (ping, curl, dig) from inside the lab's namespaces.

use std::process::Stdio;

use serde::Serialize;

use super::build::existing_namespaces;
use super::faults::ActiveFault;
use super::objects::{INGRESS_HOST, NODE_PORT};
use super::process;
use super::state::LabState;
use super::topology::{CLUSTER_DNS, PodRole, Topology};
use crate::dataplane::Netns;
use crate::error::Result;

/// One path through the lab and whether it works now.
#[derive(Debug, Clone, Serialize)]
pub struct PathCheck {
    pub name: String,
    pub from: String,
    pub command: String,
    pub ok: bool,
    pub detail: String,
}

/// One tracked process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessLine {
    pub role: String,
    pub pod: String,
    pub pid: i32,
    pub alive: bool,
}

/// The lab's state as `lab status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    pub dir: String,
    pub cluster_dir: String,
    pub complete: bool,
    pub iptables: String,
    pub nodes: Vec<String>,
    pub pods: usize,
    pub namespaces_expected: usize,
    pub namespaces_present: usize,
    pub processes: Vec<ProcessLine>,
    pub faults: Vec<ActiveFault>,
    pub paths: Vec<PathCheck>,
}

struct Probe {
    name: String,
    netns: String,
    from: String,
    argv: Vec<String>,
    expect: String,
}

fn probes(topo: &Topology) -> Vec<Probe> {
    let mut v = Vec::new();
    let first_nginx = |node: &str| {
        topo.pods
            .iter()
            .find(|p| p.node == node && p.role == PodRole::Nginx)
    };
    let n = topo.nodes.len();
    for i in 0..n {
        let (a, b) = (&topo.nodes[i], &topo.nodes[(i + 1) % n]);
        if let (Some(src), Some(dst)) = (first_nginx(&a.name), first_nginx(&b.name)) {
            v.push(Probe {
                name: format!("pod-to-pod {} -> {}", a.name, b.name),
                netns: src.netns.clone(),
                from: format!("{}/{}", src.namespace, src.name),
                // Full-size, don't-fragment: proves the MTU along the overlay too.
                argv: ["ping", "-c1", "-W1", "-M", "do", "-s", "1422"]
                    .map(String::from)
                    .into_iter()
                    .chain([dst.ip.to_string()])
                    .collect(),
                expect: "1 received".into(),
            });
        }
        if let Some(src) = first_nginx(&a.name) {
            v.push(Probe {
                name: format!("pod on {} -> outside client (masquerade)", a.name),
                netns: src.netns.clone(),
                from: format!("{}/{}", src.namespace, src.name),
                argv: vec![
                    "ping".into(),
                    "-c1".into(),
                    "-W1".into(),
                    super::topology::OUTSIDE_IP.to_string(),
                ],
                expect: "1 received".into(),
            });
        }
    }
    let master = &topo.nodes[0].name;
    if let (Some(src), Some(dst)) = (
        first_nginx(master),
        topo.pods_on(master).find(|p| p.role == PodRole::CoreDns),
    ) {
        v.push(Probe {
            name: format!("same-node pod-to-pod on {master}"),
            netns: src.netns.clone(),
            from: format!("{}/{}", src.namespace, src.name),
            argv: vec![
                "ping".into(),
                "-c1".into(),
                "-W1".into(),
                dst.ip.to_string(),
            ],
            expect: "1 received".into(),
        });
    }
    if let Some(bb) = topo.pods_with(PodRole::Busybox).next() {
        let from = format!("{}/{}", bb.namespace, bb.name);
        v.push(Probe {
            name: "ClusterIP test-svc-ns/linux0224-nginx:80 (HTTP)".into(),
            netns: bb.netns.clone(),
            from: from.clone(),
            argv: ["curl", "-sf", "-m", "2", "http://10.1.59.153/"]
                .map(String::from)
                .to_vec(),
            expect: "nginx-".into(),
        });
        v.push(Probe {
            name: "DNS kube-dns: linux0224-nginx.test-svc-ns.svc.cluster.local".into(),
            netns: bb.netns.clone(),
            from,
            argv: vec![
                "dig".into(),
                "+short".into(),
                "+time=1".into(),
                "+tries=1".into(),
                format!("@{CLUSTER_DNS}"),
                "linux0224-nginx.test-svc-ns.svc.cluster.local".into(),
            ],
            expect: "10.1.59.153".into(),
        });
    }
    for node in &topo.nodes {
        v.push(Probe {
            name: format!("NodePort {}:{NODE_PORT} from outside", node.name),
            netns: topo.outside_netns.clone(),
            from: "outside client".into(),
            argv: vec![
                "curl".into(),
                "-sf".into(),
                "-m".into(),
                "2".into(),
                format!("http://{}:{NODE_PORT}/", node.ip),
            ],
            expect: "nginx-".into(),
        });
    }
    v.push(Probe {
        name: format!("Ingress http://{INGRESS_HOST}/ from outside"),
        netns: topo.outside_netns.clone(),
        from: "outside client".into(),
        argv: vec![
            "curl".into(),
            "-sf".into(),
            "-m".into(),
            "2".into(),
            "-H".into(),
            format!("Host: {INGRESS_HOST}"),
            format!("http://{}/", topo.nodes[0].ip),
        ],
        expect: "nginx-".into(),
    });
    v
}

fn run_probe(p: &Probe) -> PathCheck {
    let result = Netns::named(&p.netns)
        .command(&p.argv[0])
        .and_then(|mut c| {
            c.args(&p.argv[1..]).stdin(Stdio::null());
            c.output().map_err(|e| {
                crate::Error::env(
                    format!("cannot run {}: {e}", p.argv[0]),
                    Some("apt-get install -y iputils-ping curl dnsutils".into()),
                )
            })
        });
    let (ok, detail) = match result {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let ok = out.status.success() && stdout.contains(&p.expect);
            let first = stdout
                .lines()
                .find(|l| l.contains("received") || l.contains(&p.expect))
                .or_else(|| stdout.lines().find(|l| !l.trim().is_empty()))
                .unwrap_or("")
                .trim()
                .to_string();
            let detail = if ok {
                first
            } else if first.is_empty() {
                format!("exit {}", out.status.code().unwrap_or(-1))
            } else {
                format!("exit {}: {first}", out.status.code().unwrap_or(-1))
            };
            (ok, detail)
        }
        Err(e) => (false, e.to_string()),
    };
    PathCheck {
        name: p.name.clone(),
        from: p.from.clone(),
        command: p.argv.join(" "),
        ok,
        detail,
    }
}

/// Reads the lab's state and, with `probe`, checks every path (in parallel).
pub fn status(name: &str, probe: bool) -> Result<Status> {
    let state = LabState::require(name)?;
    let topo = &state.topology;
    let paths = if probe {
        let ps = probes(topo);
        std::thread::scope(|s| {
            let handles: Vec<_> = ps.iter().map(|p| s.spawn(move || run_probe(p))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("probe thread"))
                .collect()
        })
    } else {
        Vec::new()
    };
    Ok(Status {
        name: name.to_string(),
        dir: state.dir.display().to_string(),
        cluster_dir: state.cluster_dir().display().to_string(),
        complete: state.complete,
        iptables: state
            .iptables
            .restore()
            .trim_end_matches("-restore")
            .to_string(),
        nodes: topo.nodes.iter().map(|n| n.name.clone()).collect(),
        pods: topo.pods.len(),
        namespaces_expected: topo.all_netns().len(),
        namespaces_present: existing_namespaces(name).len(),
        processes: state
            .processes
            .iter()
            .map(|p| ProcessLine {
                role: p.role.clone(),
                pod: p.pod.clone(),
                pid: p.pid,
                alive: process::is_alive(p),
            })
            .collect(),
        faults: state.faults.clone(),
        paths,
    })
}
