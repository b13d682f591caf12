//! `lab up` and `lab down`.

use std::time::{Duration, Instant};

use super::exec::{bridge_batch, ip_batch, ip_root_batch};
use super::process;
use super::services;
use super::state::{IptablesBackend, LabState, lab_dir};
use super::sync;
use super::topology::{LabParams, OUTSIDE_IP, Topology, UNDERLAY_MTU, netns_prefix};
use crate::dataplane::Netns;
use crate::dataplane::netns::NETNS_RUN_DIR;
use crate::error::{Error, Result};
use crate::model::dns::{CLUSTER_DOMAIN, pod_resolv_conf};
use crate::model::flannel::{BRIDGE_DEVICE, VNI, VTEP_DEVICE, VXLAN_PORT, vtep_mtu};

/// Per-pod resolv.conf files live here, where `ip netns exec` finds them.
const ETC_NETNS: &str = "/etc/netns";

fn preflight(backend: IptablesBackend) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::env(
            "the lab needs root (it creates network namespaces)",
            Some("run it with sudo, or as root".to_string()),
        ));
    }
    for tool in [
        "ip",
        "bridge",
        backend.restore(),
        "dnsmasq",
        "nginx",
        "ethtool",
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(Error::env(
                format!("{tool} is not installed"),
                Some("apt-get install -y iproute2 iptables dnsmasq-base nginx-light".to_string()),
            ));
        }
    }
    Ok(())
}

