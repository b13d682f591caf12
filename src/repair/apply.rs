//! Carrying out a repair plan on a node through rtnetlink, inside the
//! node's network namespace, with a journal written before every change:
//! what was there, then whether the change was made. `undo` puts back
//! exactly what the journal recorded, newest change first. One repair at a
//! time per node: the journal directory's lock file is held throughout.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourState};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use serde::{Deserialize, Serialize};

use super::plan::{Before, Step, before};
use crate::check::RepairAction;
use crate::dataplane::{Netns, NodeState};
use crate::error::{Error, Result};

/// One step of a repair, as journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub action: RepairAction,
    pub finding: String,
    pub before: Before,
    pub applied: bool,
    pub error: Option<String>,
}

/// A repair's journal: one file per repair in the node's state directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub id: String,
    pub node: String,
    /// Seconds since the epoch.
    pub started: u64,
    pub entries: Vec<Entry>,
    /// Set when `repair --undo` restored it.
    pub undone: bool,
}

/// The actions this module applies; a plan with others is refused whole.
pub fn supported(a: &RepairAction) -> bool {
    matches!(
        a,
        RepairAction::NeighReplace { .. }
            | RepairAction::FdbReplace { .. }
            | RepairAction::FdbDelete { .. }
            | RepairAction::RouteReplace { .. }
            | RepairAction::LinkUp { .. }
            | RepairAction::LinkMtu { .. }
            | RepairAction::AddrReplace { .. }
            | RepairAction::Sysctl { .. }
    )
}

/// The node's journal directory: `KNETDOCTOR_STATE_DIR` or
/// /var/lib/knetdoctor, then `repair/<node>`.
pub fn journal_dir(node: &str) -> PathBuf {
    std::env::var_os("KNETDOCTOR_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/knetdoctor"))
        .join("repair")
        .join(node)
}

/// Holds the node's repair lock until dropped.
pub struct Lock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

/// Takes the node's repair lock, or says who holds it.
pub fn lock(dir: &Path) -> Result<Lock> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut f) => {
            use std::io::{Seek, Write};
            let _ = f.set_len(0);
            let _ = f.seek(std::io::SeekFrom::Start(0));
            let _ = write!(f, "{}", std::process::id());
            Ok(Lock(f))
        }
        Err((_, _)) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            Err(Error::env(
                format!(
                    "another repair of this node is running (process {})",
                    holder.trim()
                ),
                Some("wait for it to finish, then run again".into()),
            ))
        }
    }
}

