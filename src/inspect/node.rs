//! Reading a node's state from its network namespace (which namespace is
//! `access`'s answer).

use super::tools;
use crate::dataplane::state::{Attachment, IptablesBackendState, Unread, UnreadSource};
use crate::dataplane::{Netns, NodeState, read_node_state};
use crate::error::Result;

/// Where a node's state is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSource {
    /// The node's name, when known (a lab node).
    pub node: Option<String>,
    pub netns: Netns,
    /// Namespaces of the pods on this node (lab pods, or containerd's
    /// `cni-*` namespaces on a real node).
    pub pod_netns: Vec<String>,
}

/// containerd names pod sandboxes' namespaces `cni-<uuid>` under /run/netns.
pub fn cri_namespaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(crate::dataplane::netns::NETNS_RUN_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("cni-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `before` with the kernel's own tables read again — links, addresses,
/// routes, rules, neighbours, the FDB and sysctls, what a netlink
/// notification says changed — and what the tools read (iptables, nftables,
/// conntrack, ethtool, IPVS; a real node's 113,000 rules saved and parsed
/// in most of a second) kept from `before`. Read whole when its devices
/// changed: pods' attachments and VXLAN offloads hang on them.
pub fn read_kernel_tables(source: &NodeSource, before: &NodeState) -> Result<NodeState> {
    let fresh = read_node_state(&source.netns)?;
    let devices = |s: &NodeState| -> Vec<(u32, String, Option<String>)> {
        s.links
            .iter()
            .map(|l| (l.ifindex, l.name.clone(), l.kind.clone()))
            .collect()
    };
    if devices(&fresh) != devices(before) {
        return read(source);
    }
    Ok(NodeState {
        netns: fresh.netns,
        links: fresh.links,
        addrs: fresh.addrs,
        routes: fresh.routes,
        rules: fresh.rules,
        neighs: fresh.neighs,
        fdb: fresh.fdb,
        sysctls: fresh.sysctls,
        ..before.clone()
    })
}

/// Reads the node's state: netlink, then iptables (both backends), the pod
/// interfaces attached to it, DNS conntrack entries and VXLAN offloads.
/// A missing tool is a warning in the state, not a failure.
pub fn read(source: &NodeSource) -> Result<NodeState> {
    let mut state = read_node_state(&source.netns)?;
    let unread = |source: UnreadSource, cause: String| Unread { source, cause };
    for (backend, tool) in [
        ("nft", "iptables-nft-save"),
        ("legacy", "iptables-legacy-save"),
    ] {
        let iptables = || UnreadSource::Iptables {
            backend: backend.into(),
        };
        match run_tool(&source.netns, tool, &[]) {
            Ok(text)
                if text
                    .lines()
                    .any(|l| l.starts_with("-A ") || l.starts_with(':')) =>
            {
                match crate::dataplane::iptables::save::parse(&text) {
                    Ok(ruleset) => state.iptables.push(IptablesBackendState {
                        backend: backend.into(),
                        ruleset,
                        raw: Some(text),
                    }),
                    Err(e) => state
                        .unread
                        .push(unread(iptables(), format!("{tool} output: {e}"))),
                }
            }
            Ok(_) => {}
            Err(e) => state.unread.push(unread(iptables(), e)),
        }
    }
    // Without nft there is no nftables-mode kube-proxy (it runs nft).
    if let Some(text) = nft_tables(&source.netns) {
        match text.and_then(|t| crate::dataplane::nftables::parse_tables(&t)) {
            Ok(tables) => state.nft_tables = tables.into(),
            Err(e) => state.unread.push(unread(UnreadSource::Nftables, e)),
        }
    }
    use crate::dataplane::nftables::{KUBE_PROXY_TABLE, KUBE_PROXY_TABLE6, KubeProxyTable};
    state.kube_proxy_nft =
        nft_table(&source.netns, &mut state, KUBE_PROXY_TABLE).map(KubeProxyTable::from);
    state.kube_proxy_nft6 = nft_table(&source.netns, &mut state, KUBE_PROXY_TABLE6);
    state.flannel_nft = nft_table(&source.netns, &mut state, crate::model::flannel_nft::TABLE);
    match run_tool(
        &source.netns,
        "conntrack",
        &["-L", "-p", "udp", "--orig-port-dst", "53"],
    ) {
        Ok(text) => state.conntrack_dns = tools::parse_conntrack(&text).into(),
        Err(e) => state.unread.push(unread(UnreadSource::Conntrack, e)),
    }
    let vxlans: Vec<String> = state
        .links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("vxlan"))
        .map(|l| l.name.clone())
        .collect();
    for dev in vxlans {
        match run_tool(&source.netns, "ethtool", &["-k", &dev]) {
            Ok(text) => {
                if let Some(on) = tools::parse_tx_checksum(&text) {
                    state.vxlan_tx_checksum.insert(dev, on);
                }
            }
            Err(e) => state.unread.push(unread(UnreadSource::Ethtool { dev }, e)),
        }
    }
    if state.link(crate::model::kube_proxy::IPVS_DEVICE).is_some() {
        match run_tool(&source.netns, "ipvsadm", &["-Sn"]) {
            Ok(text) => match crate::dataplane::ipvs::parse_save(&text) {
                Ok(vs) => state.ipvs = vs.into(),
                Err(e) => state.unread.push(unread(
                    UnreadSource::Ipvs,
                    format!("ipvsadm -Sn output: {e}"),
                )),
            },
            Err(e) => state.unread.push(unread(UnreadSource::Ipvs, e)),
        }
        match run_tool(&source.netns, "ipset", &["save"]) {
            Ok(text) => match crate::dataplane::ipvs::parse_ipset_save(&text) {
                Ok(sets) => state.ipsets = sets.into(),
                Err(e) => state.unread.push(unread(
                    UnreadSource::Ipset,
                    format!("ipset save output: {e}"),
                )),
            },
            Err(e) => state.unread.push(unread(UnreadSource::Ipset, e)),
        }
    }
    for ns in &source.pod_netns {
        match read_node_state(&Netns::named(ns)) {
            Ok(pod) => state.attachments.extend(attachments(ns, &pod)),
            Err(e) => state.unread.push(unread(
                UnreadSource::PodNamespace { netns: ns.clone() },
                e.to_string(),
            )),
        }
    }
    Ok(state)
}

/// The pod side of every veth in `pod` (a pod has one, eth0).
fn attachments(netns: &str, pod: &NodeState) -> Vec<Attachment> {
    pod.links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("veth"))
        .map(|l| Attachment {
            netns: netns.to_string(),
            ifname: l.name.clone(),
            mac: l.mac.clone(),
            mtu: l.mtu,
            up: l.up,
            addrs: pod
                .addrs_of(&l.name)
                .map(|a| a.address)
                .filter(|a| a.is_ipv4())
                .collect(),
            peer_ifindex: l.link_ifindex,
        })
        .collect()
}