/// Names under /run/netns that belong to lab `name`.
pub fn existing_namespaces(name: &str) -> Vec<String> {
    let prefix = netns_prefix(name);
    let mut v: Vec<String> = std::fs::read_dir(NETNS_RUN_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Called as `lab up` works through its steps: (what, done, total).
pub type Progress<'a> = &'a dyn Fn(&str, u64, u64);

/// Builds the lab. On failure everything built so far is removed again.
pub fn up(
    params: LabParams,
    backend: IptablesBackend,
    kubeconfig: Option<std::path::PathBuf>,
    control_plane: Option<super::control_plane::ControlPlane>,
    kube_proxy: super::control_plane::KubeProxyMode,
    flannel_nftables: bool,
    progress: Progress,
) -> Result<LabState> {
    if let Some(v) = control_plane.as_ref().map(|c| c.version) {
        // Before anything is built: a missing build is a hint, not a teardown.
        super::control_plane::binaries(v)?;
        if (v, kube_proxy)
            == (
                super::control_plane::K8sVersion::V1_20,
                super::control_plane::KubeProxyMode::Nftables,
            )
        {
            return Err(Error::usage(
                "kube-proxy 1.20 has no nftables mode (it arrived in 1.29)",
                Some("use --k8s 1.32 with --kube-proxy-mode nftables".to_string()),
            ));
        }
    }
    preflight(backend)?;
    let topo = Topology::new(params)?;
    let name = topo.params.name.clone();
    if LabState::load(&name)?.is_some() || !existing_namespaces(&name).is_empty() {
        return Err(Error::env(
            format!("lab {name:?} is already up"),
            Some(format!(
                "`knetdoctor lab status --name {name}` shows it; `knetdoctor lab down --name {name}` removes it"
            )),
        ));
    }
    let dir = lab_dir(&name);
    crate::files::private_dir(&dir)?;
    for sub in ["cluster", "dns", "ingress", "logs"] {
        crate::files::private_dir(&dir.join(sub))?;
    }
    let mut state = LabState {
        topology: topo,
        iptables: backend,
        dir,
        processes: Vec::new(),
        faults: Vec::new(),
        complete: false,
        kubeconfig: kubeconfig.map(|p| std::fs::canonicalize(&p).unwrap_or(p)),
        control_plane: control_plane.clone(),
        kube_proxy,
        flannel_nftables,
    };
    state.save()?;
    let built = build(&mut state, progress).and_then(|()| match control_plane {
        Some(super::control_plane::ControlPlane { version: v, .. }) => {
            progress("control plane and kube-proxy", 1, 1);
            super::control_plane::start(&mut state, v)
        }
        None => Ok(()),
    });
    match built {
        Ok(()) => Ok(state),
        Err(e) => {
            let _ = down(&name);
            Err(e)
        }
    }
}

fn build(state: &mut LabState, progress: Progress) -> Result<()> {
    let topo = state.topology.clone();
    // Steps: namespaces + underlay, each node, each pod, iptables, processes.
    let total = (2 + topo.nodes.len() + topo.pods.len() + 2) as u64;
    let mut done = 0u64;
    let mut step = |what: &str| {
        done += 1;
        progress(what, done, total);
    };
    ip_root_batch(
        &topo
            .all_netns()
            .iter()
            .map(|n| format!("netns add {n}"))
            .collect::<Vec<_>>(),
    )?;

    // The underlay switch: one bridge, a port per node and one for the client.
    let mut sw = vec![
        "link set lo up".to_string(),
        "link add br0 type bridge".into(),
        "link set br0 up".into(),
    ];
    for n in &topo.nodes {
        sw.push(format!(
            "link add {} type veth peer name eth0 netns {}",
            n.switch_port, n.netns
        ));
        sw.push(format!("link set {} master br0 up", n.switch_port));
    }
    sw.push(format!(
        "link add port254 type veth peer name eth0 netns {}",
        topo.outside_netns
    ));
    sw.push("link set port254 master br0 up".into());
    ip_batch(&topo.underlay_netns, &sw)?;
    step("underlay switch");
    ip_batch(
        &topo.outside_netns,
        &[
            "link set lo up".into(),
            format!("addr add {OUTSIDE_IP}/24 dev eth0"),
            "link set eth0 up".into(),
        ],
    )?;

    step("outside client");
    let pod_mtu = vtep_mtu(UNDERLAY_MTU);
    for n in &topo.nodes {
        step(&n.name);
        let mut b = vec![
            "link set lo up".to_string(),
            format!("link set eth0 mtu {UNDERLAY_MTU} up"),
            format!("addr add {}/24 dev eth0", n.ip),
            format!(
                "link add {VTEP_DEVICE} address {} type vxlan id {VNI} local {} dev eth0 dstport {VXLAN_PORT} nolearning",
                n.vtep_mac, n.ip
            ),
            format!("link set {VTEP_DEVICE} mtu {pod_mtu} up"),
            format!("addr add {}/32 dev {VTEP_DEVICE}", n.pod_cidr.network()),
            format!("link add {BRIDGE_DEVICE} type bridge"),
            format!("link set {BRIDGE_DEVICE} mtu {pod_mtu} up"),
            format!(
                "addr add {}/{} dev {BRIDGE_DEVICE}",
                std::net::Ipv4Addr::from(u32::from(n.pod_cidr.network()) + 1),
                n.pod_cidr.prefix_len()
            ),
        ];
        for p in topo.pods_on(&n.name) {
            b.push(format!(
                "link add {} mtu {pod_mtu} type veth peer name eth0 mtu {pod_mtu} netns {}",
                p.host_veth, p.netns
            ));
            b.push(format!(
                "link set {} master {BRIDGE_DEVICE} up",
                p.host_veth
            ));
            b.push(format!(
                "link set {} type bridge_slave hairpin on",
                p.host_veth
            ));
        }
        // flannel's order per peer: neigh, then FDB, then route.
        let peers: Vec<_> = topo.nodes.iter().filter(|p| p.name != n.name).collect();
        b.extend(peers.iter().map(|p| {
            format!(
                "neigh replace {} lladdr {} dev {VTEP_DEVICE} nud permanent",
                p.pod_cidr.network(),
                p.vtep_mac
            )
        }));
        ip_batch(&n.netns, &b)?;
        bridge_batch(
            &n.netns,
            &peers
                .iter()
                .map(|p| {
                    format!(
                        "fdb replace {} dev {VTEP_DEVICE} dst {} self permanent",
                        p.vtep_mac, p.ip
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        // The usual workaround for the kernel's VXLAN checksum-offload bug;
        // `check` warns where it is missing.
        super::exec::run_in(
            &n.netns,
            "ethtool",
            &["-K", VTEP_DEVICE, "tx-checksum-ip-generic", "off"],
            "",
        )?;
        ip_batch(
            &n.netns,
            &peers
                .iter()
                .map(|p| {
                    format!(
                        "route replace {} via {} dev {VTEP_DEVICE} onlink",
                        p.pod_cidr,
                        p.pod_cidr.network()
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        Netns::named(&n.netns)
            .run(|| -> std::io::Result<()> {
                crate::dataplane::sysctl::write("net.ipv4.ip_forward", "1")?;
                // br_netfilter: bridged pod traffic traverses iptables, as on a node.
                let _ = crate::dataplane::sysctl::write("net.bridge.bridge-nf-call-iptables", "1");
                Ok(())
            })?
            .map_err(|e| Error::env(format!("cannot set sysctls in {}: {e}", n.netns), None))?;
    }

    for p in &topo.pods {
        step(&p.name);
        let node = topo.node(&p.node)?;
        let gw = std::net::Ipv4Addr::from(u32::from(node.pod_cidr.network()) + 1);
        ip_batch(
            &p.netns,
            &[
                "link set lo up".into(),
                format!("addr add {}/{} dev eth0", p.ip, node.pod_cidr.prefix_len()),
                "link set eth0 up".into(),
                format!("route add default via {gw} dev eth0"),
                format!(
                    "route add {} via {gw} dev eth0",
                    super::topology::CLUSTER_CIDR
                ),
            ],
        )?;
        let etc = std::path::Path::new(ETC_NETNS).join(&p.netns);
        std::fs::create_dir_all(&etc).map_err(|e| Error::io(&etc, e))?;
        let resolv = pod_resolv_conf(&p.namespace, super::topology::CLUSTER_DNS, CLUSTER_DOMAIN);
        std::fs::write(etc.join("resolv.conf"), resolv)
            .map_err(|e| Error::io(etc.join("resolv.conf"), e))?;
    }

    step("iptables, objects, ingress config");
    sync::sync(state)?;

    step("dnsmasq, nginx, responders");
    for p in &topo.pods {
        if let Some(proc) = services::start_for(state, p)? {
            state.processes.push(proc);
            state.save()?;
        }
    }
    wait_for_listeners(state)?;
    state.complete = true;
    state.save()
}

/// Waits until every serving pod accepts TCP connections (from inside its
/// own namespace), up to five seconds.
pub fn wait_for_listeners(state: &LabState) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    for pod in &state.topology.pods {
        let Some(addr) = services::listen_addr(pod) else {
            continue;
        };
        loop {
            let ok = Netns::named(&pod.netns).run(move || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })?;
            if ok {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::env(
                    format!("{}/{} does not answer on {addr}", pod.namespace, pod.name),
                    Some(format!(
                        "see {}",
                        state
                            .dir
                            .join("logs")
                            .join(format!("{}.log", pod.name))
                            .display()
                    )),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// What `lab down` removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct DownReport {
    pub namespaces: usize,
    pub processes: usize,
    pub had_state: bool,
}

/// Removes everything lab `name` made, from its state file if there is one
/// and from its namespace prefix in any case (so it works after a crash).
pub fn down(name: &str) -> Result<DownReport> {
    super::topology::validate_name(name)?;
    let mut report = DownReport::default();
    let state = LabState::load(name).ok().flatten();
    // Objects published to an API server go first (best effort: the server may be gone).
    if let Some(s) = &state
        && s.control_plane.is_none()
        && let Some(kc) = &s.kubeconfig
        && let Ok(cluster) = super::kubectl_cluster(s)
        && let Err(e) = super::publish::unpublish(&cluster, kc)
    {
        tracing::warn!("could not remove the lab's objects from the API server: {e}");
    }

    let mut targets: Vec<(i32, Option<u64>)> = Vec::new();
    if let Some(s) = &state {
        report.had_state = true;
        targets.extend(s.processes.iter().map(|p| (p.pid, Some(p.start_time))));
    }
    let namespaces = existing_namespaces(name);
    for pid in process::pids_in_namespaces(&namespaces) {
        if !targets.iter().any(|(p, _)| *p == pid) {
            targets.push((pid, None));
        }
    }
    report.processes = targets
        .iter()
        .filter(|(p, t)| {
            process::start_time(*p).is_some_and(|now| t.is_none_or(|t| t == 0 || t == now))
        })
        .count();
    process::stop_all(&targets);
    ip_root_batch(
        &namespaces
            .iter()
            .map(|n| format!("netns del {n}"))
            .collect::<Vec<_>>(),
    )?;
    report.namespaces = namespaces.len();
    let prefix = netns_prefix(name);
    if let Ok(rd) = std::fs::read_dir(ETC_NETNS) {
        for e in rd.flatten() {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = lab_dir(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(report)
}
