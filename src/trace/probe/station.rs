//! One node's part in a probe, the same whether the node is entered from
//! here or reached through its agent: watch the devices the path crosses
//! there (captures and netfilter tracing), and on the source's node send.
//! What a node saw ([`NodeProbe`]) is plain data, so an agent's answer and
//! a local watch feed the same verdict.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::verdict::Reply;
use super::{NodeNetfilter, nftrace, send};
use crate::access::target::PodNamespaces;
use crate::agent::api::{ProbeSend, ProbeSpec};
use crate::capture::dropwatch::owners::{Owners, PlacedDrop};
use crate::capture::dropwatch::{DropFilter, DropWatch};
use crate::capture::{decode::VXLAN_PORTS, filter, live};
use crate::dataplane::Netns;
use crate::error::Result;
use crate::trace::Proto;

/// How long `nft monitor` takes to subscribe after it starts: the probe
/// waits this long after arming so the tracer sees its first packet.
pub const SUBSCRIBE: Duration = Duration::from_millis(150);
/// How long what is in flight after the reply takes to reach the captures
/// and the monitor.
pub const SETTLE: Duration = Duration::from_millis(150);

/// A frame of the probe's filter, as captured on a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFrame {
    pub device: String,
    /// The kernel's timestamp, nanoseconds since the epoch (the node's
    /// clock: nodes of a cluster keep theirs in step, within milliseconds).
    pub ts_nanos: u64,
    #[serde(with = "crate::agent::payload::base64_bytes")]
    pub data: Vec<u8>,
}

/// What one node saw of the probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeProbe {
    pub node: String,
    /// When its captures started, nanoseconds since the epoch.
    pub started_nanos: u64,
    pub frames: Vec<NodeFrame>,
    pub netfilter: NodeNetfilter,
    /// Its devices on the path that could not be captured, and why.
    pub not_captured: Vec<String>,
    /// On the source's node: what was sent and what came back.
    pub sent: Option<Sent>,
    /// Packets of the probe's filter the kernel dropped on the node (its
    /// own namespace and its pods'), while the probe ran.
    #[serde(default)]
    pub drops: Vec<PlacedDrop>,
    /// Why the node's drops were not read.
    #[serde(default)]
    pub drops_note: Option<String>,
}

/// The kernel's drops of packets the probe's filter matches, for the
/// nodes a probe watches here: one watch serves every namespace of this
/// machine.
pub struct DropsWatch {
    watch: DropWatch,
    filter: DropFilter,
}

impl DropsWatch {
    /// Starts watching; why not, when the kernel cannot be asked.
    pub fn start(proto: Proto, tag: u16) -> std::result::Result<DropsWatch, String> {
        let filter = DropFilter::new(&filter::for_probe(proto, tag, &VXLAN_PORTS))
            .map_err(|e| e.to_string())?;
        let watch = DropWatch::start().map_err(|e| e.to_string())?;
        Ok(DropsWatch { watch, filter })
    }

    /// Stops; the matching drops in the namespaces of `owners`' nodes.
    pub fn finish(self, owners: &Owners) -> Vec<PlacedDrop> {
        self.watch
            .finish()
            .into_iter()
            .filter(|d| self.filter.matches(d))
            .filter_map(|d| {
                Some(PlacedDrop {
                    place: owners.place(d.netns, d.ifindex)?,
                    drop: d,
                })
            })
            .collect()
    }
}

/// The send, as the source's node saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sent {
    pub reply: Reply,
    /// The namespace it was sent from.
    pub from_netns: String,
    /// The IP size it was sent with (DF set), when chosen.
    pub size: Option<usize>,
}

