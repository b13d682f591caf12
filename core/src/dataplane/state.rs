//! `NodeState`: one node's dataplane as typed, serializable records. This is
//! what checks, trace and repair consume, and what `inspect node -o json`
//! prints (names and value spellings follow iproute2's JSON where one exists).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::model::shared::Shared;

/// Everything read from one network namespace.
///
/// Its tables are [`Shared`] (copy-on-write): a reading after one node's
/// kernel notification keeps every other node's state, and the notified
/// node's rules, as the same objects. Copying them cost 150–240 ms a
/// reading at scale (two nodes' kube-proxy rules for 10,000 Services), and
/// comparing a kept table with itself is free.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// The namespace it was read from (`None`: the caller's own).
    pub netns: Option<String>,
    pub links: Shared<Link>,
    pub addrs: Shared<Addr>,
    pub routes: Shared<Route>,
    pub rules: Shared<Rule>,
    pub neighs: Shared<Neigh>,
    pub fdb: Shared<FdbEntry>,
    pub sysctls: Sysctls,
    /// iptables rulesets, one per backend that holds any rules.
    #[serde(default)]
    pub iptables: Shared<IptablesBackendState>,
    /// Interfaces in other namespaces whose veth peer lives here (pods).
    #[serde(default)]
    pub attachments: Shared<Attachment>,
    /// UDP conntrack entries towards port 53 (DNS).
    #[serde(default)]
    pub conntrack_dns: Shared<ConntrackEntry>,
    /// IPVS virtual servers (kube-proxy IPVS mode; read when kube-ipvs0 exists).
    #[serde(default)]
    pub ipvs: Shared<super::ipvs::VirtualServer>,
    /// ipsets (read alongside IPVS).
    #[serde(default)]
    pub ipsets: Shared<super::ipvs::IpSet>,
    /// nftables tables (kube-proxy's nftables mode programs `ip kube-proxy`).
    #[serde(default)]
    pub nft_tables: Shared<super::nftables::NftTable>,
    /// kube-proxy's nftables table, read where it exists.
    #[serde(default)]
    pub kube_proxy_nft: Option<super::nftables::KubeProxyTable>,
    /// kube-proxy's IPv6 table (`ip6 kube-proxy`, its IPv6 proxier's; on
    /// an IPv4 cluster it holds the skeleton only): read and shown, not
    /// checked (the checks cover the IPv4 side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_proxy_nft6: Option<super::nft_table::NftTableSpec>,
    /// flannel's nftables table (`EnableNFTables`), read where it exists.
    #[serde(default)]
    pub flannel_nft: Option<super::nft_table::NftTableSpec>,
    /// tx-checksum-ip-generic per VXLAN device (true = offload on).
    #[serde(default)]
    pub vxlan_tx_checksum: BTreeMap<String, bool>,
    /// What could not be read or parsed, and why: `check` reports each,
    /// so a node whose rules were not understood is never called healthy.
    #[serde(default)]
    pub unread: Vec<Unread>,
}

impl NodeState {
    /// The nftables table `family name` as the node holds it (kube-proxy's
    /// or flannel's; the others are not read).
    pub fn nft_table(&self, family: &str, name: &str) -> Option<&super::nft_table::NftTableSpec> {
        [
            self.kube_proxy_nft.as_ref().map(|k| &k.table),
            self.flannel_nft.as_ref(),
        ]
        .into_iter()
        .flatten()
        .find(|t| t.family == family && t.name == name)
    }
}

/// A part of a node's state that could not be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unread {
    pub source: UnreadSource,
    /// What the tool, the kernel or the parser said (a parse error names
    /// its line).
    pub cause: String,
}

/// Which part of a node's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum UnreadSource {
    /// The rules of one iptables backend (`nft` or `legacy`).
    Iptables { backend: String },
    /// kube-proxy's IPVS virtual servers.
    Ipvs,
    /// kube-proxy's ipsets.
    Ipset,
    /// UDP conntrack entries towards port 53.
    Conntrack,
    /// A VXLAN device's offload settings.
    Ethtool { dev: String },
    /// A pod's network namespace.
    PodNamespace { netns: String },
    /// The nftables tables (`nft list tables`).
    Nftables,
}

impl std::fmt::Display for UnreadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnreadSource::Iptables { backend } => write!(f, "the iptables-{backend} rules"),
            UnreadSource::Ipvs => write!(f, "the IPVS table"),
            UnreadSource::Ipset => write!(f, "the ipsets"),
            UnreadSource::Conntrack => write!(f, "the DNS conntrack entries"),
            UnreadSource::Ethtool { dev } => write!(f, "{dev}'s offload settings"),
            UnreadSource::PodNamespace { netns } => write!(f, "pod namespace {netns}"),
            UnreadSource::Nftables => write!(f, "the nftables tables"),
        }
    }
}