fn save(dir: &Path, j: &Journal) -> Result<()> {
    let path = dir.join(format!("{}.json", j.id));
    let tmp = dir.join(format!(".{}.json.tmp", j.id));
    let text = serde_json::to_vec_pretty(j).map_err(|e| Error::env(e.to_string(), None))?;
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// Applies `steps` in order inside `netns`, journaling each before it is
/// made; stops at the first failure. Returns the journal either way.
pub fn apply(
    netns: &Netns,
    node: &str,
    steps: &[Step],
    state: &NodeState,
    dir: &Path,
) -> Result<Journal> {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut j = Journal {
        // Fixed-width nanoseconds first, so IDs sort in time order.
        id: format!(
            "{:020}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            std::process::id()
        ),
        node: node.to_string(),
        started,
        entries: Vec::new(),
        undone: false,
    };
    for s in steps {
        j.entries.push(Entry {
            action: s.action.clone(),
            finding: s.finding.clone(),
            before: before(&s.action, state),
            applied: false,
            error: None,
        });
    }
    save(dir, &j)?;
    // One thread in the namespace, one runtime and one netlink socket for
    // the whole repair; the journal is saved after every change.
    let dir = dir.to_path_buf();
    netns.run(move || -> Result<Journal> {
        let mut j = j;
        let journal = &mut j;
        run_async(move |k| async move {
            for i in 0..journal.entries.len() {
                let action = journal.entries[i].action.clone();
                let result = make(&k, &action).await;
                let failed = result.is_err();
                match result {
                    Ok(()) => journal.entries[i].applied = true,
                    Err(e) => journal.entries[i].error = Some(e.to_string()),
                }
                save(&dir, journal)?;
                if failed {
                    break;
                }
            }
            Ok(())
        })?;
        Ok(j)
    })?
}

/// Puts back what journal `id` recorded, newest applied change first.
pub fn undo(netns: &Netns, dir: &Path, id: &str) -> Result<Journal> {
    let path = dir.join(format!("{id}.json"));
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let mut j: Journal = serde_json::from_slice(&text).map_err(|e| Error::Parse {
        path: path.clone(),
        what: e.to_string(),
    })?;
    if j.undone {
        return Err(Error::usage(
            format!("repair {id} was already undone"),
            Some("`repair --history` lists the repairs".into()),
        ));
    }
    for e in j.entries.iter().rev().filter(|e| e.applied) {
        let (action, before) = (e.action.clone(), e.before.clone());
        netns.run(move || {
            run_async(move |k| async move { restore(&k, &action, &before).await })
        })??;
    }
    j.undone = true;
    save(dir, &j)?;
    Ok(j)
}

/// The journals of past repairs, oldest first.
pub fn history(dir: &Path) -> Vec<Journal> {
    let mut v: Vec<Journal> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name().to_string_lossy().ends_with(".json")
                        && !e.file_name().to_string_lossy().starts_with('.')
                })
                .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a: &Journal, b| a.id.cmp(&b.id));
    v
}

fn run_async<F, Fut>(f: F) -> Result<()>
where
    F: FnOnce(Kernel) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::env(format!("cannot start the async runtime: {e}"), None))?;
    rt.block_on(async move {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| Error::env(format!("cannot open a netlink socket: {e}"), None))?;
        tokio::spawn(conn);
        f(Kernel {
            h: handle,
            indexes: Default::default(),
        })
        .await
    })
}

fn nl(what: String) -> impl Fn(rtnetlink::Error) -> Error {
    move |e| Error::Netlink(format!("{what}: {e}"))
}

/// The node's netlink handle, and device indexes looked up once per repair
/// (a repair of a whole node names flannel.1 thousands of times).
struct Kernel {
    h: Handle,
    indexes: std::cell::RefCell<std::collections::HashMap<String, u32>>,
}

impl Kernel {
    async fn index(&self, dev: &str) -> Result<u32> {
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
}

fn mac_bytes(mac: &str) -> Result<Vec<u8>> {
    mac.split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|_| Error::usage(format!("bad MAC address {mac:?}"), None))
}

fn ip(s: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| Error::usage(format!("bad IP address {s:?}"), None))
}

fn prefix(s: &str) -> Result<(std::net::Ipv4Addr, u8)> {
    let net: ipnet::Ipv4Net = s
        .parse()
        .map_err(|_| Error::usage(format!("bad prefix {s:?}"), None))?;
    Ok((net.addr(), net.prefix_len()))
}

async fn neigh_set(k: &Kernel, dev: &str, at: IpAddr, mac: &str) -> Result<()> {
    let idx = k.index(dev).await?;
    k.h.neighbours()
        .add(idx, at)
        .link_layer_address(&mac_bytes(mac)?)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("ip neigh replace {at} lladdr {mac} dev {dev}")))
}

