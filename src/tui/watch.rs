//! Kernel change notifications: a netlink socket per node namespace joined
//! to the link, address, IPv4 route and neighbour groups (the last carries
//! bridge FDB changes too). Any message marks the dashboard's data stale,
//! so a deleted route is re-read within a moment instead of at the next
//! periodic read. iptables has no such notification; the periodic read
//! covers it.

use std::sync::mpsc::Sender;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::dataplane::Netns;

// The legacy multicast group bits (linux/rtnetlink.h).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_NEIGH: u32 = 0x4;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV4_RULE: u32 = 0x80;

/// Watches `netns` on a thread of its own, sending `node` on `changed`
/// after each batch of notifications, until the receiver is gone.
pub fn spawn(node: String, netns: Netns, changed: Sender<String>) {
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
                if changed.send(node.clone()).is_err() {
                    return Ok(());
                }
            }
        });
    });
}

/// Watches the live cluster's Nodes, Pods, Services, EndpointSlices and
/// Ingresses (kube-rs watchers, after their initial lists) on a thread of
/// its own, sending `cluster` on `changed` for every change, until the
/// receiver is gone. A watch that cannot start leaves the periodic read.
pub fn cluster(src: crate::inspect::live::LiveSource, changed: Sender<String>) {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::{Node, Pod, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use k8s_openapi::api::networking::v1::Ingress;
    use kube::Api;
    use kube::runtime::watcher;

    fn changes<K>(api: Api<K>) -> futures::stream::BoxStream<'static, ()>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
        K::DynamicType: Default,
    {
        watcher(api, watcher::Config::default())
            .filter_map(|e| async move {
                matches!(e, Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))).then_some(())
            })
            .boxed()
    }

    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok((client, _)) = crate::inspect::live::client(&src).await else {
                return;
            };
            let mut all = futures::stream::select_all([
                changes(Api::<Node>::all(client.clone())),
                changes(Api::<Pod>::all(client.clone())),
                changes(Api::<Service>::all(client.clone())),
                changes(Api::<EndpointSlice>::all(client.clone())),
                changes(Api::<Ingress>::all(client)),
            ]);
            while all.next().await.is_some() {
                if changed.send("cluster".into()).is_err() {
                    return;
                }
            }
        });
    });
}

/// Watches a bundle directory (inotify, through notify) on a thread of its
/// own, sending `bundle` on `changed` when a file in it changes.
pub fn bundle(path: std::path::PathBuf, changed: Sender<String>) {
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
            if changed.send("bundle".into()).is_err() {
                return;
            }
        }
    });
}
