//! The lab run by the real control plane (`lab up --control-plane`): etcd,
//! kube-apiserver and kube-controller-manager in k8s-master-10's namespace,
//! serving on 192.168.56.10:6443 with RBAC and the default admission
//! plugins, a PKI made per lab and an identity per component; the real
//! kube-proxy in every node's namespace programs the Services, so the lab
//! loads no kube-proxy rules of its own; Endpoints come from the real
//! controllers, fed by the pods' status the lab publishes and its stand-in
//! kubelets keep reported. knetdoctor on this machine reaches the API
//! server through a forwarder on 127.0.0.1 (no link between the lab and the
//! root namespace); `state.kubeconfig` names it, and every command reading
//! the lab reads the cluster from the API server.
//!
//! Two real versions, built offline outside the checkout: 1.20 from
//! Debian's source (scripts/build-apiserver.sh) and 1.32
//! (scripts/build-k8s-1.32.sh from shared/k8s-1.32).

pub mod agents;
pub mod forward;
pub mod kubelets;
pub mod pki;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::process;
use super::state::LabState;
use crate::error::{Error, Result};

/// The Kubernetes version the control plane runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum K8sVersion {
    /// 1.20, from Debian's kubernetes source (scripts/build-apiserver.sh).
    #[serde(rename = "1.20")]
    V1_20,
    /// 1.32, from shared/k8s-1.32 (scripts/build-k8s-1.32.sh).
    #[serde(rename = "1.32")]
    V1_32,
}

impl K8sVersion {
    /// Both versions the lab runs.
    pub const ALL: [K8sVersion; 2] = [K8sVersion::V1_20, K8sVersion::V1_32];

    /// The version as `--k8s` takes it and JSON prints it.
    pub fn name(self) -> &'static str {
        match self {
            K8sVersion::V1_20 => "1.20",
            K8sVersion::V1_32 => "1.32",
        }
    }

    fn cache_dir(self) -> &'static str {
        match self {
            K8sVersion::V1_20 => "k8s-1.20",
            K8sVersion::V1_32 => "k8s-1.32",
        }
    }

    fn build_script(self) -> &'static str {
        match self {
            K8sVersion::V1_20 => "scripts/build-apiserver.sh",
            K8sVersion::V1_32 => "scripts/build-k8s-1.32.sh",
        }
    }
}

/// How the real kube-proxy programs the lab's nodes (`--proxy-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KubeProxyMode {
    /// iptables chains (KUBE-SERVICES, ...), the default.
    #[default]
    Iptables,
    /// nftables' `table ip kube-proxy` (GA in 1.33; 1.32's kube-proxy has it).
    Nftables,
}

impl KubeProxyMode {
    /// Both modes.
    pub const ALL: [KubeProxyMode; 2] = [KubeProxyMode::Iptables, KubeProxyMode::Nftables];

    /// As `--proxy-mode` and `lab up --kube-proxy-mode` take it.
    pub fn name(self) -> &'static str {
        match self {
            KubeProxyMode::Iptables => "iptables",
            KubeProxyMode::Nftables => "nftables",
        }
    }
}

/// What the lab records of its control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlane {
    pub version: K8sVersion,
    /// The port of the forwarder on 127.0.0.1, once it runs.
    pub port: Option<u16>,
    /// kube-controller-manager runs without its Endpoints controllers: no
    /// v1 Endpoints but the API server's own, as Kubernetes deprecates
    /// them (1.33) and clusters turn them off.
    #[serde(default)]
    pub without_endpoints: bool,
}

/// The API server's port on the master's address.
pub(crate) const API_PORT: u16 = 6443;

/// Where the built binaries are: `$KNETDOCTOR_CACHE/k8s-<version>/bin`.
pub fn binaries(version: K8sVersion) -> Result<PathBuf> {
    let bin = std::env::var_os("KNETDOCTOR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/knetdoctor"))
        .join(version.cache_dir())
        .join("bin");
    for b in ["kube-apiserver", "kube-controller-manager", "kube-proxy"] {
        if !bin.join(b).is_file() {
            return Err(Error::env(
                format!("{} is not built", bin.join(b).display()),
                Some(format!(
                    "build it once with {} (offline, cached outside the checkout)",
                    version.build_script()
                )),
            ));
        }
    }
    Ok(bin)
}

