//! Renders what the lab's cluster objects imply onto the lab: the objects
//! directory, every node's iptables (as kube-proxy, flannel and portmap
//! would write them, with iptables faults applied) and in nftables mode
//! kube-proxy's `table ip kube-proxy`, the ingress controller's
//! nginx.conf and CoreDNS's records. Called by `lab up`, `break` and `heal`.

use std::path::Path;

use super::control_plane::KubeProxyMode;
use super::exec;
use super::faults::{Fault, WRONG_INGRESS_PORT, transform_ruleset};
use super::faults_nft::{transform_flannel_table, transform_table};
use super::objects;
use super::services;
use super::state::LabState;
use super::topology::PodRole;
use crate::error::{Error, Result};
use crate::model::{Cluster, ClusterNetwork, expect, flannel_nft, kube_proxy, kube_proxy_nft};

/// The cluster objects as they stand with the active faults.
pub fn current_cluster(state: &LabState) -> Cluster {
    let dns_down = state.faults.iter().any(|f| f.fault == Fault::DnsDown);
    let mut cluster = objects::cluster(&state.topology, &|p| {
        !(dns_down && p.role == PodRole::CoreDns)
    });
    if state
        .faults
        .iter()
        .any(|f| f.fault == Fault::IngressBackendPort)
    {
        cluster.ingresses = vec![objects::ingress(WRONG_INGRESS_PORT)].into();
    }
    // The ConfigMaps say the modes the nodes run in, as a real cluster's do.
    if state.flannel_nftables {
        edit_config(&mut cluster, "kube-flannel-cfg", "net-conf.json", |c| {
            c.replacen('{', "{\n  \"EnableNFTables\": true,", 1)
        });
    }
    if state.kube_proxy == KubeProxyMode::Nftables {
        edit_config(&mut cluster, "kube-proxy", "config.conf", |c| {
            c.replace("mode: \"iptables\"", "mode: \"nftables\"")
        });
    }
    cluster
}

/// Rewrites `key` of the ConfigMap `name` with `edit`.
fn edit_config(cluster: &mut Cluster, name: &str, key: &str, edit: impl Fn(&str) -> String) {
    for cm in cluster
        .config_maps
        .iter_mut()
        .filter(|m| m.metadata.name.as_deref() == Some(name))
    {
        if let Some(conf) = cm.data.as_mut().and_then(|d| d.get_mut(key)) {
            *conf = edit(conf);
        }
    }
    cluster.invalidate_index();
}

fn write_if_changed(path: &Path, text: &str) -> Result<bool> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(false);
    }
    crate::files::write_private(path, text.as_bytes())?;
    Ok(true)
}

/// Brings files, iptables and the ingress controller in line with the
/// objects. Returns the cluster it rendered.
pub fn sync(state: &LabState) -> Result<Cluster> {
    let cluster = current_cluster(state);
    crate::inspect::kubectl::write_dir(&cluster, &state.cluster_dir())?;
    if let Some(kc) = &state.kubeconfig {
        super::publish::publish(&cluster, kc)?;
    }

    write_if_changed(
        &state.dir.join("dns").join("hosts"),
        &services::dns_hosts(&cluster),
    )?;

    let net = ClusterNetwork::from_cluster(&cluster)
        .ok_or_else(|| Error::env("the lab's objects lack kube-flannel-cfg", None))?;
    let ports = kube_proxy::service_ports(&cluster);
    // With the real kube-proxy the lab writes flannel's and the CNI's rules
    // once, before kube-proxy starts; from then on the rules are theirs.
    let rendered = state.control_plane.is_none();
    let kube_proxy_chains = rendered && state.kube_proxy == KubeProxyMode::Iptables;
    let kube_proxy_table = rendered && state.kube_proxy == KubeProxyMode::Nftables;
    let control_plane_running = state
        .control_plane
        .as_ref()
        .is_some_and(|c| c.port.is_some());
    for node in state
        .topology
        .nodes
        .iter()
        .filter(|_| !control_plane_running)
    {
        let mut rs = expect::iptables_of(&cluster, &node.name, &net, kube_proxy_chains);
        for f in state
            .faults
            .iter()
            .filter(|f| f.fault.is_iptables() && f.node.as_deref() == Some(&node.name))
            // In nftables mode kube-proxy's faults are made to its table.
            .filter(|f| !(kube_proxy_table && f.fault.is_kube_proxy()))
        {
            transform_ruleset(&mut rs, f.fault, &ports, &state.topology, f.peer.as_deref());
        }
        exec::run_in(
            &node.netns,
            state.iptables.restore(),
            &["-w", "5"],
            &rs.render(),
        )?;
        if let Some(pod_cidr) = node_pod_cidr(&cluster, &node.name).filter(|_| net.nftables) {
            let mut t = flannel_nft::table(net.cluster_cidr, pod_cidr);
            for f in state
                .faults
                .iter()
                .filter(|f| f.node.as_deref() == Some(&node.name))
            {
                transform_flannel_table(&mut t, f.fault);
            }
            exec::write_table(&node.netns, &t)?;
        }
        if kube_proxy_table {
            let mut t =
                kube_proxy_nft::for_node(&ports, &cluster, &node.name, Some(net.cluster_cidr));
            for f in state
                .faults
                .iter()
                .filter(|f| f.fault.is_kube_proxy() && f.node.as_deref() == Some(&node.name))
            {
                transform_table(&mut t, f.fault, &ports, &state.topology, f.peer.as_deref());
            }
            exec::write_table(&node.netns, &t)?;
        }
    }

    if let Some(ingress) = state.topology.pods_with(PodRole::Ingress).next() {
        let dir = state.dir.join("ingress");
        let conf = services::nginx_conf(&cluster, &ingress.ip.to_string(), &dir);
        let changed = write_if_changed(&dir.join("nginx.conf"), &conf)?;
        if changed {
            for p in state
                .processes
                .iter()
                .filter(|p| p.role == "nginx" && super::process::is_alive(p))
            {
                reload_nginx(p.pid);
            }
        }
    }
    Ok(cluster)
}

fn node_pod_cidr(cluster: &Cluster, node: &str) -> Option<ipnet::Ipv4Net> {
    cluster
        .node(node)?
        .spec
        .as_ref()?
        .pod_cidr
        .as_deref()?
        .parse()
        .ok()
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// SIGHUPs the nginx master and waits (up to 2 s) until a worker of the new
/// generation runs, so the next request sees the new configuration.
fn reload_nginx(master: i32) {
    let before = children(master);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(master),
        nix::sys::signal::Signal::SIGHUP,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        let now = children(master);
        if now.iter().any(|c| !before.contains(c))
            && before.iter().all(|c| !now.contains(c) || is_exiting(*c))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// An old worker that closed its listeners and is draining (nginx retitles it).
fn is_exiting(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("shutting down"))
        .unwrap_or(true)
}
