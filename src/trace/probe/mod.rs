//! `trace --probe`: a real packet along the traced path. It is sent from
//! inside the source's network namespace while every interface the static
//! trace predicts (on every node it names) is captured, and netfilter
//! tracing marks it on those nodes; then where it was last seen, which rule
//! it hit last, and whether a reply came back are compared with the trace.
//!
//! The comparison is pure ([`verdict`]); sending ([`send`]) and tracing
//! ([`nftrace`]) are the I/O around it.

pub mod identify;
pub mod nftrace;
pub mod send;
pub mod text;
pub mod verdict;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::Serialize;

use crate::access::target::PodNamespaces;
use crate::capture::{decode::VXLAN_PORTS, filter, live};
use crate::dataplane::Netns;
use crate::error::{Error, Result};
use crate::model::flannel::{BRIDGE_DEVICE, VTEP_DEVICE};
use crate::trace::resolve::End;
use crate::trace::{Proto, SentTo, Trace};
use nftrace::RuleHit;
use verdict::{Judgement, Reply, Seen};

/// How to probe.
#[derive(Debug, Clone)]
pub struct Options {
    /// The namespaces of the nodes this process can enter (`access`'s
    /// answer); the path's other nodes are reported as not captured.
    pub nodes: Vec<(String, Netns)>,
    /// Where the source pod's namespace may be.
    pub pods: PodNamespaces,
    /// How long to wait for a reply.
    pub timeout: Duration,
    /// IP packet size for ICMP and UDP probes (DF set); default: the
    /// source interface's MTU for ICMP, small for UDP.
    pub size: Option<usize>,
}

/// What the probe found.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// e.g. `tcp 10.2.2.50:41234 -> 10.1.59.153:80 (SYN)`.
    pub sent: String,
    /// The source namespace it was sent from.
    pub from_netns: String,
    pub reply: Reply,
    /// Every frame of the probe the captures saw, in time order.
    pub seen: Vec<Seen>,
    pub judgement: Judgement,
    pub netfilter: Vec<NodeNetfilter>,
    /// Nodes of the path that could not be captured, and why.
    pub not_captured: Vec<String>,
}

/// Netfilter tracing on one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeNetfilter {
    pub node: String,
    pub hits: Vec<RuleHit>,
    /// Why it was not traced.
    pub note: Option<String>,
}

impl NodeNetfilter {
    /// What decided the request's (or reply's) fate on this node: per
    /// table, the first rule with a final verdict (the DNAT, the FORWARD
    /// accept or drop), and any drop or reject after it.
    pub fn decisions(&self, reply: bool) -> Vec<&RuleHit> {
        let mut tables: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for h in self.hits.iter().filter(|h| h.reply == reply) {
            let final_verdict =
                matches!(h.verdict.as_str(), "accept" | "drop" | "reject" | "queue");
            if !final_verdict {
                continue;
            }
            if !tables.contains(&h.table.as_str()) || h.verdict != "accept" {
                tables.push(&h.table);
                out.push(h);
            }
        }
        out
    }
}

/// `--size` shapes ICMP echoes and UDP datagrams; a TCP SYN and a DNS
/// query have the size they have, so asking for another is an error rather
/// than a number printed and ignored.
fn check_size(size: Option<usize>, proto: Proto, port: Option<u16>) -> Result<()> {
    let what = match (proto, port) {
        (Proto::Tcp, _) => "a TCP SYN",
        (Proto::Udp, Some(53)) => "a DNS query",
        _ => return Ok(()),
    };
    match size {
        Some(s) => Err(Error::usage(
            format!("--size {s}: this probe is {what}, whose size is not chosen"),
            Some("--size applies to ICMP (--proto icmp) and UDP probes other than DNS".to_string()),
        )),
        None => Ok(()),
    }
}