pub(crate) fn cp_dir(state: &LabState) -> PathBuf {
    state.dir.join("cp")
}

pub(crate) fn pki_dir(state: &LabState) -> PathBuf {
    cp_dir(state).join("pki")
}

/// The kubeconfig of node `node`'s kubelet identity.
pub fn node_kubeconfig(state: &LabState, node: &str) -> PathBuf {
    pki_dir(state).join(format!("node-{node}.kubeconfig"))
}

/// The kubeconfig this machine's knetdoctor (and kubectl) use.
pub fn host_kubeconfig(state: &LabState) -> PathBuf {
    pki_dir(state).join("admin.kubeconfig")
}

pub(crate) fn master(state: &LabState) -> Result<&super::topology::LabNode> {
    state
        .topology
        .nodes
        .first()
        .ok_or_else(|| Error::env("the lab has no nodes", None))
}

/// Starts the control plane and kube-proxy on every node, publishes the
/// lab's objects, and waits until kube-proxy has programmed every node.
pub fn start(state: &mut LabState, version: K8sVersion) -> Result<()> {
    let bin = binaries(version)?;
    let m = master(state)?.clone();
    let api_ip = m.ip;
    let service_ip = Ipv4Addr::new(10, 1, 0, 1);
    let dir = cp_dir(state);
    crate::files::private_dir(&dir)?;
    let node_files: Vec<(String, String, String)> = state
        .topology
        .nodes
        .iter()
        .map(|n| {
            (
                format!("node-{}", n.name),
                format!("system:node:{}", n.name),
                n.name.clone(),
            )
        })
        .collect();
    let mut ids = vec![
        pki::Identity {
            file: "admin",
            cn: "knetdoctor-lab-admin",
            org: Some("system:masters"),
        },
        pki::Identity {
            file: "controller-manager",
            cn: "system:kube-controller-manager",
            org: None,
        },
        pki::Identity {
            file: "proxy",
            cn: "system:kube-proxy",
            org: None,
        },
    ];
    // The lab's users for RBAC tests: each gets a certificate and a
    // kubeconfig; `lab up --agents` binds them.
    let user_cns: Vec<(String, String)> = agents::USERS
        .iter()
        .map(|(u, _)| (u.to_string(), agents::user_cn(u)))
        .collect();
    ids.extend(user_cns.iter().map(|(file, cn)| pki::Identity {
        file,
        cn,
        org: None,
    }));
    ids.extend(node_files.iter().map(|(file, cn, _)| pki::Identity {
        file,
        cn,
        org: Some("system:nodes"),
    }));
    let pki = pki::Pki::create(&pki_dir(state), api_ip, service_ip, &ids)?;
    let server = format!("https://{api_ip}:{API_PORT}");
    let cm_kubeconfig = pki.kubeconfig("controller-manager", &server)?;
    pki.kubeconfig("proxy", &server)?;
    for (file, _, _) in &node_files {
        pki.kubeconfig(file, &server)?;
    }
    let p = |f: &str| pki.path(f).display().to_string();
    let log = |role: &str| state.dir.join("logs").join(format!("{role}.log"));

    let etcd_dir = dir.join("etcd");
    crate::files::private_dir(&etcd_dir)?;
    let etcd = process::spawn(
        &m.netns,
        "control-plane",
        "etcd",
        Path::new("etcd"),
        &[
            format!("--data-dir={}", etcd_dir.display()),
            "--listen-client-urls=http://127.0.0.1:2379".into(),
            "--advertise-client-urls=http://127.0.0.1:2379".into(),
            "--listen-peer-urls=http://127.0.0.1:2380".into(),
            "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
            "--initial-cluster=default=http://127.0.0.1:2380".into(),
        ],
        &log("etcd"),
    )?;
    state.processes.push(etcd);
    state.save()?;

    let mut api_args = vec![
        "--etcd-servers=http://127.0.0.1:2379".to_string(),
        format!("--bind-address={api_ip}"),
        format!("--advertise-address={api_ip}"),
        format!("--secure-port={API_PORT}"),
        "--service-cluster-ip-range=10.1.0.0/16".into(),
        "--authorization-mode=Node,RBAC".into(),
        format!("--client-ca-file={}", p("ca.crt")),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", p("sa.pub")),
        format!("--service-account-signing-key-file={}", p("sa.key")),
    ];
    if version == K8sVersion::V1_20 {
        api_args.push("--insecure-port=0".into());
    }
    let api = process::spawn(
        &m.netns,
        "control-plane",
        "kube-apiserver",
        &bin.join("kube-apiserver"),
        &api_args,
        &log("kube-apiserver"),
    )?;
    state.processes.push(api);
    state.save()?;

    // The forwarder, in this machine's namespace.
    let port_file = dir.join("forwarder.port");
    let _ = std::fs::remove_file(&port_file);
    let exe = std::env::current_exe()
        .map_err(|e| Error::env(format!("cannot find my own executable: {e}"), None))?;
    let fwd = process::spawn_here(
        "control-plane",
        "forwarder",
        &exe,
        &[
            "lab-forward".into(),
            "--netns".into(),
            m.netns.clone(),
            "--to".into(),
            format!("{api_ip}:{API_PORT}"),
            "--port-file".into(),
            port_file.display().to_string(),
        ],
        &log("forwarder"),
    )?;
    state.processes.push(fwd);
    state.save()?;
    let port = wait_for("the forwarder", Duration::from_secs(5), || {
        std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
    })?;
    let host = pki.kubeconfig("admin", &format!("https://127.0.0.1:{port}"))?;
    for (user, _) in &user_cns {
        pki.kubeconfig(user, &format!("https://127.0.0.1:{port}"))?;
    }
    if let Some(cp) = state.control_plane.as_mut() {
        cp.port = Some(port);
    }
    let without_endpoints = state
        .control_plane
        .as_ref()
        .is_some_and(|c| c.without_endpoints);
    state.save()?;
    wait_ready(&host, &log("kube-apiserver"))?;

    let mut cm_args = vec![
        format!("--kubeconfig={}", cm_kubeconfig.display()),
        format!("--authentication-kubeconfig={}", cm_kubeconfig.display()),
        format!("--authorization-kubeconfig={}", cm_kubeconfig.display()),
        "--use-service-account-credentials".into(),
        format!("--service-account-private-key-file={}", p("sa.key")),
        format!("--root-ca-file={}", p("ca.crt")),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        "--cluster-cidr=10.2.0.0/16".into(),
        "--service-cluster-ip-range=10.1.0.0/16".into(),
    ];
    if version == K8sVersion::V1_20 {
        cm_args.push("--port=0".into());
    }
    if without_endpoints {
        cm_args.push("--controllers=*,-endpoint,-endpointslicemirroring".into());
    }
    let cm = process::spawn(
        &m.netns,
        "control-plane",
        "kube-controller-manager",
        &bin.join("kube-controller-manager"),
        &cm_args,
        &log("kube-controller-manager"),
    )?;
    state.processes.push(cm);
    state.kubeconfig = Some(host.clone());
    state.save()?;
    super::sync::sync(state)?;

    let kubelets = process::spawn(
        &m.netns,
        "control-plane",
        "kubelets",
        &exe,
        &[
            "lab-kubelets".into(),
            "--name".into(),
            state.topology.params.name.clone(),
        ],
        &log("kubelets"),
    )?;
    state.processes.push(kubelets);
    state.save()?;

    for n in state.topology.nodes.clone() {
        let proxy = start_kube_proxy(state, &n.name)?;
        state.processes.push(proxy);
        state.save()?;
    }
    wait_programmed(state)
}

