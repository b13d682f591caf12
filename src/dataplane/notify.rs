//! Kernel change notifications: a netlink socket in a node's namespace
//! joined to the link, address, IPv4 route, rule and neighbour groups (the
//! last carries bridge FDB changes too). The dashboard re-reads a lab node
//! on them, and an agent re-publishes its node's state; iptables sends
//! none, so both also read periodically.

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::Netns;
use crate::signal::Signal;

// The legacy multicast group bits (linux/rtnetlink.h).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_NEIGH: u32 = 0x4;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV4_RULE: u32 = 0x80;

/// Watches `netns` on a thread of its own, sending on `changed` after each
/// batch of notifications, until the receiver is gone. A thread that
/// cannot be started is said so: the caller's periodic reads are all it
/// has then.
pub fn spawn(netns: Netns, changed: Signal) -> std::io::Result<()> {
    let spawned = std::thread::Builder::new()
        .name("kd-notify".into())
        .spawn(move || {
            // Each notification is on its way to a screen or an agent's
            // publication.
            crate::sched::latency_sensitive();
            let _ = netns.run(move || -> std::io::Result<()> {
                let mut sock = Socket::new(NETLINK_ROUTE)?;
                sock.bind(&SocketAddr::new(
                    0,
                    RTMGRP_LINK
                        | RTMGRP_NEIGH
                        | RTMGRP_IPV4_IFADDR
                        | RTMGRP_IPV4_ROUTE
                        | RTMGRP_IPV4_RULE,
                ))?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    // One wake-up per burst: drain what is queued, then say so.
                    sock.recv(&mut &mut buf[..], 0)?;
                    sock.set_non_blocking(true)?;
                    while sock.recv(&mut &mut buf[..], 0).is_ok() {}
                    sock.set_non_blocking(false)?;
                    if !changed.send() {
                        return Ok(());
                    }
                }
            });
        });
    spawned.map(drop)
}
