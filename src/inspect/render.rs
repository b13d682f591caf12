//! The text form of a NodeState, grouped the way a flannel user reads it:
//! flannel.1 and cni0 first, then each pod-CIDR route joined to the neigh
//! and FDB entries it depends on (the troubleshooting triple
//! `ip route show dev flannel.1`, `ip neigh show dev flannel.1`,
//! `bridge fdb show dev flannel.1` in one table), then everything else.

use std::fmt::Write as _;
use std::net::IpAddr;

use anstyle::Style;

use crate::dataplane::NodeState;
use crate::dataplane::state::{FdbEntry, Link, Neigh, Route};
use crate::model::flannel::{BRIDGE_DEVICE, VTEP_DEVICE};

const HEAD: Style = Style::new().bold();

/// One route via flannel.1 with the entries that carry it.
#[derive(Debug, Clone)]
pub struct OverlayRow<'a> {
    pub route: &'a Route,
    pub neigh: Option<&'a Neigh>,
    pub fdb: Option<&'a FdbEntry>,
}

/// Joins each route on flannel.1 to its gateway's neigh entry and that
/// MAC's FDB entry.
pub fn overlay_rows(s: &NodeState) -> Vec<OverlayRow<'_>> {
    s.routes
        .iter()
        .filter(|r| r.dev.as_deref() == Some(VTEP_DEVICE) && r.table == 254 && r.gateway.is_some())
        .map(|route| {
            let neigh = s
                .neighs
                .iter()
                .find(|n| n.dev == VTEP_DEVICE && Some(n.dst) == route.gateway);
            let fdb = neigh
                .and_then(|n| n.mac())
                .and_then(|mac| s.fdb.iter().find(|f| f.dev == VTEP_DEVICE && f.mac == mac));
            OverlayRow { route, neigh, fdb }
        })
        .collect()
}

fn link_line(l: &Link, s: &NodeState) -> String {
    let addrs: Vec<String> = s
        .addrs_of(&l.name)
        .map(|a| format!("{}/{}", a.address, a.prefix_len))
        .collect();
    let mut line = format!(
        "{:<12} {:<7} mtu {:<5} {:<4} {}",
        l.name,
        l.kind.as_deref().unwrap_or("-"),
        l.mtu,
        if l.up {
            if l.lower_up { "UP" } else { "NO-CARRIER" }
        } else {
            "DOWN"
        },
        l.mac.as_deref().unwrap_or("")
    );
    if !addrs.is_empty() {
        let _ = write!(line, "  {}", addrs.join(" "));
    }
    if let Some(m) = &l.master {
        let _ = write!(line, "  master {m}");
    }
    line
}

fn opt_ip(ip: Option<IpAddr>) -> String {
    ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into())
}

