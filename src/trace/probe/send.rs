//! Sending the probe from inside the source's network namespace: a TCP SYN
//! (a connect, with the HTTP request line for a URL), a UDP datagram (a DNS
//! query on port 53) or an ICMP echo, from a fixed source port or echo id so
//! captures and netfilter tracing can pick it out. A raw ICMP socket beside
//! it catches the errors the path sends back about it.

use crate::trace::Proto;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use etherparse::{IcmpEchoHeader, Icmpv4Header, Icmpv4Slice, Icmpv4Type, Ipv4HeaderSlice};
use socket2::{Domain, Protocol, Socket, Type};

use super::verdict::{Reply, ReplyKind};
use crate::dataplane::Netns;
use crate::error::{Error, Result};

/// What to send.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `tcp`, `udp` or `icmp`.
    pub proto: Proto,
    /// The TCP/UDP source port, or the ICMP echo id.
    pub tag: u16,
    pub dst: Ipv4Addr,
    pub port: Option<u16>,
    /// IP packet size with DF set (UDP and ICMP); `None`: a small packet.
    pub size: Option<usize>,
    /// For a URL: the Host header and path of a GET.
    pub http: Option<(String, String)>,
    pub timeout: Duration,
}

/// Sends `probe` from inside `netns` and waits for what comes back.
pub fn send(netns: &Netns, probe: Probe) -> Result<Reply> {
    netns.run(move || send_here(&probe))?
}

fn send_here(p: &Probe) -> Result<Reply> {
    let sock_err = |e: std::io::Error| Error::env(format!("probe socket: {e}"), None);
    let errors = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map_err(sock_err)?;
    let started = Instant::now();
    let mut reply = match p.proto {
        Proto::Icmp => return echo(p, &errors, started),
        Proto::Udp => udp(p, started)?,
        Proto::Tcp => tcp(p, started)?,
    };
    // Connection refused or unreachable: was it an ICMP error, and from where?
    if matches!(reply.kind, ReplyKind::Reset | ReplyKind::None) || reply.from.is_none() {
        errors.set_nonblocking(true).map_err(sock_err)?;
        if let Some(err) = icmp_error_about(&errors, p) {
            reply = err;
        }
    }
    Ok(reply)
}

fn tcp(p: &Probe, started: Instant) -> Result<Reply> {
    let port = port_of(p)?;
    let s = bound(Type::STREAM, Protocol::TCP, p)?;
    let to = SocketAddr::from((p.dst, port));
    Ok(match s.connect_timeout(&to.into(), p.timeout) {
        Ok(()) => {
            let mut detail = format!("SYN-ACK after {}", ms(started));
            if let Some((host, path)) = &p.http {
                detail = http_status(s, host, path, p.timeout).unwrap_or(detail);
            }
            Reply {
                kind: ReplyKind::Answer,
                from: Some(IpAddr::V4(p.dst)),
                detail,
            }
        }
        Err(e) => socket_error(e, started),
    })
}

fn udp(p: &Probe, started: Instant) -> Result<Reply> {
    let port = port_of(p)?;
    let s = bound(Type::DGRAM, Protocol::UDP, p)?;
    let io = |e: std::io::Error| Error::env(format!("probe socket: {e}"), None);
    s.connect(&SocketAddr::from((p.dst, port)).into())
        .map_err(io)?;
    let payload = if port == 53 {
        dns_query(p.tag)
    } else {
        let n = p.size.map(|s| s.saturating_sub(28)).unwrap_or(16);
        let mut v = b"knetdoctor probe".repeat(n / 16 + 1);
        v.truncate(n);
        v
    };
    if let Err(e) = s.send(&payload) {
        return Ok(socket_error(e, started));
    }
    s.set_read_timeout(Some(p.timeout)).map_err(io)?;
    let mut buf = [0u8; 2048];
    Ok(match (&s).read(&mut buf) {
        Ok(n) => Reply {
            kind: ReplyKind::Answer,
            from: Some(IpAddr::V4(p.dst)),
            detail: format!("{n} bytes back after {}", ms(started)),
        },
        Err(e) => socket_error(e, started),
    })
}

