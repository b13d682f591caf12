//! Writing a node's kernel networking state, the way flannel and iproute2
//! write it: neighbours, FDB entries, routes, links and addresses through
//! rtnetlink; iptables chains through `iptables-restore --noflush`; sysctls
//! and ethtool features. [`Writer::run`] enters the namespace once and
//! makes every change from one thread and one runtime, with one rtnetlink
//! handle and one [`BatchSocket`] for neighbour, FDB and route entries.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::rule::RuleAction;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::Mac;
use super::Netns;
use super::batch::{BatchSocket, DeviceIndexes, Request};
use crate::error::{Error, Result};
use ipnet::Ipv4Net;

/// A netlink handle inside one namespace, with device indexes looked up
/// once; neighbour, FDB and route replacements go through the same
/// [`BatchSocket`] requests as a whole-node repair's.
pub struct Writer {
    h: Handle,
    batch: RefCell<BatchSocket>,
    indexes: RefCell<DeviceIndexes>,
}

fn nl(what: String) -> impl Fn(rtnetlink::Error) -> Error {
    move |e| Error::Netlink(format!("{what}: {e}"))
}

impl Writer {
    /// Runs `f` with a writer inside `netns`, on a thread of its own that
    /// has joined the namespace (commands it starts run there too).
    pub fn run<T, F, Fut>(netns: &Netns, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Writer) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>>,
    {
        netns.run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::env(format!("cannot start the async runtime: {e}"), None))?;
            rt.block_on(async move {
                let (conn, h, _) = rtnetlink::new_connection()
                    .map_err(|e| Error::env(format!("cannot open a netlink socket: {e}"), None))?;
                tokio::spawn(conn);
                f(Writer {
                    h,
                    batch: RefCell::new(BatchSocket::new()?),
                    indexes: Default::default(),
                })
                .await
            })
        })?
    }

    /// The index of device `dev` in the writer's namespace.
    pub fn index(&self, dev: &str) -> Result<u32> {
        self.indexes.borrow_mut().get(dev)
    }

    /// Sends one request; a refusal names `what` was asked.
    fn one(&self, r: Request, what: impl FnOnce() -> String) -> Result<()> {
        let mut outcome = self.batch.borrow_mut().send(std::slice::from_ref(&r))?;
        outcome
            .pop()
            .unwrap_or(Ok(()))
            .map_err(|e| Error::Netlink(format!("{}: {e}", what())))
    }

    /// `ip neigh replace AT lladdr MAC dev DEV nud permanent`.
    pub fn neigh_replace(&self, dev: &str, at: IpAddr, mac: Mac) -> Result<()> {
        let r = Request::Neigh {
            ifindex: self.index(dev)?,
            ip: at,
            mac: mac.0,
        };
        self.one(r, || {
            format!("ip neigh replace {at} lladdr {mac} dev {dev}")
        })
    }

    /// `ip neigh del AT dev DEV`; nothing there is no error.
    pub async fn neigh_del(&self, dev: &str, at: IpAddr) -> Result<()> {
        let idx = self.index(dev)?;
        let mut found = self.h.neighbours().get().execute();
        while let Some(m) = found
            .try_next()
            .await
            .map_err(nl("dumping neighbours".into()))?
        {
            let dst = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                    Some(IpAddr::V4(*v4))
                }
                _ => None,
            });
            if m.header.ifindex == idx && dst == Some(at) {
                return self
                    .h
                    .neighbours()
                    .del(m)
                    .execute()
                    .await
                    .map_err(nl(format!("ip neigh del {at} dev {dev}")));
            }
        }
        Ok(())
    }

    /// `bridge fdb replace MAC dev DEV dst DST self permanent`: on a VXLAN
    /// device NLM_F_REPLACE replaces a unicast entry's remote.
    pub fn fdb_replace(&self, dev: &str, mac: Mac, dst: IpAddr) -> Result<()> {
        let r = Request::Fdb {
            ifindex: self.index(dev)?,
            mac: mac.0,
            dst,
        };
        self.one(r, || {
            format!("bridge fdb replace {mac} dev {dev} dst {dst} self permanent")
        })
    }

    /// Removes every FDB entry of `mac` on `dev`.
    pub async fn fdb_del(&self, dev: &str, mac: Mac) -> Result<()> {
        let idx = self.index(dev)?;
        let want = mac.0;
        let mut found = self
            .h
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute();
        let mut doomed = Vec::new();
        while let Some(m) = found
            .try_next()
            .await
            .map_err(nl("dumping the FDB".into()))?
        {
            let lla = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(l) => Some(l.clone()),
                _ => None,
            });
            if m.header.ifindex == idx && lla.as_deref() == Some(&want[..]) {
                doomed.push(m);
            }
        }
        for m in doomed {
            self.h
                .neighbours()
                .del(m)
                .execute()
                .await
                .map_err(nl(format!("bridge fdb del {mac} dev {dev}")))?;
        }
        Ok(())
    }

    /// `ip route replace DST [via GW] dev DEV [onlink]`, `proto boot` as
    /// flannel's (and `ip route`'s) routes are.
    pub fn route_replace(
        &self,
        net: Ipv4Net,
        gateway: Option<Ipv4Addr>,
        dev: &str,
        onlink: bool,
    ) -> Result<()> {
        let r = Request::Route {
            dst: net.addr(),
            len: net.prefix_len(),
            gateway,
            ifindex: self.index(dev)?,
            onlink,
        };
        self.one(r, || format!("ip route replace {net} dev {dev}"))
    }

    /// `ip route del DST` in the main table, whatever its protocol; a route
    /// already gone is no error.
    pub async fn route_del(&self, dst: Ipv4Net) -> Result<()> {
        self.route_del_in(dst, 254).await
    }

    /// `ip route add DST [via GW] dev DEV [onlink] table TABLE` (a policy
    /// routing table's route put back by an undo).
    pub async fn route_add_in(
        &self,
        net: Ipv4Net,
        gateway: Option<IpAddr>,
        dev: &str,
        onlink: bool,
        table: u32,
    ) -> Result<()> {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(net.addr(), net.prefix_len())
            .output_interface(self.index(dev)?)
            .table_id(table)
            .protocol(RouteProtocol::Boot);
        match gateway {
            Some(IpAddr::V4(g)) => b = b.gateway(g),
            _ => b = b.scope(netlink_packet_route::route::RouteScope::Link),
        }
        if onlink {
            b = b.onlink();
        }
        self.h
            .route()
            .add(b.build())
            .replace()
            .execute()
            .await
            .map_err(nl(format!("ip route replace {net} table {table}")))
    }

    /// `ip route del DST table TABLE`, whatever its protocol and scope; a
    /// route already gone is no error.
    pub async fn route_del_in(&self, net: Ipv4Net, table: u32) -> Result<()> {
        // The builder's default protocol (static) would match only ours, and
        // its default scope (universe) only routes via a gateway: the kernel
        // matches any scope only for RT_SCOPE_NOWHERE, as `ip route del` asks.
        let m = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(net.addr(), net.prefix_len())
            .protocol(RouteProtocol::Unspec)
            .scope(netlink_packet_route::route::RouteScope::NoWhere)
            .table_id(table)
            .build();
        match self.h.route().del(m).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ESRCH => Ok(()),
            Err(e) => Err(Error::Netlink(format!("ip route del {net}: {e}"))),
        }
    }

    /// Deletes `spec.dev` if it exists and makes it anew as `spec` says:
    /// `ip link add DEV address MAC type vxlan id VNI local IP dev UNDERLAY
    /// dstport PORT [no]learning`, its MTU, its addresses, up or down.
    pub async fn vxlan_recreate(&self, spec: &crate::dataplane::state::VxlanSpec) -> Result<()> {
        let dev = &spec.dev;
        if let Ok(idx) = self.index(dev) {
            self.h
                .link()
                .del(idx)
                .execute()
                .await
                .map_err(nl(format!("ip link del {dev}")))?;
        }
        self.indexes.borrow_mut().forget(dev);
        let mut b = rtnetlink::LinkVxlan::new(dev, spec.vni)
            .port(spec.port)
            .learning(spec.learning);
        if let Some(local) = spec.local {
            b = b.local(local);
        }
        if let Some(u) = &spec.underlay {
            b = b.dev(self.index(u)?);
        }
        let mut b = b.mtu(spec.mtu);
        if let Some(mac) = spec.mac {
            b = b.address(mac.0.to_vec());
        }
        if spec.up {
            b = b.up();
        }
        self.h
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(nl(format!("ip link add {dev} type vxlan id {}", spec.vni)))?;
        self.indexes.borrow_mut().forget(dev);
        self.addrs_set(dev, &[], &spec.addrs).await
    }

    /// `ip link set DEV [up|down] [mtu N]`.
    pub async fn link_set(&self, dev: &str, up: Option<bool>, mtu: Option<u32>) -> Result<()> {
        let idx = self.index(dev)?;
        let mut b = LinkUnspec::new_with_index(idx);
        match up {
            Some(true) => b = b.up(),
            Some(false) => b = b.down(),
            None => {}
        }
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        self.h
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(nl(format!("ip link set {dev}")))
    }

    /// Removes the IPv4 addresses `remove` from `dev`, then adds `add`
    /// (`A/N` each), as `ip addr replace A/N dev D` without `brd` — how a
    /// bridge's address is set up (rtnetlink would add a broadcast address).
    pub async fn addrs_set(&self, dev: &str, remove: &[Ipv4Net], add: &[Ipv4Net]) -> Result<()> {
        let idx = self.index(dev)?;
        let mut found = self.h.address().get().set_link_index_filter(idx).execute();
        let mut doomed = Vec::new();
        while let Some(m) = found
            .try_next()
            .await
            .map_err(nl("dumping addresses".into()))?
        {
            let a = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(a) => Some(*a),
                _ => None,
            });
            if let Some(IpAddr::V4(a)) = a
                && Ipv4Net::new(a, m.header.prefix_len).is_ok_and(|n| remove.contains(&n))
            {
                doomed.push(m);
            }
        }
        for m in doomed {
            self.h
                .address()
                .del(m)
                .execute()
                .await
                .map_err(nl(format!("ip addr del dev {dev}")))?;
        }
        for a in add {
            let (addr, len) = (a.addr(), a.prefix_len());
            let mut req = self.h.address().add(idx, IpAddr::V4(addr), len).replace();
            req.message_mut()
                .attributes
                .retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
            req.execute()
                .await
                .map_err(nl(format!("ip addr replace {a} dev {dev}")))?;
        }
        Ok(())
    }

    /// `ip rule add pref PRIORITY lookup TABLE` (IPv4, from all).
    pub async fn rule_add(&self, priority: u32, table: u32) -> Result<()> {
        self.h
            .rule()
            .add()
            .v4()
            .priority(priority)
            .table_id(table)
            .action(RuleAction::ToTable)
            .execute()
            .await
            .map_err(nl(format!("ip rule add pref {priority} lookup {table}")))
    }

    /// `ip rule del pref PRIORITY lookup TABLE` (IPv4); a rule already
    /// gone is no error.
    pub async fn rule_del(&self, priority: u32, table: u32) -> Result<()> {
        let mut req = self
            .h
            .rule()
            .add()
            .v4()
            .priority(priority)
            .table_id(table)
            .action(RuleAction::ToTable);
        let msg = req.message_mut().clone();
        match self.h.rule().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ENOENT => Ok(()),
            Err(e) => Err(Error::Netlink(format!(
                "ip rule del pref {priority} lookup {table}: {e}"
            ))),
        }
    }

    /// `sysctl -w KEY=VALUE` in the writer's namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        super::sysctl::write(key, value)
            .map_err(|e| Error::env(format!("sysctl -w {key}={value}: {e}"), None))
    }

    /// Feeds `input` to `iptables-restore --noflush` of `tool`: only the
    /// chains it declares are flushed, nothing else.
    pub fn iptables_restore(&self, tool: &str, input: &str) -> Result<()> {
        Netns::Current.feed(tool, &["--noflush", "--wait"], input)
    }

    /// Feeds `input` (libnftables JSON commands) to `nft -j -f -`: one
    /// transaction, all of it or nothing.
    pub fn nft_apply(&self, input: &str) -> Result<()> {
        Netns::Current.feed("nft", &["-j", "-f", "-"], input)
    }

    /// `ethtool -K DEV FEATURE on|off` (a feature, not a netlink route
    /// attribute: ethtool speaks its own interface).
    pub fn ethtool_feature(&self, dev: &str, feature: &str, on: bool) -> Result<()> {
        Netns::Current.feed(
            "ethtool",
            &["-K", dev, feature, if on { "on" } else { "off" }],
            "",
        )
    }
}