/// Renders the node's state as text (`name` is the node's name, if known).
pub fn node_text(s: &NodeState, name: Option<&str>) -> String {
    let mut o = String::new();
    let ns = s.netns.as_deref().unwrap_or("current network namespace");
    let _ = writeln!(o, "{HEAD}node {}{HEAD:#} ({ns})", name.unwrap_or("-"));
    // What could not be read comes first: the rest is incomplete without it.
    for u in &s.unread {
        let _ = writeln!(o, "  NOT READ: {}: {}", u.source, u.cause);
    }

    let _ = writeln!(o, "\n{HEAD}flannel devices{HEAD:#}");
    match s.link(VTEP_DEVICE) {
        Some(l) => {
            let _ = writeln!(o, "  {}", link_line(l, s));
            if let Some(v) = &l.vxlan {
                let _ = writeln!(
                    o,
                    "  {:<12} vxlan id {} local {} dev {} dstport {} {}",
                    "",
                    v.vni,
                    opt_ip(v.local),
                    v.dev.as_deref().unwrap_or("-"),
                    v.port,
                    if v.learning { "learning" } else { "nolearning" }
                );
            }
        }
        None => {
            let _ = writeln!(o, "  {VTEP_DEVICE:<12} (absent)");
        }
    }
    match s.link(BRIDGE_DEVICE) {
        Some(l) => {
            let _ = writeln!(o, "  {}", link_line(l, s));
            let ports: Vec<&str> = s
                .links
                .iter()
                .filter(|p| p.master.as_deref() == Some(BRIDGE_DEVICE))
                .map(|p| p.name.as_str())
                .collect();
            let _ = writeln!(
                o,
                "  {:<12} {} port(s): {}",
                "",
                ports.len(),
                ports.join(" ")
            );
        }
        None => {
            let _ = writeln!(o, "  {BRIDGE_DEVICE:<12} (absent)");
        }
    }

    let rows = overlay_rows(s);
    let _ = writeln!(
        o,
        "\n{HEAD}pod-CIDR routes via {VTEP_DEVICE}: route -> neigh -> fdb{HEAD:#}"
    );
    if rows.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for r in &rows {
        let neigh = r
            .neigh
            .map(|n| {
                format!(
                    "{} {}",
                    n.lladdr.as_deref().unwrap_or("-"),
                    n.state.join(",")
                )
            })
            .unwrap_or_else(|| "(no neigh entry)".into());
        let fdb = r
            .fdb
            .map(|f| format!("dst {} {} {}", opt_ip(f.dst), f.flags.join(","), f.state))
            .unwrap_or_else(|| "(no fdb entry)".into());
        let _ = writeln!(
            o,
            "  {:<15} via {:<12}{}  neigh {}  fdb {}",
            r.route.dst,
            opt_ip(r.route.gateway),
            if r.route.onlink() {
                " onlink"
            } else {
                "       "
            },
            neigh,
            fdb.trim_end()
        );
    }
    let joined_macs: Vec<crate::dataplane::Mac> =
        rows.iter().filter_map(|r| r.fdb.map(|f| f.mac)).collect();
    let extra_fdb: Vec<&FdbEntry> = s
        .fdb
        .iter()
        .filter(|f| f.dev == VTEP_DEVICE && !joined_macs.contains(&f.mac))
        .collect();
    if !extra_fdb.is_empty() {
        let _ = writeln!(o, "  fdb entries on {VTEP_DEVICE} no route leads to:");
        for f in extra_fdb {
            let _ = writeln!(
                o,
                "    {} dst {} {} {}",
                f.mac,
                opt_ip(f.dst),
                f.flags.join(","),
                f.state
            );
        }
    }

    let _ = writeln!(o, "\n{HEAD}other routes{HEAD:#}");
    for r in s.routes.iter().filter(|r| {
        !(r.dev.as_deref() == Some(VTEP_DEVICE) && r.gateway.is_some()) && r.table == 254
    }) {
        let _ = writeln!(
            o,
            "  {:<18} {}dev {} proto {} scope {}{}",
            r.dst,
            r.gateway.map(|g| format!("via {g} ")).unwrap_or_default(),
            r.dev.as_deref().unwrap_or("-"),
            r.protocol,
            r.scope,
            r.prefsrc.map(|p| format!(" src {p}")).unwrap_or_default()
        );
    }
    let other_tables = s.routes.iter().filter(|r| r.table != 254).count();
    let _ = writeln!(o, "  (+{other_tables} in other tables; -o json shows all)");
    let custom_rules: Vec<_> = s
        .rules
        .iter()
        .filter(|r| ![0, 32766, 32767].contains(&r.priority))
        .collect();
    if !custom_rules.is_empty() {
        let _ = writeln!(o, "\n{HEAD}policy rules{HEAD:#}");
        for r in custom_rules {
            let _ = writeln!(
                o,
                "  {}: from {} lookup {}",
                r.priority,
                r.src.as_deref().unwrap_or("all"),
                r.table
            );
        }
    }

    let _ = writeln!(o, "\n{HEAD}sysctls{HEAD:#}");
    let b = |v: Option<bool>| v.map(|v| if v { "1" } else { "0" }).unwrap_or("n/a");
    let _ = writeln!(
        o,
        "  net.ipv4.ip_forward={}  net.bridge.bridge-nf-call-iptables={}  rp_filter all={} default={}",
        b(s.sysctls.ip_forward),
        b(s.sysctls.bridge_nf_call_iptables),
        s.sysctls
            .rp_filter
            .get("all")
            .map(|v| v.to_string())
            .unwrap_or("n/a".into()),
        s.sysctls
            .rp_filter
            .get("default")
            .map(|v| v.to_string())
            .unwrap_or("n/a".into()),
    );

    let _ = writeln!(o, "\n{HEAD}links{HEAD:#}");
    for l in s
        .links
        .iter()
        .filter(|l| l.name != VTEP_DEVICE && l.name != BRIDGE_DEVICE)
    {
        let _ = writeln!(o, "  {}", link_line(l, s));
    }
    let _ = writeln!(
        o,
        "\n{} neigh, {} fdb entries in all",
        s.neighs.len(),
        s.fdb.len()
    );
    o
}