/// An ICMP echo request with DF set, padded to `size`.
fn echo(p: &Probe, sock: &Socket, started: Instant) -> Result<Reply> {
    let io = |e: std::io::Error| Error::env(format!("probe socket: {e}"), None);
    if p.size.is_some() {
        dont_fragment(sock).map_err(io)?;
    }
    let payload = vec![0x6bu8; p.size.map(|s| s.saturating_sub(28)).unwrap_or(56)];
    let header = Icmpv4Header::with_checksum(
        Icmpv4Type::EchoRequest(IcmpEchoHeader { id: p.tag, seq: 1 }),
        &payload,
    );
    let mut packet = header.to_bytes().to_vec();
    packet.extend_from_slice(&payload);
    if let Err(e) = sock.send_to(&packet, &SocketAddr::from((p.dst, 0)).into()) {
        return Ok(socket_error(e, started));
    }
    let mut buf = vec![0u8; 65536];
    while started.elapsed() < p.timeout {
        sock.set_read_timeout(Some(
            p.timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1)),
        ))
        .map_err(io)?;
        let Ok(n) = (&*sock).read(&mut buf) else {
            break;
        };
        let Some((from, icmp)) = icmp_in(&buf[..n]) else {
            continue;
        };
        match icmp.icmp_type() {
            Icmpv4Type::EchoReply(h) if h.id == p.tag => {
                return Ok(Reply {
                    kind: ReplyKind::Answer,
                    from: Some(from),
                    detail: format!("echo reply after {}", ms(started)),
                });
            }
            _ => {
                if let Some(r) = as_error_about(from, &icmp, p) {
                    return Ok(r);
                }
            }
        }
    }
    Ok(Reply {
        kind: ReplyKind::None,
        from: None,
        detail: format!("no reply within {:.1}s", p.timeout.as_secs_f64()),
    })
}

fn port_of(p: &Probe) -> Result<u16> {
    needs_port(p.proto, p.port)
}

/// The destination port a TCP or UDP probe needs (checked before anything
/// is armed, and again where it is sent).
pub fn needs_port(proto: Proto, port: Option<u16>) -> Result<u16> {
    port.ok_or_else(|| {
        Error::usage(
            format!(
                "a {} probe needs a destination port",
                proto.name().to_uppercase()
            ),
            Some("give --port".into()),
        )
    })
}

/// The kernel's default `net.ipv4.ip_local_port_range`: where a pod's own
/// outgoing connections (and `curl`'s, and a resolver's) take their source
/// ports. A probe tag drawn from inside it collides with one of them now
/// and then: a TIME_WAIT socket without SO_REUSEADDR holds its port for
/// 60 s and the probe's bind fails.
pub const EPHEMERAL_DEFAULT: (u16, u16) = (32768, 60999);

/// The probe's tag (source port or echo id) drawn from `seed`, outside the
/// ephemeral range `range`: above it when there is room (4,536 ports by
/// default), else below it down to 1024, else anywhere from 1024.
pub fn tag_from(seed: u32, range: (u16, u16)) -> u16 {
    let (lo, hi) = (
        u32::from(range.0.min(range.1)),
        u32::from(range.0.max(range.1)),
    );
    let above = 65535 - hi;
    let below = lo.saturating_sub(1024);
    let port = if above > 0 && above >= below.min(1024) {
        hi + 1 + seed % above
    } else if below > 0 {
        1024 + seed % below
    } else {
        1024 + seed % (65536 - 1024)
    };
    port as u16
}

/// How many ports [`free_tag`] tries before it gives up.
const FREE_TAG_TRIES: u32 = 64;