/// Sends the probe for `trace` from `src` and reports what happened.
pub fn run(trace: &Trace, src: &End, opts: &Options) -> Result<ProbeReport> {
    let (src_ip, src_v4, sent_to, dst) = endpoints(trace, src)?;
    let proto = sent_to.proto;
    check_size(opts.size, proto, sent_to.port)?;
    let source_ns = netns_holding(src_ip, &opts.pods)?;
    let tag = probe_tag();
    let stations = stations(trace, opts);
    let running = live::start(&live::Spec {
        interfaces: stations.ifaces.clone(),
        filter: Some(filter::for_probe(proto, tag, &VXLAN_PORTS)),
        // Whole frames: a full-size probe cut short would not decode.
        snaplen: 65535,
        queue: 4096,
    })?;
    let (tracers, mut netfilter) = start_tracers(&stations.nodes, proto, tag)?;
    let size = match (opts.size, proto) {
        (Some(s), _) => Some(s),
        (None, Proto::Icmp) => mtu_of(&source_ns, src_v4),
        _ => None,
    };
    let reply = send::send(
        &source_ns,
        send::Probe {
            proto,
            tag,
            dst,
            port: sent_to.port,
            size,
            http: sent_to.http.clone(),
            timeout: opts.timeout,
        },
    );
    // What is in flight reaches the captures and the monitor.
    std::thread::sleep(Duration::from_millis(150));
    for (node, t) in tracers {
        netfilter.push(NodeNetfilter {
            node,
            hits: nftrace::parse(&t.finish(), proto, tag),
            note: None,
        });
    }
    let frames: Vec<live::Captured> = running.frames.try_iter().collect();
    let _ = running.finish();
    let reply = reply?;
    // Each frame by the station it was captured at.
    let decoded: Vec<(verdict::Place, f64, crate::capture::Frame)> = frames
        .iter()
        .filter_map(|f| {
            Some((
                stations.places.get(f.index)?.clone(),
                f.at.as_secs_f64(),
                crate::capture::decode(&f.data, &VXLAN_PORTS),
            ))
        })
        .collect();
    let seen = identify::identify(&decoded, proto, tag, src_ip);
    let judgement = verdict::judge(trace, &seen, &reply);
    Ok(ProbeReport {
        sent: format!(
            "{proto} {src_ip}{} -> {dst}{}{}",
            if proto == Proto::Icmp {
                format!(" echo id {tag}")
            } else {
                format!(":{tag}")
            },
            sent_to.port.map(|p| format!(":{p}")).unwrap_or_default(),
            size.map(|s| format!(" ({s} bytes, DF)"))
                .unwrap_or_default()
        ),
        from_netns: source_ns.display_name(),
        reply,
        seen,
        judgement,
        netfilter,
        not_captured: stations.not_captured,
    })
}

/// Where the probe goes from and to: the source address (IPv4), what the
/// trace says the packet is sent to, and its IPv4 destination.
fn endpoints(trace: &Trace, src: &End) -> Result<(IpAddr, Ipv4Addr, SentTo, Ipv4Addr)> {
    let src_ip = match src {
        End::Pod { ip, .. } | End::Outside { ip } => *ip,
        other => {
            return Err(Error::usage(
                format!("cannot probe from {}", other.label()),
                Some("probe from a pod or an outside address".into()),
            ));
        }
    };
    let IpAddr::V4(src_v4) = src_ip else {
        return Err(Error::usage("probes are IPv4 only", None));
    };
    let sent_to = trace.sent_to.clone().ok_or_else(|| {
        Error::usage(
            "the trace stops before the packet leaves the source, so there is nothing to probe",
            Some("fix what the static trace reports first".into()),
        )
    })?;
    let IpAddr::V4(dst) = sent_to.ip else {
        return Err(Error::usage("probes are IPv4 only", None));
    };
    Ok((src_ip, src_v4, sent_to, dst))
}

/// The interfaces the probe is watched on, the nodes they are on, and
/// what cannot be watched (a device down, a node out of reach).
struct Stations {
    ifaces: Vec<live::Iface>,
    /// Each interface's node and device, in the order of `ifaces`.
    places: Vec<verdict::Place>,
    nodes: Vec<(String, Netns)>,
    not_captured: Vec<String>,
}