async fn neigh_del(k: &Kernel, dev: &str, at: IpAddr) -> Result<()> {
    let idx = k.index(dev).await?;
    let mut found = k.h.neighbours().get().execute();
    while let Some(m) = found
        .try_next()
        .await
        .map_err(nl("dumping neighbours".into()))?
    {
        let dst = m.attributes.iter().find_map(|a| match a {
            netlink_packet_route::neighbour::NeighbourAttribute::Destination(
                netlink_packet_route::neighbour::NeighbourAddress::Inet(v4),
            ) => Some(IpAddr::V4(*v4)),
            _ => None,
        });
        if m.header.ifindex == idx && dst == Some(at) {
            return k
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

async fn fdb_set(k: &Kernel, dev: &str, mac: &str, dst: IpAddr) -> Result<()> {
    let idx = k.index(dev).await?;
    k.h.neighbours()
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

async fn fdb_del(k: &Kernel, dev: &str, mac: &str) -> Result<()> {
    let idx = k.index(dev).await?;
    let want = mac_bytes(mac)?;
    let mut found =
        k.h.neighbours()
            .get()
            .set_address_family(netlink_packet_route::AddressFamily::Bridge)
            .execute();
    let mut doomed = Vec::new();
    while let Some(m) = found
        .try_next()
        .await
        .map_err(nl("dumping the FDB".into()))?
    {
        let lla = m.attributes.iter().find_map(|a| match a {
            netlink_packet_route::neighbour::NeighbourAttribute::LinkLayerAddress(l) => {
                Some(l.clone())
            }
            _ => None,
        });
        if m.header.ifindex == idx && lla.as_deref() == Some(&want[..]) {
            doomed.push(m);
        }
    }
    for m in doomed {
        k.h.neighbours()
            .del(m)
            .execute()
            .await
            .map_err(nl(format!("bridge fdb del {mac} dev {dev}")))?;
    }
    Ok(())
}

async fn route_set(
    k: &Kernel,
    dst: &str,
    gateway: Option<IpAddr>,
    dev: &str,
    onlink: bool,
) -> Result<()> {
    let idx = k.index(dev).await?;
    let (addr, len) = prefix(dst)?;
    // `proto boot`, as flannel's (and `ip route`'s) routes are.
    let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
        .destination_prefix(addr, len)
        .output_interface(idx)
        .protocol(netlink_packet_route::route::RouteProtocol::Boot);
    if let Some(IpAddr::V4(g)) = gateway {
        b = b.gateway(g);
    }
    if onlink {
        b = b.onlink();
    }
    k.h.route()
        .add(b.build())
        .replace()
        .execute()
        .await
        .map_err(nl(format!("ip route replace {dst} dev {dev}")))
}

async fn route_del(k: &Kernel, dst: &str) -> Result<()> {
    let (addr, len) = prefix(dst)?;
    // Any protocol: the builder's default (static) would match only ours.
    let m = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
        .destination_prefix(addr, len)
        .protocol(netlink_packet_route::route::RouteProtocol::Unspec)
        .build();
    match k.h.route().del(m).execute().await {
        Ok(()) => Ok(()),
        // Already gone.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ESRCH => Ok(()),
        Err(e) => Err(Error::Netlink(format!("ip route del {dst}: {e}"))),
    }
}

async fn link_set(k: &Kernel, dev: &str, up: Option<bool>, mtu: Option<u32>) -> Result<()> {
    let idx = k.index(dev).await?;
    let mut b = LinkUnspec::new_with_index(idx);
    match up {
        Some(true) => b = b.up(),
        Some(false) => b = b.down(),
        None => {}
    }
    if let Some(m) = mtu {
        b = b.mtu(m);
    }
    k.h.link()
        .set(b.build())
        .execute()
        .await
        .map_err(nl(format!("ip link set {dev}")))
}

async fn addrs_set(k: &Kernel, dev: &str, remove: &[String], add: &[String]) -> Result<()> {
    let idx = k.index(dev).await?;
    let mut found = k.h.address().get().set_link_index_filter(idx).execute();
    let mut doomed = Vec::new();
    while let Some(m) = found
        .try_next()
        .await
        .map_err(nl("dumping addresses".into()))?
    {
        let a = m.attributes.iter().find_map(|a| match a {
            netlink_packet_route::address::AddressAttribute::Address(a) => Some(*a),
            _ => None,
        });
        if let Some(a) = a
            && remove.contains(&format!("{a}/{}", m.header.prefix_len))
        {
            doomed.push(m);
        }
    }
    for m in doomed {
        k.h.address()
            .del(m)
            .execute()
            .await
            .map_err(nl(format!("ip addr del dev {dev}")))?;
    }
    for a in add {
        let (addr, len) = prefix(a)?;
        let mut req = k.h.address().add(idx, IpAddr::V4(addr), len).replace();
        // As `ip addr replace A/N dev D` without `brd`, as the bridge's
        // address is set up (rtnetlink would add a broadcast address).
        req.message_mut().attributes.retain(|a| {
            !matches!(
                a,
                netlink_packet_route::address::AddressAttribute::Broadcast(_)
            )
        });
        req.execute()
            .await
            .map_err(nl(format!("ip addr replace {a} dev {dev}")))?;
    }
    Ok(())
}

fn sysctl(key: &str, value: &str) -> Result<()> {
    crate::dataplane::sysctl::write(key, value)
        .map_err(|e| Error::env(format!("sysctl -w {key}={value}: {e}"), None))
}

/// Makes one change.
async fn make(k: &Kernel, a: &RepairAction) -> Result<()> {
    match a {
        RepairAction::NeighReplace { dev, ip: at, mac } => neigh_set(k, dev, ip(at)?, mac).await,
        // NLM_F_REPLACE on a VXLAN unicast entry replaces its remote.
        RepairAction::FdbReplace { dev, mac, dst } => fdb_set(k, dev, mac, ip(dst)?).await,
        RepairAction::FdbDelete { dev, mac, .. } => fdb_del(k, dev, mac).await,
        RepairAction::RouteReplace {
            dst,
            gateway,
            dev,
            onlink,
        } => route_set(k, dst, Some(ip(gateway)?), dev, *onlink).await,
        RepairAction::LinkUp { dev } => link_set(k, dev, Some(true), None).await,
        RepairAction::LinkMtu { dev, mtu } => link_set(k, dev, None, Some(*mtu)).await,
        RepairAction::AddrReplace { dev, remove, add } => {
            addrs_set(k, dev, remove, std::slice::from_ref(add)).await
        }
        RepairAction::Sysctl { key, value } => sysctl(key, value),
        other => Err(Error::usage(
            format!(
                "{} cannot be applied through rtnetlink",
                crate::check::text::action_line(other)
            ),
            None,
        )),
    }
}

/// Undoes one change from what was there before.
async fn restore(k: &Kernel, a: &RepairAction, before: &Before) -> Result<()> {
    match (a, before) {
        (RepairAction::NeighReplace { dev, ip: at, .. }, Before::Neigh { lladdr, .. }) => {
            match lladdr {
                Some(mac) => neigh_set(k, dev, ip(at)?, mac).await,
                None => neigh_del(k, dev, ip(at)?).await,
            }
        }
        (
            RepairAction::FdbReplace { dev, mac, .. } | RepairAction::FdbDelete { dev, mac, .. },
            Before::Fdb { dsts },
        ) => {
            fdb_del(k, dev, mac).await?;
            for d in dsts {
                fdb_set(k, dev, mac, *d).await?;
            }
            Ok(())
        }
        (RepairAction::RouteReplace { dst, .. }, Before::Route { route }) => match route {
            Some((gw, dev, onlink)) => route_set(k, dst, *gw, dev, *onlink).await,
            None => route_del(k, dst).await,
        },
        (RepairAction::LinkUp { dev }, Before::LinkUp { up }) => {
            link_set(k, dev, Some(*up), None).await
        }
        (RepairAction::LinkMtu { dev, .. }, Before::Mtu { mtu }) => {
            link_set(k, dev, None, Some(*mtu)).await
        }
        (RepairAction::Sysctl { key, .. }, Before::Sysctl { value: Some(v) }) => sysctl(key, v),
        (RepairAction::AddrReplace { dev, add, .. }, Before::Addrs { addrs }) => {
            addrs_set(k, dev, std::slice::from_ref(add), addrs).await
        }
        _ => Ok(()),
    }
}