/// A tag for a `proto` probe sent from `netns` whose port no socket there
/// holds: drawn by [`tag_from`] outside that namespace's own ephemeral
/// range, and bound once (as the probe binds it) to make sure. ICMP takes
/// [`tag_from`] as it is: an echo id holds nothing.
pub fn free_tag(netns: &Netns, proto: Proto, seed: u32) -> Result<u16> {
    if proto == Proto::Icmp {
        return Ok(tag_from(seed, EPHEMERAL_DEFAULT));
    }
    let where_ = netns.display_name();
    netns.run(move || {
        let range = ephemeral_range().unwrap_or(EPHEMERAL_DEFAULT);
        (0..FREE_TAG_TRIES)
            .map(|i| tag_from(seed.wrapping_add(i.wrapping_mul(7919)), range))
            .find(|&port| bindable(proto, port))
            .ok_or_else(|| {
                Error::env(
                    format!(
                        "no free source port for the probe in {where_}: {FREE_TAG_TRIES} ports outside {}-{} tried, every one in use",
                        range.0, range.1
                    ),
                    Some("run the probe again, or free ports above the namespace's ip_local_port_range".into()),
                )
            })
    })?
}

/// This namespace's `net.ipv4.ip_local_port_range` (per namespace: read
/// from the thread that entered it).
fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

/// Whether the probe's bind of `port` would succeed here now.
fn bindable(proto: Proto, port: u16) -> bool {
    let (kind, protocol) = match proto {
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
        _ => (Type::STREAM, Protocol::TCP),
    };
    bind_port(kind, protocol, port).is_ok()
}

/// A socket bound to `port` as the probe binds it (SO_REUSEADDR): what
/// [`bindable`] tries and [`bound`] keeps.
fn bind_port(kind: Type, proto: Protocol, port: u16) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, kind, Some(proto))?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    Ok(s)
}

fn bound(kind: Type, proto: Protocol, p: &Probe) -> Result<Socket> {
    let s = bind_port(kind, proto, p.tag).map_err(|e| {
        Error::env(
            format!("cannot bind the probe to port {}: {e}", p.tag),
            None,
        )
    })?;
    if p.size.is_some() {
        dont_fragment(&s).map_err(|e| Error::env(format!("probe socket: {e}"), None))?;
    }
    Ok(s)
}

