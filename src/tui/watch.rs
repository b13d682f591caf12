//! Kernel change notifications: a netlink socket per node namespace joined
//! to the link, address, IPv4 route and neighbour groups (the last carries
//! bridge FDB changes too). Any message marks the dashboard's data stale,
//! so a deleted route is re-read within a moment instead of at the next
//! periodic read. iptables has no such notification; the periodic read
//! covers it. A bundle directory is watched through inotify; the live
//! cluster through its reflectors (`inspect::live::Reflected`).

use std::sync::mpsc::Sender;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::dataplane::Netns;

// The legacy multicast group bits (linux/rtnetlink.h).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_NEIGH: u32 = 0x4;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV4_RULE: u32 = 0x80;

/// Watches `netns` on a thread of its own, sending on `changed` after each
/// batch of notifications, until the receiver is gone.
pub fn spawn(netns: Netns, changed: Sender<()>) {
    std::thread::spawn(move || {
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
                if changed.send(()).is_err() {
                    return Ok(());
                }
            }
        });
    });
}

/// Watches a bundle directory (inotify, through notify) on a thread of its
/// own, sending on `changed` when a file in it changes.
pub fn bundle(path: std::path::PathBuf, changed: Sender<()>) {
    use notify::Watcher;
    std::thread::spawn(move || {
        let (tx, rx) = std::sync::mpsc::channel();
        let Ok(mut w) = notify::recommended_watcher(tx) else {
            return;
        };
        if w.watch(&path, notify::RecursiveMode::Recursive).is_err() {
            return;
        }
        for event in rx {
            let Ok(e) = event else { continue };
            if e.kind.is_access() {
                continue;
            }
            if changed.send(()).is_err() {
                return;
            }
        }
    });
}