/// Starts the real kube-proxy in `node`'s namespace (the lab's mode and
/// iptables backend, its own identity).
pub fn start_kube_proxy(state: &LabState, node: &str) -> Result<super::state::TrackedProcess> {
    let mode = state.kube_proxy;
    let version = state
        .control_plane
        .as_ref()
        .map(|c| c.version)
        .ok_or_else(|| Error::env("this lab runs no control plane", None))?;
    let bin = binaries(version)?;
    let n = state.topology.node(node)?;
    let shim = iptables_shim(&cp_dir(state), state.iptables)?;
    let kubeconfig = pki_dir(state).join("proxy.kubeconfig");
    process::spawn_with_path(
        &n.netns,
        &n.name,
        "kube-proxy",
        &bin.join("kube-proxy"),
        &[
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--hostname-override={}", n.name),
            format!("--bind-address={}", n.ip),
            "--cluster-cidr=10.2.0.0/16".into(),
            format!("--proxy-mode={}", mode.name()),
            // A namespace cannot set the host's conntrack table size.
            "--conntrack-max-per-core=0".into(),
            "--conntrack-min=0".into(),
            "--metrics-bind-address=127.0.0.1:10249".into(),
            "--healthz-bind-address=127.0.0.1:10256".into(),
        ],
        &state
            .dir
            .join("logs")
            .join(format!("kube-proxy-{}.log", n.name)),
        &shim,
    )
}

