//! The lab: the seed cluster of DESIGN.md built for real in network
//! namespaces (an underlay switch, nodes with cni0 and flannel.1, pods on
//! veth pairs, kube-proxy's iptables, dnsmasq, nginx, HTTP responders), with
//! cluster objects that agree with the kernel. Everything lives in
//! namespaces named `kdlab-<name>-*`; nothing is linked to the root
//! namespace and no packet leaves the lab.

pub mod build;
pub mod control_plane;
pub mod exec;
pub mod faults;
pub mod faults_nft;
pub mod process;
pub mod publish;
pub mod services;
pub mod state;
pub mod status;
pub mod sync;

pub use build::{down, up};
pub use faults::Fault;
pub use knetdoctor_core::lab::{DEFAULT_NAME, LabParams, Topology, objects, topology};
pub use state::{IptablesBackend, LabState};

use crate::dataplane::Netns;
use crate::error::{Error, Result};
use faults::{ActiveFault, Scope};
use topology::PodRole;

/// The node faults land on when `--node` is not given (DESIGN.md's example).
pub const DEFAULT_FAULT_NODE: &str = "k8s-node-12";

/// Injects `fault` on `node` (towards `peer` for per-peer faults).
pub fn break_fault(
    name: &str,
    fault: Fault,
    node: Option<&str>,
    peer: Option<&str>,
) -> Result<ActiveFault> {
    let mut state = LabState::require(name)?;

    let topo = state.topology.clone();
    let (node, peer) = match fault.scope() {
        Scope::Cluster => (None, None),
        scope => {
            let n = topo.node(node.unwrap_or(DEFAULT_FAULT_NODE))?;
            let p = match (scope, peer) {
                (Scope::Peer, Some(p)) => {
                    let p = topo.node(p)?;
                    if p.name == n.name {
                        return Err(Error::usage(
                            format!("--peer {} is the node itself", p.name),
                            Some("pick another node".to_string()),
                        ));
                    }
                    Some(p)
                }
                (Scope::Peer, None) => {
                    let i = topo
                        .nodes
                        .iter()
                        .position(|x| x.name == n.name)
                        .unwrap_or(0);
                    Some(&topo.nodes[(i + 1) % topo.nodes.len()])
                }
                _ => None,
            };
            (Some(n), p)
        }
    };
    if state
        .faults
        .iter()
        .any(|f| f.fault == fault && f.node.as_deref() == node.map(|n| n.name.as_str()))
    {
        return Err(Error::usage(
            format!(
                "{} is already injected{}",
                fault.name(),
                node.map(|n| format!(" on {}", n.name)).unwrap_or_default()
            ),
            Some(format!(
                "`knetdoctor lab heal --name {name}` undoes all faults"
            )),
        ));
    }
    let change = match (node, peer) {
        (Some(n), p) => faults::kernel_change(fault, &topo, n, p.unwrap_or(n)),
        (None, _) => faults::kernel_change(fault, &topo, &topo.nodes[0], &topo.nodes[0]),
    };
    if let Some(n) = node {
        exec::ip_batch(&n.netns, &change.ip)?;
        exec::bridge_batch(&n.netns, &change.bridge)?;
        set_sysctls(&n.netns, &change.sysctl)?;
        if change.flush_pod_neigh {
            for pod in topo.pods_on(&n.name) {
                exec::ip_batch(&pod.netns, &["neigh flush dev eth0".to_string()])?;
            }
        }
    }
    let active = ActiveFault {
        fault,
        node: node.map(|n| n.name.clone()),
        peer: peer.map(|p| p.name.clone()),
        detail: change.detail,
        undo_ip: change.undo_ip,
        undo_bridge: change.undo_bridge,
        undo_sysctl: change.undo_sysctl,
        rules_before: None,
    };
    let mut active = active;
    // With the real kube-proxy the lab renders no rules: a fault in
    // flannel's chains edits the node's rules as they are.
    if state.control_plane.is_some()
        && fault.is_iptables()
        && !fault.is_kube_proxy()
        && let Some(n) = node
    {
        let ports = crate::model::kube_proxy::service_ports(&sync::current_cluster(&state));
        let peer_name = peer.map(|p| p.name.clone());
        active.rules_before = Some(control_plane::damage_rules(&state, &n.name, |rs| {
            faults::transform_ruleset(rs, fault, &ports, &topo, peer_name.as_deref())
        })?);
        state.faults.push(active.clone());
        state.save()?;
        return Ok(active);
    }
    state.faults.push(active.clone());
    state.save()?;
    if fault == Fault::DnsDown {
        let dns: Vec<_> = state
            .processes
            .iter()
            .filter(|p| p.role == "dnsmasq")
            .map(|p| (p.pid, Some(p.start_time)))
            .collect();
        process::stop_all(&dns);
        state.processes.retain(|p| p.role != "dnsmasq");
        state.save()?;
    }
    // With the real kube-proxy, its faults happen as in life: it stops and
    // its chains are left damaged.
    if state.control_plane.is_some()
        && fault.is_kube_proxy()
        && let Some(n) = node
    {
        let ports = crate::model::kube_proxy::service_ports(&sync::current_cluster(&state));
        let peer_name = peer.map(|p| p.name.clone());
        match state.kube_proxy {
            control_plane::KubeProxyMode::Iptables => {
                control_plane::break_kube_proxy(&mut state, &n.name, |rs| {
                    faults::transform_ruleset(rs, fault, &ports, &topo, peer_name.as_deref())
                })?
            }
            control_plane::KubeProxyMode::Nftables => {
                control_plane::break_kube_proxy_table(&mut state, &n.name, |t| {
                    faults_nft::transform_table(t, fault, &ports, &topo, peer_name.as_deref())
                })?
            }
        }
        return Ok(active);
    }
    if fault.is_iptables() || fault.scope() == Scope::Cluster {
        sync::sync(&state)?;
    }
    Ok(active)
}

