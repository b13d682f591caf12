//! Neighbour, FDB and route requests as flannel writes them, many in one
//! `sendmsg`: the kernel processes every message of a netlink datagram in
//! turn and acknowledges each by its sequence number, so a whole node's
//! overlay entries cost a few hundred system calls instead of two per entry
//! (`ip -batch` sends one request and waits for its answer). A failed
//! request does not stop the kernel from processing the rest of its
//! datagram; the caller learns each request's outcome. These are the only
//! place the three messages are built; single changes go through here too.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteProtocol, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use rtnetlink::RouteMessageBuilder;

use crate::error::{Error, Result};

/// One overlay entry to write, with `replace` semantics (as flannel and
/// `ip ... replace` write them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `ip neigh replace IP lladdr MAC dev IFINDEX nud permanent`
    Neigh {
        ifindex: u32,
        ip: IpAddr,
        mac: [u8; 6],
    },
    /// `bridge fdb replace MAC dev IFINDEX dst DST self permanent`
    Fdb {
        ifindex: u32,
        mac: [u8; 6],
        dst: IpAddr,
    },
    /// `ip route replace DST/LEN [via GATEWAY] dev IFINDEX [onlink] proto boot`
    Route {
        dst: Ipv4Addr,
        len: u8,
        gateway: Option<Ipv4Addr>,
        ifindex: u32,
        onlink: bool,
    },
}

/// Device indexes by name in the calling thread's namespace, each looked
/// up once (a whole-node repair names flannel.1 thousands of times).
#[derive(Debug, Default)]
pub struct DeviceIndexes(HashMap<String, Option<u32>>);

impl DeviceIndexes {
    /// Forgets `dev`'s index (the device was deleted or made anew).
    pub fn forget(&mut self, dev: &str) {
        self.0.remove(dev);
    }

    pub fn get(&mut self, dev: &str) -> Result<u32> {
        self.0
            .entry(dev.to_string())
            .or_insert_with(|| nix::net::if_::if_nametoindex(dev).ok())
            .ok_or_else(|| Error::env(format!("no device {dev} on the node"), None))
    }
}

impl Request {
    fn message(&self) -> RouteNetlinkMessage {
        match self {
            Request::Neigh { ifindex, ip, mac } => {
                let mut m = NeighbourMessage::default();
                m.header.family = family(ip);
                m.header.ifindex = *ifindex;
                m.header.state = NeighbourState::Permanent;
                m.header.kind = RouteType::Unspec;
                m.attributes
                    .push(NeighbourAttribute::Destination(address(ip)));
                m.attributes
                    .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
                RouteNetlinkMessage::NewNeighbour(m)
            }
            Request::Fdb { ifindex, mac, dst } => {
                let mut m = NeighbourMessage::default();
                m.header.family = AddressFamily::Bridge;
                m.header.ifindex = *ifindex;
                m.header.state = NeighbourState::Permanent;
                m.header.flags = NeighbourFlags::Own;
                m.header.kind = RouteType::Unspec;
                m.attributes
                    .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
                m.attributes
                    .push(NeighbourAttribute::Destination(address(dst)));
                RouteNetlinkMessage::NewNeighbour(m)
            }
            Request::Route {
                dst,
                len,
                gateway,
                ifindex,
                onlink,
            } => {
                let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(*dst, *len)
                    .output_interface(*ifindex)
                    .protocol(RouteProtocol::Boot);
                match gateway {
                    Some(g) => b = b.gateway(*g),
                    // As `ip route`: a route straight onto a device reaches
                    // only its link.
                    None => b = b.scope(netlink_packet_route::route::RouteScope::Link),
                }
                if *onlink {
                    b = b.onlink();
                }
                RouteNetlinkMessage::NewRoute(b.build())
            }
        }
    }
}

