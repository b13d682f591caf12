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
use super::topology::{CLUSTER_DNS, LabPod, OUTSIDE_IP, PodRole, Topology};
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
    /// The lab's own control plane (`lab up --control-plane`), if it runs one.
    pub control_plane: Option<crate::lab::control_plane::ControlPlane>,
    pub faults: Vec<ActiveFault>,
    pub paths: Vec<PathCheck>,
}

struct Probe {
    name: String,
    netns: String,
    from: String,
    argv: Vec<String>,
    /// Text the tool's stdout must contain on success.
    expect: String,
}

impl Probe {
    fn new(name: String, netns: &str, from: &str, argv: &[&str], expect: &str) -> Self {
        Probe {
            name,
            netns: netns.to_string(),
            from: from.to_string(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            expect: expect.to_string(),
        }
    }

    /// One ICMP echo; `full` sends 1450 bytes with DF set, proving the MTU too.
    fn ping(name: String, from: &LabPod, ip: &str, full: bool) -> Self {
        let mut argv = vec!["ping", "-c1", "-W1"];
        if full {
            argv.extend_from_slice(&["-M", "do", "-s", "1422"]);
        }
        argv.push(ip);
        Probe::new(name, &from.netns, &pod_name(from), &argv, "1 received")
    }

    /// One HTTP GET that must be answered by an nginx pod's responder.
    fn http(name: String, netns: &str, from: &str, url: &str, host: Option<&str>) -> Self {
        let header = host.map(|h| format!("Host: {h}"));
        let mut argv = vec!["curl", "-sf", "-m", "2"];
        if let Some(h) = &header {
            argv.extend_from_slice(&["-H", h]);
        }
        argv.push(url);
        Probe::new(name, netns, from, &argv, "nginx-")
    }
}

fn pod_name(p: &LabPod) -> String {
    format!("{}/{}", p.namespace, p.name)
}

fn probes(topo: &Topology) -> Vec<Probe> {
    let mut v = Vec::new();
    let first_nginx = |node: &str| {
        topo.pods
            .iter()
            .find(|p| p.node == node && p.role == PodRole::Nginx)
    };
    let outside = OUTSIDE_IP.to_string();
    let n = topo.nodes.len();
    for i in 0..n {
        let (a, b) = (&topo.nodes[i], &topo.nodes[(i + 1) % n]);
        let Some(src) = first_nginx(&a.name) else {
            continue;
        };
        if let Some(dst) = first_nginx(&b.name) {
            v.push(Probe::ping(
                format!("pod-to-pod {} -> {}", a.name, b.name),
                src,
                &dst.ip.to_string(),
                true,
            ));
        }
        v.push(Probe::ping(
            format!("pod on {} -> outside client (masquerade)", a.name),
            src,
            &outside,
            false,
        ));
    }
    let master = &topo.nodes[0].name;
    let master_dns = topo.pods_on(master).find(|p| p.role == PodRole::CoreDns);
    if let (Some(src), Some(dst)) = (first_nginx(master), master_dns) {
        v.push(Probe::ping(
            format!("same-node pod-to-pod on {master}"),
            src,
            &dst.ip.to_string(),
            false,
        ));
    }
    if let Some(bb) = topo.pods_with(PodRole::Busybox).next() {
        let name = "linux0224-nginx.test-svc-ns.svc.cluster.local";
        v.push(Probe::http(
            "ClusterIP test-svc-ns/linux0224-nginx:80 (HTTP)".into(),
            &bb.netns,
            &pod_name(bb),
            "http://10.1.59.153/",
            None,
        ));
        v.push(Probe::new(
            format!("DNS kube-dns: {name}"),
            &bb.netns,
            &pod_name(bb),
            &[
                "dig",
                "+short",
                "+time=1",
                "+tries=1",
                &format!("@{CLUSTER_DNS}"),
                name,
            ],
            "10.1.59.153",
        ));
    }
    for node in &topo.nodes {
        let url = format!("http://{}:{NODE_PORT}/", node.ip);
        v.push(Probe::http(
            format!("NodePort {}:{NODE_PORT} from outside", node.name),
            &topo.outside_netns,
            "outside client",
            &url,
            None,
        ));
    }
    let url = format!("http://{}/", topo.nodes[0].ip);
    v.push(Probe::http(
        format!("Ingress http://{INGRESS_HOST}/ from outside"),
        &topo.outside_netns,
        "outside client",
        &url,
        Some(INGRESS_HOST),
    ));
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
                .map(|h| {
                    h.join()
                        .map_err(|_| crate::Error::internal("a path probe thread panicked"))
                })
                .collect::<Result<Vec<_>>>()
        })?
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
        control_plane: state.control_plane.clone(),
        faults: state.faults.clone(),
        paths,
    })
}