fn set_sysctls(netns: &str, values: &[(String, String)]) -> Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    let values = values.to_vec();
    Netns::named(netns)
        .run(move || {
            values
                .iter()
                .try_for_each(|(k, v)| crate::dataplane::sysctl::write(k, v))
        })?
        .map_err(|e| Error::env(format!("cannot set a sysctl in {netns}: {e}"), None))
}

/// Undoes every injected fault, newest first; returns what was undone.
pub fn heal(name: &str) -> Result<Vec<ActiveFault>> {
    let mut state = LabState::require(name)?;
    let healed: Vec<ActiveFault> = state.faults.iter().rev().cloned().collect();
    for f in &healed {
        if let Some(node) = &f.node {
            let netns = state.topology.node(node)?.netns.clone();
            exec::ip_batch(&netns, &f.undo_ip)?;
            exec::bridge_batch(&netns, &f.undo_bridge)?;
            set_sysctls(&netns, &f.undo_sysctl)?;
            if let Some(rules) = &f.rules_before {
                control_plane::restore_rules(&mut state, node, rules)?;
            }
        }
    }
    // Caches the faults left behind: PMTU exceptions (vtep-mtu) and FAILED
    // gateway neighbours (cni0-addr-wrong) would outlive the fix by minutes.
    let mut touched: Vec<&str> = healed.iter().filter_map(|f| f.node.as_deref()).collect();
    touched.sort();
    touched.dedup();
    for node in touched {
        let n = state.topology.node(node)?;
        exec::ip_batch(&n.netns, &["route flush cache".to_string()])?;
        for pod in state.topology.pods_on(node) {
            exec::ip_batch(
                &pod.netns,
                &[
                    "route flush cache".to_string(),
                    "neigh flush dev eth0".to_string(),
                ],
            )?;
        }
    }
    state.faults.clear();
    state.save()?;
    if healed.iter().any(|f| f.fault == Fault::DnsDown) {
        let dns: Vec<_> = state
            .topology
            .pods_with(PodRole::CoreDns)
            .cloned()
            .collect();
        for pod in &dns {
            let p = services::start_dnsmasq(&state, pod)?;
            state.processes.push(p);
        }
        state.save()?;
    }
    sync::sync(&state)?;
    if state.control_plane.is_some() {
        control_plane::restart_kube_proxies(&mut state)?;
    }
    build::wait_for_listeners(&state)?;
    Ok(healed)
}

/// The lab's objects as last written to its cluster directory.
pub fn kubectl_cluster(state: &LabState) -> Result<crate::model::Cluster> {
    crate::inspect::kubectl::read_dir(&state.cluster_dir())
}

#[cfg(test)]
mod objects_tests;