/// Every interface the path crosses, on every node it names that is in reach.
fn stations(trace: &Trace, opts: &Options) -> Stations {
    let mut st = Stations {
        ifaces: Vec::new(),
        places: Vec::new(),
        nodes: Vec::new(),
        not_captured: Vec::new(),
    };
    for node in path_nodes(trace) {
        match opts.nodes.iter().find(|(n, _)| *n == node).map(|(_, ns)| ns.clone()) {
            Some(ns) => {
                let (devices, down) = usable(&ns, &devices_on(trace, &node));
                st.not_captured.extend(
                    down.iter()
                        .map(|d| format!("{node}/{d}: the device is down, nothing passes it")),
                );
                st.places.extend(devices.iter().map(|d| verdict::Place {
                    node: node.clone(),
                    device: d.clone(),
                }));
                st.ifaces.extend(live::Iface::in_netns(&ns, &devices, Some(&node)));
                st.nodes.push((node, ns));
            }
            None => st.not_captured.push(format!(
                "{node}: out of reach from here (not this machine, not a lab node); run the probe there to see it"
            )),
        }
    }
    st
}

/// A node's netfilter tracer, running while the probe is in flight.
type NodeTracer = (String, nftrace::Tracer);

/// Netfilter tracing on each node that allows it; a note for those that do not.
fn start_tracers(
    nodes: &[(String, Netns)],
    proto: Proto,
    tag: u16,
) -> Result<(Vec<NodeTracer>, Vec<NodeNetfilter>)> {
    let mut tracers = Vec::new();
    let mut notes = Vec::new();
    for (node, ns) in nodes {
        match nftrace::unavailable(ns) {
            Some(note) => notes.push(NodeNetfilter {
                node: node.clone(),
                hits: Vec::new(),
                note: Some(note),
            }),
            None => tracers.push((node.clone(), nftrace::Tracer::start(ns, proto, tag)?)),
        }
    }
    if !tracers.is_empty() {
        // Let `nft monitor` subscribe before the packet goes.
        std::thread::sleep(Duration::from_millis(150));
    }
    Ok((tracers, notes))
}

/// A source port / echo id unlikely to collide with anything running.
fn probe_tag() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    40000 + ((nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % 20000) as u16
}

/// The nodes the path names, in order.
fn path_nodes(trace: &Trace) -> Vec<String> {
    let mut nodes: Vec<String> = Vec::new();
    for h in trace
        .hops
        .iter()
        .chain(trace.branches.iter().flat_map(|b| b.hops.iter()))
    {
        if let Some(n) = &h.node
            && !nodes.contains(n)
        {
            nodes.push(n.clone());
        }
    }
    nodes
}

/// cni0, flannel.1, eth0 and every device the trace names on `node`.
fn devices_on(trace: &Trace, node: &str) -> Vec<String> {
    let mut devices: Vec<String> = vec![BRIDGE_DEVICE.into(), VTEP_DEVICE.into(), "eth0".into()];
    for h in trace
        .hops
        .iter()
        .chain(trace.branches.iter().flat_map(|b| b.hops.iter()))
    {
        if h.node.as_deref() == Some(node)
            && let Some(d) = &h.device
            && !devices.contains(d)
        {
            devices.push(d.clone());
        }
    }
    devices
}

/// Of `names`, the devices in `ns` that are up (libpcap cannot open one
/// that is down), and those that exist but are down.
fn usable(ns: &Netns, names: &[String]) -> (Vec<String>, Vec<String>) {
    let names = names.to_vec();
    ns.run(move || {
        let up: Vec<(String, bool)> = nix::ifaddrs::getifaddrs()
            .map(|a| {
                a.map(|i| {
                    let up = i.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
                    (i.interface_name, up)
                })
                .collect()
            })
            .unwrap_or_default();
        let state = |n: &str| up.iter().find(|(name, _)| name == n).map(|(_, u)| *u);
        let mut usable = Vec::new();
        let mut down = Vec::new();
        for n in names {
            match state(&n) {
                Some(true) => usable.push(n),
                Some(false) => down.push(n),
                None => {}
            }
        }
        (usable, down)
    })
    .unwrap_or_default()
}