/// One iptables backend's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IptablesBackendState {
    /// `nft` (iptables-nft) or `legacy` (iptables-legacy).
    pub backend: String,
    pub ruleset: super::iptables::Ruleset,
    /// The `iptables-save` text as the tool printed it, when it was read
    /// from a tool or a file: what a bundle stores, verbatim.
    #[serde(skip)]
    pub raw: Option<String>,
}

/// The far end of a veth whose near end is on this node: a pod's eth0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The namespace it lives in.
    pub netns: String,
    pub ifname: String,
    pub mac: Option<String>,
    pub mtu: u32,
    pub up: bool,
    /// Its IPv4 addresses.
    pub addrs: Vec<IpAddr>,
    /// The ifindex of its peer on this node (the host-side veth).
    pub peer_ifindex: Option<u32>,
}

/// One conntrack entry: original direction and the reply's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackEntry {
    pub proto: String,
    pub orig_src: IpAddr,
    pub orig_dst: IpAddr,
    pub orig_dport: u16,
    /// Where replies come from: the real endpoint after DNAT.
    pub reply_src: IpAddr,
}

/// A network device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// `bridge`, `veth`, `vxlan`, `dummy`, ... or `None` for a plain device (lo).
    pub kind: Option<String>,
    pub mtu: u32,
    /// Lower-case colon-separated MAC, when the device has one.
    pub mac: Option<String>,
    /// IFF_UP: administratively up.
    pub up: bool,
    /// IFF_LOWER_UP: carrier.
    pub lower_up: bool,
    /// RFC 2863 operational state as iproute2 prints it (`UP`, `DOWN`, `UNKNOWN`, ...).
    pub operstate: String,
    /// The bridge (or bond) this device is a port of.
    pub master: Option<String>,
    /// IFLA_LINK: a veth's peer ifindex, or a VLAN's parent.
    pub link_ifindex: Option<u32>,
    /// IFLA_LINK_NETNSID: the peer lives in another namespace.
    pub link_netnsid: Option<i32>,
    pub vxlan: Option<Vxlan>,
    pub bridge_port: Option<BridgePort>,
}

/// VXLAN device attributes (`ip -d link` info_data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vxlan {
    pub vni: u32,
    pub local: Option<IpAddr>,
    /// The underlay device's ifindex and name.
    pub dev_ifindex: Option<u32>,
    pub dev: Option<String>,
    /// UDP destination port.
    pub port: u16,
    pub learning: bool,
}

/// A VXLAN device as it is made whole (its attributes cannot all be
/// changed in place): what repair recreates flannel.1 from, and what it
/// records of the device it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VxlanSpec {
    pub dev: String,
    pub vni: u32,
    pub local: Option<std::net::Ipv4Addr>,
    /// The underlay device.
    pub underlay: Option<String>,
    pub port: u16,
    pub learning: bool,
    pub mac: Option<super::Mac>,
    pub mtu: u32,
    /// IPv4 addresses, `A/N`.
    pub addrs: Vec<Ipv4Net>,
    pub up: bool,
}

impl VxlanSpec {
    /// The device `dev` as `state` holds it, if it is a VXLAN device.
    pub fn of(state: &NodeState, dev: &str) -> Option<VxlanSpec> {
        let l = state.link(dev)?;
        let v = l.vxlan.as_ref()?;
        Some(VxlanSpec {
            dev: dev.to_string(),
            vni: v.vni,
            local: match v.local {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            },
            underlay: v.dev.clone(),
            port: v.port,
            learning: v.learning,
            mac: l.mac_addr(),
            mtu: l.mtu,
            addrs: state.addrs_of(dev).filter_map(Addr::v4).collect(),
            up: l.up,
        })
    }
}

/// Bridge-port attributes that matter for pods on cni0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgePort {
    pub hairpin: bool,
}

/// An interface address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addr {
    pub ifindex: u32,
    pub dev: String,
    pub address: IpAddr,
    pub prefix_len: u8,
    /// `global`, `link`, `host`, ...
    pub scope: String,
}

impl Addr {
    /// The IPv4 address with its prefix length (`10.2.2.1/24`), if it is one.
    pub fn v4(&self) -> Option<Ipv4Net> {
        match self.address {
            IpAddr::V4(a) => Ipv4Net::new(a, self.prefix_len).ok(),
            IpAddr::V6(_) => None,
        }
    }
}

