//! Writing a node's kernel networking state, the way flannel and iproute2
//! write it: neighbours, FDB entries, routes, links and addresses through
//! rtnetlink; iptables chains through `iptables-restore --noflush`; sysctls
//! and ethtool features. [`Writer::run`] enters the namespace once and
//! makes every change from one thread, one runtime and one netlink socket —
//! a repair of a whole node makes tens of thousands of them.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourState,
};
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::rule::RuleAction;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::Netns;
use crate::error::{Error, Result};

/// A netlink handle inside one namespace, with device indexes looked up
/// once (a repair of a whole node names flannel.1 thousands of times).
pub struct Writer {
    h: Handle,
    indexes: std::cell::RefCell<HashMap<String, u32>>,
}

fn nl(what: String) -> impl Fn(rtnetlink::Error) -> Error {
    move |e| Error::Netlink(format!("{what}: {e}"))
}

fn mac_bytes(mac: &str) -> Result<Vec<u8>> {
    let b = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .ok()
        .filter(|b| b.len() == 6);
    b.ok_or_else(|| Error::usage(format!("bad MAC address {mac:?}"), None))
}

fn prefix(s: &str) -> Result<(Ipv4Addr, u8)> {
    let net: ipnet::Ipv4Net = s
        .parse()
        .map_err(|_| Error::usage(format!("bad IPv4 prefix {s:?}"), None))?;
    Ok((net.addr(), net.prefix_len()))
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
                    indexes: Default::default(),
                })
                .await
            })
        })?
    }

    /// The index of device `dev`, looked up once. Looking the devices of a
    /// pipelined run up first keeps its requests in the order they were made.
    pub async fn index(&self, dev: &str) -> Result<u32> {
        if let Some(i) = self.indexes.borrow().get(dev) {
            return Ok(*i);
        }
        let mut links = self.h.link().get().match_name(dev.to_string()).execute();
        match links.try_next().await {
            Ok(Some(m)) => {
                self.indexes
                    .borrow_mut()
                    .insert(dev.to_string(), m.header.index);
                Ok(m.header.index)
            }
            _ => Err(Error::env(format!("no device {dev} on the node"), None)),
        }
    }

    /// `ip neigh replace AT lladdr MAC dev DEV nud permanent`.
    pub async fn neigh_replace(&self, dev: &str, at: IpAddr, mac: &str) -> Result<()> {
        let idx = self.index(dev).await?;
        self.h
            .neighbours()
            .add(idx, at)
            .link_layer_address(&mac_bytes(mac)?)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("ip neigh replace {at} lladdr {mac} dev {dev}")))
    }

    /// `ip neigh del AT dev DEV`; nothing there is no error.
    pub async fn neigh_del(&self, dev: &str, at: IpAddr) -> Result<()> {
        let idx = self.index(dev).await?;
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
    pub async fn fdb_replace(&self, dev: &str, mac: &str, dst: IpAddr) -> Result<()> {
        let idx = self.index(dev).await?;
        self.h
            .neighbours()
            .add_bridge(idx, &mac_bytes(mac)?)
            .flags(NeighbourFlags::Own)
            .destination(dst)
            .replace()
            .execute()
            .await
            .map_err(nl(format!(
                "bridge fdb replace {mac} dev {dev} dst {dst} self permanent"
            )))
    }

    /// Removes every FDB entry of `mac` on `dev`.
    pub async fn fdb_del(&self, dev: &str, mac: &str) -> Result<()> {
        let idx = self.index(dev).await?;
        let want = mac_bytes(mac)?;
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
    pub async fn route_replace(
        &self,
        dst: &str,
        gateway: Option<IpAddr>,
        dev: &str,
        onlink: bool,
    ) -> Result<()> {
        let idx = self.index(dev).await?;
        let (addr, len) = prefix(dst)?;
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(addr, len)
            .output_interface(idx)
            .protocol(RouteProtocol::Boot);
        if let Some(IpAddr::V4(g)) = gateway {
            b = b.gateway(g);
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
            .map_err(nl(format!("ip route replace {dst} dev {dev}")))
    }

    /// `ip route del DST` in the main table, whatever its protocol; a route
    /// already gone is no error.
    pub async fn route_del(&self, dst: &str) -> Result<()> {
        let (addr, len) = prefix(dst)?;
        // The builder's default protocol (static) would match only ours.
        let m = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(addr, len)
            .protocol(RouteProtocol::Unspec)
            .build();
        match self.h.route().del(m).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ESRCH => Ok(()),
            Err(e) => Err(Error::Netlink(format!("ip route del {dst}: {e}"))),
        }
    }

    /// `ip link set DEV [up|down] [mtu N]`.
    pub async fn link_set(&self, dev: &str, up: Option<bool>, mtu: Option<u32>) -> Result<()> {
        let idx = self.index(dev).await?;
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
    pub async fn addrs_set(&self, dev: &str, remove: &[String], add: &[String]) -> Result<()> {
        let idx = self.index(dev).await?;
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
            if let Some(a) = a
                && remove.contains(&format!("{a}/{}", m.header.prefix_len))
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
            let (addr, len) = prefix(a)?;
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
        run_with_input(tool, &["--noflush", "--wait"], input)
    }

    /// `ethtool -K DEV FEATURE on|off` (a feature, not a netlink route
    /// attribute: ethtool speaks its own interface).
    pub fn ethtool_feature(&self, dev: &str, feature: &str, on: bool) -> Result<()> {
        run_with_input(
            "ethtool",
            &["-K", dev, feature, if on { "on" } else { "off" }],
            "",
        )
    }
}

/// Runs `tool args` in this thread's namespace with `input` on stdin.
fn run_with_input(tool: &str, args: &[&str], input: &str) -> Result<()> {
    let shown = format!("{tool} {}", args.join(" "));
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::env(
                format!("{tool} is not installed"),
                Some(format!(
                    "install it (it is in the package that provides {tool})"
                )),
            ),
            _ => Error::env(format!("{shown}: {e}"), None),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| Error::env(format!("{shown}: writing its input: {e}"), None))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::env(format!("{shown}: {e}"), None))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::env(
            format!(
                "{shown} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            None,
        ))
    }
}