/// The network namespace that holds `ip`. For a lab, only its namespaces
/// (labs side by side reuse the same addresses); otherwise the named
/// namespaces (CNI's `cni-*`), then every process's (a pod's sandbox).
fn netns_holding(ip: IpAddr, pods: &PodNamespaces) -> Result<Netns> {
    let named: Vec<String> = std::fs::read_dir(crate::dataplane::netns::NETNS_RUN_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut candidates: Vec<Netns> = named
        .into_iter()
        .filter(|n| match pods {
            PodNamespaces::Prefixed(prefix) => n.starts_with(prefix.as_str()),
            PodNamespaces::Anywhere => true,
        })
        .map(Netns::Named)
        .collect();
    let mut inodes = std::collections::HashSet::new();
    if *pods == PodNamespaces::Anywhere
        && let Ok(rd) = std::fs::read_dir("/proc")
    {
        for e in rd.flatten() {
            let path = e.path().join("ns/net");
            if let Ok(meta) = std::fs::metadata(&path) {
                use std::os::unix::fs::MetadataExt;
                if inodes.insert(meta.ino()) {
                    candidates.push(Netns::Path(path));
                }
            }
        }
    }
    for ns in candidates {
        let has = ns
            .run(move || {
                nix::ifaddrs::getifaddrs()
                    .map(|addrs| {
                        addrs.into_iter().any(|a| {
                            a.address
                                .and_then(|s| s.as_sockaddr_in().map(|v4| IpAddr::V4(v4.ip())))
                                == Some(ip)
                        })
                    })
                    .unwrap_or(false)
            })
            .unwrap_or(false);
        if has {
            return Ok(ns);
        }
    }
    Err(Error::env(
        format!("no network namespace on this machine holds {ip}"),
        Some("probe on the node that runs the source pod (or start the lab)".into()),
    ))
}

/// The MTU of the interface holding `ip` in `ns`.
fn mtu_of(ns: &Netns, ip: std::net::Ipv4Addr) -> Option<usize> {
    ns.run(move || -> Option<usize> {
        let name = nix::ifaddrs::getifaddrs()
            .ok()?
            .find_map(|a| (a.address?.as_sockaddr_in()?.ip() == ip).then_some(a.interface_name))?;
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).ok()?;
        // SAFETY: a zeroed ifreq with a NUL-terminated name that fits, and
        // SIOCGIFMTU writes only ifru_mtu.
        unsafe {
            use std::os::fd::AsRawFd;
            let mut req: nix::libc::ifreq = std::mem::zeroed();
            for (d, s) in req.ifr_name.iter_mut().zip(name.bytes().take(15)) {
                *d = s as nix::libc::c_char;
            }
            if nix::libc::ioctl(sock.as_raw_fd(), nix::libc::SIOCGIFMTU, &mut req) != 0 {
                return None;
            }
            usize::try_from(req.ifr_ifru.ifru_mtu).ok()
        }
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use crate::trace::Proto;

    #[test]
    fn size_is_for_icmp_and_udp_probes_only() {
        assert!(super::check_size(Some(1400), Proto::Icmp, None).is_ok());
        assert!(super::check_size(Some(1400), Proto::Udp, Some(5000)).is_ok());
        assert!(super::check_size(None, Proto::Tcp, Some(80)).is_ok());
        let e = super::check_size(Some(1400), Proto::Tcp, Some(80))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a TCP SYN"), "{e}");
        let e = super::check_size(Some(100), Proto::Udp, Some(53))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a DNS query"), "{e}");
    }
}