/// A node's running watch; [`Armed::finish`] stops it.
pub struct Armed {
    node: String,
    devices: Vec<String>,
    started: Duration,
    running: live::Running,
    tracer: Option<nftrace::Tracer>,
    netfilter_note: Option<String>,
    not_captured: Vec<String>,
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Starts watching `spec.devices` on `node` (in `ns`): captures on those
/// that are up, netfilter tracing where the rules are nftables'.
pub fn arm(node: &str, ns: &Netns, spec: &ProbeSpec) -> Result<Armed> {
    let (devices, down) = usable(ns, &spec.devices);
    let running = live::start(&live::Spec {
        interfaces: live::Iface::in_netns(ns, &devices, Some(node)),
        filter: Some(filter::for_probe(spec.proto, spec.tag, &VXLAN_PORTS)),
        // Whole frames: a full-size probe cut short would not decode.
        snaplen: 65535,
        queue: 4096,
    })?;
    let (tracer, netfilter_note) = match nftrace::unavailable(ns) {
        Some(note) => (None, Some(note)),
        None => (
            Some(nftrace::Tracer::start(ns, spec.proto, spec.tag)?),
            None,
        ),
    };
    Ok(Armed {
        node: node.to_string(),
        started: since_epoch(),
        not_captured: down
            .iter()
            .map(|d| format!("{node}/{d}: the device is down, nothing passes it"))
            .collect(),
        devices,
        running,
        tracer,
        netfilter_note,
    })
}

impl Armed {
    /// Whether a netfilter tracer runs (and needs [`SUBSCRIBE`] to start).
    pub fn tracing(&self) -> bool {
        self.tracer.is_some()
    }

    /// Stops the captures and the tracer; what the node saw.
    pub fn finish(self, proto: Proto, tag: u16) -> NodeProbe {
        let hits = self
            .tracer
            .map(|t| nftrace::parse(&t.finish(), proto, tag))
            .unwrap_or_default();
        let frames = std::iter::from_fn(|| self.running.try_recv().ok())
            .flatten()
            .filter_map(|f| {
                Some(NodeFrame {
                    device: self.devices.get(f.index)?.clone(),
                    ts_nanos: u64::try_from(f.ts.as_nanos()).unwrap_or(u64::MAX),
                    data: f.data,
                })
            })
            .collect();
        let _ = self.running.finish();
        NodeProbe {
            netfilter: NodeNetfilter {
                node: self.node.clone(),
                hits,
                note: self.netfilter_note,
            },
            node: self.node,
            started_nanos: u64::try_from(self.started.as_nanos()).unwrap_or(u64::MAX),
            frames,
            not_captured: self.not_captured,
            sent: None,
            drops: Vec::new(),
            drops_note: None,
        }
    }
}

/// Sends the probe from the namespace holding `send.src` (among `pods`)
/// and waits for what comes back, then for what is in flight to settle.
pub fn send_from(pods: &PodNamespaces, proto: Proto, tag: u16, send: &ProbeSend) -> Result<Sent> {
    let source_ns = netns_holding(IpAddr::V4(send.src), pods)?;
    let size = match (send.size, proto) {
        (Some(s), _) => Some(s as usize),
        (None, Proto::Icmp) => mtu_of(&source_ns, send.src),
        _ => None,
    };
    let reply = send::send(
        &source_ns,
        send::Probe {
            proto,
            tag,
            dst: send.dst,
            port: send.port,
            size,
            http: send.http_host.clone().zip(send.http_path.clone()),
            timeout: Duration::from_millis(u64::from(send.timeout_ms)),
        },
    );
    std::thread::sleep(SETTLE);
    Ok(Sent {
        reply: reply?,
        from_netns: source_ns.display_name(),
        size,
    })
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
/// (labs side by side reuse the same addresses); for an agent given its
/// pods' namespaces, only those; otherwise the named namespaces (CNI's
/// `cni-*`), then every process's (a pod's sandbox).
pub fn netns_holding(ip: IpAddr, pods: &PodNamespaces) -> Result<Netns> {
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
            PodNamespaces::Named(names) => names.contains(n),
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
    Err(crate::error::Error::env(
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