fn family(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn address(ip: &IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(*v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(*v6),
    }
}

/// A route netlink socket in the calling thread's namespace.
pub struct BatchSocket {
    sock: Socket,
    seq: u32,
    out: Vec<u8>,
    answers: Vec<u8>,
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Netlink(format!("{what}: {e}"))
}

impl BatchSocket {
    /// Opens the socket (acknowledgements carry only the failed request's
    /// header, not the whole request).
    pub fn new() -> Result<BatchSocket> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(io("opening a netlink socket"))?;
        sock.bind_auto().map_err(io("binding a netlink socket"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(io("connecting a netlink socket"))?;
        let _ = sock.set_cap_ack(true);
        Ok(BatchSocket {
            sock,
            seq: 0,
            out: Vec::new(),
            answers: Vec::with_capacity(1 << 16),
        })
    }

    /// Sends `requests` in one datagram and returns each one's outcome, in
    /// order (an error names what the kernel said).
    pub fn send(&mut self, requests: &[Request]) -> Result<Vec<std::result::Result<(), String>>> {
        let first = self.seq.wrapping_add(1);
        self.out.clear();
        for r in requests {
            self.seq = self.seq.wrapping_add(1);
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
            header.sequence_number = self.seq;
            let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(r.message()));
            msg.finalize();
            let at = self.out.len();
            self.out.resize(at + msg.buffer_len(), 0);
            msg.serialize(&mut self.out[at..]);
        }
        self.sock
            .send(&self.out, 0)
            .map_err(io("sending overlay entries"))?;
        let mut outcomes: Vec<Option<std::result::Result<(), String>>> = vec![None; requests.len()];
        let mut missing = requests.len();
        while missing > 0 {
            self.answers.clear();
            self.sock
                .recv(&mut self.answers, 0)
                .map_err(io("reading the kernel's answers"))?;
            let mut at = 0;
            while at < self.answers.len() {
                let len = NetlinkBuffer::new_checked(&self.answers[at..])
                    .map(|b| b.length() as usize)
                    .map_err(|e| Error::Netlink(format!("a malformed answer: {e}")))?;
                let msg =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.answers[at..at + len])
                        .map_err(|e| Error::Netlink(format!("a malformed answer: {e}")))?;
                at += (len + 3) & !3;
                let NetlinkPayload::Error(e) = msg.payload else {
                    continue;
                };
                let k = msg.header.sequence_number.wrapping_sub(first) as usize;
                if let Some(slot) = outcomes.get_mut(k).filter(|s| s.is_none()) {
                    *slot = Some(match e.code {
                        None => Ok(()),
                        Some(_) => Err(e.to_io().to_string()),
                    });
                    missing -= 1;
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("all answered"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_say_what_iproute2_would() {
        let route = Request::Route {
            dst: Ipv4Addr::new(10, 2, 0, 0),
            len: 24,
            gateway: Some(Ipv4Addr::new(10, 2, 0, 0)),
            ifindex: 7,
            onlink: true,
        };
        let RouteNetlinkMessage::NewRoute(m) = route.message() else {
            panic!("not a route")
        };
        assert_eq!(m.header.protocol, RouteProtocol::Boot);
        assert_eq!(m.header.destination_prefix_length, 24);
        assert!(
            m.header
                .flags
                .contains(netlink_packet_route::route::RouteFlags::Onlink)
        );
        let fdb = Request::Fdb {
            ifindex: 7,
            mac: [2, 0, 0, 0, 0, 1],
            dst: IpAddr::V4(Ipv4Addr::new(192, 168, 56, 10)),
        };
        let RouteNetlinkMessage::NewNeighbour(m) = fdb.message() else {
            panic!("not a neighbour")
        };
        assert_eq!(m.header.family, AddressFamily::Bridge);
        assert_eq!(m.header.flags, NeighbourFlags::Own);
        assert_eq!(m.header.state, NeighbourState::Permanent);
        // It round-trips through the wire format.
        let mut msg = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m.clone())),
        );
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        let back = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf)
            .unwrap()
            .payload
        {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n)) => n,
            other => panic!("{other:?}"),
        };
        // (The parser cannot tell a bridge entry's destination family.)
        assert_eq!(back.header, m.header);
        assert_eq!(
            back.attributes[1],
            NeighbourAttribute::Destination(NeighbourAddress::Other(vec![192, 168, 56, 10]))
        );
    }
}