/// A kube-proxy fault as it happens in life: kube-proxy on the node stops
/// (crashed, evicted), and its chains are left damaged — `damage` edits the
/// node's rules as they are now.
pub fn break_kube_proxy(
    state: &mut LabState,
    node: &str,
    damage: impl FnOnce(&mut crate::dataplane::iptables::Ruleset),
) -> Result<()> {
    stop_kube_proxy(state, node)?;
    damage_rules(state, node, damage).map(drop)
}

/// [`break_kube_proxy`] for kube-proxy in nftables mode: it stops, and
/// `damage` edits its `table ip kube-proxy` as the node holds it.
pub fn break_kube_proxy_table(
    state: &mut LabState,
    node: &str,
    damage: impl FnOnce(&mut crate::dataplane::nft_table::NftTableSpec),
) -> Result<()> {
    stop_kube_proxy(state, node)?;
    let netns = state.topology.node(node)?.netns.clone();
    let json = super::exec::run_in(
        &netns,
        "nft",
        &["-j", "list", "table", "ip", "kube-proxy"],
        "",
    )?;
    let mut t = crate::dataplane::nft_table::NftTableSpec::parse_listing(&json).map_err(|e| {
        Error::env(
            format!("nft -j list table ip kube-proxy in {netns}: {e}"),
            None,
        )
    })?;
    damage(&mut t);
    super::exec::write_table(&netns, &t)
}

fn stop_kube_proxy(state: &mut LabState, node: &str) -> Result<()> {
    let stopped: Vec<(i32, Option<u64>)> = state
        .processes
        .iter()
        .filter(|p| p.role == "kube-proxy" && p.pod == node)
        .map(|p| (p.pid, Some(p.start_time)))
        .collect();
    process::stop_all(&stopped);
    state
        .processes
        .retain(|p| !(p.role == "kube-proxy" && p.pod == node));
    state.save()
}

/// Edits `node`'s rules as they are now; returns them as they were.
pub fn damage_rules(
    state: &LabState,
    node: &str,
    damage: impl FnOnce(&mut crate::dataplane::iptables::Ruleset),
) -> Result<String> {
    let netns = state.topology.node(node)?.netns.clone();
    let save = state.iptables.save();
    let text = super::exec::run_in(&netns, save, &[], "")?;
    let mut rs = crate::dataplane::iptables::save::parse(&text)
        .map_err(|e| Error::env(format!("{save} in {netns}: {e}"), None))?;
    damage(&mut rs);
    super::exec::run_in(&netns, state.iptables.restore(), &["-w", "5"], &rs.render())?;
    Ok(text)
}