/// IP_MTU_DISCOVER = IP_PMTUDISC_DO: the probe is never fragmented, so a
/// hop with a smaller MTU answers "fragmentation needed" as it would for
/// the pod's own full-size packets.
fn dont_fragment(s: &Socket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let v: nix::libc::c_int = nix::libc::IP_PMTUDISC_DO;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    let rc = unsafe {
        nix::libc::setsockopt(
            s.as_raw_fd(),
            nix::libc::IPPROTO_IP,
            nix::libc::IP_MTU_DISCOVER,
            (&v as *const nix::libc::c_int).cast(),
            std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn socket_error(e: std::io::Error, started: Instant) -> Reply {
    use std::io::ErrorKind::*;
    let (kind, detail) = match e.kind() {
        ConnectionRefused => (
            ReplyKind::Reset,
            format!("connection refused after {}", ms(started)),
        ),
        TimedOut | WouldBlock => (ReplyKind::None, format!("no reply after {}", ms(started))),
        HostUnreachable | NetworkUnreachable => {
            (ReplyKind::Unreachable, format!("{e} after {}", ms(started)))
        }
        _ if e.raw_os_error() == Some(nix::libc::EMSGSIZE) => (
            ReplyKind::LocalError,
            "message too long: the source's kernel holds a smaller path MTU".into(),
        ),
        _ => (ReplyKind::LocalError, e.to_string()),
    };
    Reply {
        kind,
        from: None,
        detail,
    }
}

/// An ICMP error already queued on `sock` about the probe's packet.
fn icmp_error_about(sock: &Socket, p: &Probe) -> Option<Reply> {
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = (&*sock).read(&mut buf) {
        if let Some((from, icmp)) = icmp_in(&buf[..n])
            && let Some(r) = as_error_about(from, &icmp, p)
        {
            return Some(r);
        }
    }
    None
}

/// The sender and ICMP message of a raw-socket datagram (IPv4 header first).
fn icmp_in(data: &[u8]) -> Option<(IpAddr, Icmpv4Slice<'_>)> {
    let ip = Ipv4HeaderSlice::from_slice(data).ok()?;
    let icmp = Icmpv4Slice::from_slice(data.get(ip.slice().len()..)?).ok()?;
    Some((IpAddr::V4(ip.source_addr()), icmp))
}

/// An ICMP error whose quoted packet is the probe's.
fn as_error_about(from: IpAddr, icmp: &Icmpv4Slice<'_>, p: &Probe) -> Option<Reply> {
    let detail = match icmp.icmp_type() {
        Icmpv4Type::DestinationUnreachable(h) => {
            use etherparse::icmpv4::DestUnreachableHeader as D;
            match h {
                D::Port => "port unreachable".to_string(),
                D::FragmentationNeeded { next_hop_mtu } => {
                    format!("fragmentation needed (mtu {next_hop_mtu})")
                }
                D::Host => "host unreachable".into(),
                D::Network => "network unreachable".into(),
                D::FilterProhibited | D::HostProhibited | D::NetworkProhibited => {
                    "administratively prohibited".into()
                }
                other => format!("{other:?}").to_lowercase(),
            }
        }
        Icmpv4Type::TimeExceeded(_) => "time exceeded".into(),
        _ => return None,
    };
    let quoted = icmp.payload();
    let inner = Ipv4HeaderSlice::from_slice(quoted).ok()?;
    let l4 = quoted.get(inner.slice().len()..)?;
    let ours = match (inner.protocol().0, p.proto) {
        (1, Proto::Icmp) => l4.get(4..6) == Some(&p.tag.to_be_bytes()[..]),
        (6, Proto::Tcp) | (17, Proto::Udp) => l4.get(0..2) == Some(&p.tag.to_be_bytes()[..]),
        _ => false,
    };
    ours.then_some(Reply {
        kind: ReplyKind::Unreachable,
        from: Some(from),
        detail,
    })
}

fn http_status(mut s: Socket, host: &str, path: &str, timeout: Duration) -> Option<String> {
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.lines().next().map(|l| l.trim().to_string())
}

/// A DNS query for the API server's Service name, which every cluster's
/// DNS answers, with the probe's tag as its id.
fn dns_query(id: u16) -> Vec<u8> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    if let Ok(name) = Name::from_ascii("kubernetes.default.svc.cluster.local.") {
        m.add_query(Query::query(name, RecordType::A));
    }
    m.to_vec().unwrap_or_default()
}

fn ms(started: Instant) -> String {
    format!("{:.1} ms", started.elapsed().as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_stay_outside_the_ephemeral_range() {
        for seed in (0..200_000u32).step_by(997).chain([u32::MAX, 4535, 4536]) {
            let t = tag_from(seed, EPHEMERAL_DEFAULT);
            assert!(t > 60999, "{seed}: {t}");
            // A range reaching the top: below it.
            let t = tag_from(seed, (40000, 65535));
            assert!((1024..40000).contains(&t), "{seed}: {t}");
            // A range leaving one port above and much below: below it.
            let t = tag_from(seed, (20000, 65534));
            assert!((1024..20000).contains(&t), "{seed}: {t}");
            // Everything ephemeral: anywhere from 1024.
            assert!(tag_from(seed, (1024, 65535)) >= 1024);
        }
    }

    #[test]
    fn a_port_held_without_reuse_is_not_the_tag() {
        // A socket as `curl` leaves it (no SO_REUSEADDR) on the first port
        // the seed would give: the tag is another, free port.
        let seed = 1234;
        let first = tag_from(seed, ephemeral_range().unwrap_or(EPHEMERAL_DEFAULT));
        let held = std::net::TcpListener::bind(("0.0.0.0", first));
        let tag = free_tag(&Netns::Current, Proto::Tcp, seed).unwrap();
        if held.is_ok() {
            assert_ne!(tag, first);
        }
        assert!(bindable(Proto::Tcp, tag));
        assert_eq!(
            free_tag(&Netns::Current, Proto::Icmp, seed).unwrap(),
            tag_from(seed, EPHEMERAL_DEFAULT)
        );
    }
}