/// Runs a read-only tool in the namespace; Err is the cause, recorded in
/// the state as what could not be read.
/// `nft -j list tables` in `netns`; `None` where nft is not installed.
fn nft_tables(netns: &Netns) -> Option<std::result::Result<String, String>> {
    let installed = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    installed.then(|| run_tool(netns, "nft", &["-j", "list", "tables"]))
}

/// Table `family name` where `nft list tables` listed it (what could not
/// be listed or parsed is recorded as unread).
fn nft_table(
    netns: &Netns,
    state: &mut NodeState,
    (family, name): (&str, &str),
) -> Option<crate::dataplane::nft_table::NftTableSpec> {
    state
        .nft_tables
        .iter()
        .any(|t| (t.family.as_str(), t.name.as_str()) == (family, name))
        .then(|| {
            run_tool(netns, "nft", &["-j", "list", "table", family, name])
                .and_then(|t| crate::dataplane::nft_table::NftTableSpec::parse_listing(&t))
        })?
        .map_err(|cause| {
            state.unread.push(Unread {
                source: UnreadSource::Nftables,
                cause,
            })
        })
        .ok()
}

fn run_tool(netns: &Netns, tool: &str, args: &[&str]) -> std::result::Result<String, String> {
    netns.exec(tool, args, None).map_err(|e| match e {
        crate::error::Error::Environment { what, .. } => {
            format!("{what}; its part of the node state is missing")
        }
        other => other.to_string(),
    })
}