/// Puts `node`'s rules back as they were before a fault in flannel's
/// chains, then stops its kube-proxy so that heal starts it anew and its
/// chains are its own again (whatever it changed meanwhile).
pub fn restore_rules(state: &mut LabState, node: &str, text: &str) -> Result<()> {
    let netns = state.topology.node(node)?.netns.clone();
    super::exec::run_in(&netns, state.iptables.restore(), &["-w", "5"], text)?;
    stop_kube_proxy(state, node)
}

/// Starts kube-proxy again on every node where a fault stopped it; its
/// first sync rewrites its chains.
pub fn restart_kube_proxies(state: &mut LabState) -> Result<()> {
    for n in state.topology.nodes.clone() {
        let running = state
            .processes
            .iter()
            .any(|p| p.role == "kube-proxy" && p.pod == n.name && process::is_alive(p));
        if !running {
            let p = start_kube_proxy(state, &n.name)?;
            state.processes.push(p);
            state.save()?;
        }
    }
    wait_programmed(state)
}

/// A directory whose `iptables*` run the lab's backend, first on kube-proxy's
/// PATH: kube-proxy runs plain `iptables`, and the node's rules must all be
/// in one backend.
fn iptables_shim(dir: &Path, backend: super::IptablesBackend) -> Result<PathBuf> {
    let shim = dir.join("bin");
    crate::files::private_dir(&shim)?;
    let suffix = match backend {
        super::IptablesBackend::Nft => "nft",
        super::IptablesBackend::Legacy => "legacy",
    };
    for tool in [
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
    ] {
        let target = match tool.split_once('-') {
            Some((base, verb)) => format!("/usr/sbin/{base}-{suffix}-{verb}"),
            None => format!("/usr/sbin/{tool}-{suffix}"),
        };
        let link = shim.join(tool);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).map_err(|e| Error::io(&link, e))?;
    }
    Ok(shim)
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(Error::env(
                format!("{what} did not start within {limit:?}"),
                None,
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the API server is ready (`/readyz`), through the forwarder.
fn wait_ready(kubeconfig: &Path, log: &Path) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::env(format!("cannot start the async runtime: {e}"), None))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(async {
        let src = crate::inspect::live::LiveSource {
            kubeconfig: Some(kubeconfig.to_path_buf()),
            ..Default::default()
        };
        loop {
            // Ready, not merely answering: components started before the
            // server's RBAC bootstrap policy is in are refused and exit.
            if let Ok((client, _)) = crate::inspect::live::client(&src).await
                && let Ok(request) = http::Request::get("/readyz").body(Vec::new())
                && client
                    .request_text(request)
                    .await
                    .is_ok_and(|t| t.trim() == "ok")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::env(
                    "the lab's API server did not become ready within 60 s",
                    Some(format!("see {}", log.display())),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Waits (up to 60 s) until kube-proxy has programmed every Service with
/// ready endpoints on every node, as `check` sees it.
fn wait_programmed(state: &LabState) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let target = crate::access::Target::from_flags(None, &state.topology.params.name, None)?;
    loop {
        let left: Vec<String> = match (target.cluster(), target.node_states(None)) {
            (Ok(cluster), Ok(nodes)) => {
                let with_endpoints = crate::model::kube_proxy::service_ports(&cluster)
                    .iter()
                    .any(|p| !p.endpoints.is_empty());
                crate::check::run(&cluster, &nodes)
                    .into_iter()
                    .filter(|f| {
                        f.id.owner() == crate::check::Owner::KubeProxy
                            || f.id == crate::check::FindingId::ServiceNoEndpoints
                    })
                    .map(|f| f.summary)
                    .chain((!with_endpoints).then(|| "no Service has endpoints yet".to_string()))
                    .collect()
            }
            (Err(e), _) | (_, Err(e)) => vec![e.to_string()],
        };
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::env(
                format!(
                    "kube-proxy has not programmed the lab within 60 s: {}",
                    left.join("; ")
                ),
                Some(format!("see {}", state.dir.join("logs").display())),
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