/// A route from any table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// `unicast`, `local`, `broadcast`, `blackhole`, `unreachable`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// `default` or `a.b.c.d/len`; a host route keeps its `/32`.
    pub dst: super::RouteDst,
    pub gateway: Option<IpAddr>,
    pub dev: Option<String>,
    pub oif: Option<u32>,
    /// Numeric table id (254 main, 255 local).
    pub table: u32,
    /// `kernel`, `boot`, `static`, ... as iproute2 names them.
    pub protocol: String,
    /// `global` (universe), `link`, `host`, ...
    pub scope: String,
    pub prefsrc: Option<IpAddr>,
    pub metric: Option<u32>,
    /// Route flags as iproute2 prints them (`onlink`, `linkdown`, ...).
    pub flags: Vec<String>,
}

impl Link {
    /// Its link-layer address as an Ethernet address, when it is one.
    pub fn mac_addr(&self) -> Option<super::Mac> {
        self.mac.as_deref()?.parse().ok()
    }
}

impl Route {
    /// True for `onlink` routes (flannel's peer routes are).
    pub fn onlink(&self) -> bool {
        self.flags.iter().any(|f| f == "onlink")
    }
}

/// A policy routing rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub priority: u32,
    pub family: String,
    /// `lookup` target table id.
    pub table: u32,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub fwmark: Option<u32>,
    pub fwmask: Option<u32>,
    /// `to_tbl`, `blackhole`, `unreachable`, `prohibit`, `goto`, ...
    pub action: String,
}

/// An IP neighbour (ARP) entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neigh {
    pub ifindex: u32,
    pub dev: String,
    pub dst: IpAddr,
    pub lladdr: Option<String>,
    /// NUD states as iproute2 prints them (`PERMANENT`, `REACHABLE`, `STALE`, ...).
    pub state: Vec<String>,
    /// NTF flags (`router`, `proxy`, `extern_learn`, ...).
    pub flags: Vec<String>,
}

impl Neigh {
    /// Its link-layer address as an Ethernet address (flannel.1's
    /// entries carry one; other devices may hold other kinds).
    pub fn mac(&self) -> Option<super::Mac> {
        self.lladdr.as_deref()?.parse().ok()
    }

    /// True for a PERMANENT entry (flannel programs its VTEP neighbours so).
    pub fn permanent(&self) -> bool {
        self.state.iter().any(|s| s == "PERMANENT")
    }
}

/// A bridge forwarding database entry (`bridge fdb`), including the remote
/// VTEP entries of a VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    pub ifindex: u32,
    pub dev: String,
    pub mac: super::Mac,
    /// The remote VTEP IP (VXLAN entries).
    pub dst: Option<IpAddr>,
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub vlan: Option<u16>,
    /// The bridge it belongs to, for entries of a bridge port.
    pub master: Option<String>,
    /// NTF flags as iproute2 prints them (`self`, `master`, `extern_learn`, ...).
    pub flags: Vec<String>,
    /// `permanent`, `static`, or empty for a learned entry.
    pub state: String,
}

impl FdbEntry {
    /// True for a `self permanent` entry (flannel's kind).
    pub fn self_permanent(&self) -> bool {
        self.flags.iter().any(|f| f == "self") && self.state == "permanent"
    }
}

/// The kernel settings flannel and kube-proxy depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctls {
    /// net.ipv4.ip_forward
    pub ip_forward: Option<bool>,
    /// net.bridge.bridge-nf-call-iptables (None: br_netfilter not loaded)
    pub bridge_nf_call_iptables: Option<bool>,
    /// net.ipv4.conf.<dev>.rp_filter, including `all` and `default`.
    pub rp_filter: BTreeMap<String, u8>,
}

impl Sysctls {
    /// The value under its `sysctl` key, as `sysctl -n` prints it.
    pub fn get(&self, key: &str) -> Option<String> {
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        match key {
            "net.ipv4.ip_forward" => self.ip_forward.map(flag),
            "net.bridge.bridge-nf-call-iptables" => self.bridge_nf_call_iptables.map(flag),
            _ => {
                let dev = key
                    .strip_prefix("net.ipv4.conf.")?
                    .strip_suffix(".rp_filter")?;
                self.rp_filter.get(dev).map(|v| v.to_string())
            }
        }
    }
}

impl NodeState {
    /// The link named `name`.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// Addresses on device `dev`.
    pub fn addrs_of<'a>(&'a self, dev: &'a str) -> impl Iterator<Item = &'a Addr> + 'a {
        self.addrs.iter().filter(move |a| a.dev == dev)
    }
}

/// Lower-case colon-separated hex, as iproute2 prints link-layer addresses.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
