//! The text form of a check: findings grouped by node, then object, the
//! evidence under each, and a one-line summary.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};

use super::finding::{Finding, RepairAction, Severity};

fn style(s: Severity) -> Style {
    match s {
        Severity::Error => Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
        Severity::Warning => Style::new().bold().fg_color(Some(AnsiColor::Yellow.into())),
        Severity::Info => Style::new().fg_color(Some(AnsiColor::Blue.into())),
    }
}

/// A repair action as one readable line.
pub fn action_line(a: &RepairAction) -> String {
    match a {
        RepairAction::NeighReplace { dev, ip, mac } => {
            format!("ip neigh replace {ip} lladdr {mac} dev {dev} nud permanent")
        }
        RepairAction::FdbReplace { dev, mac, dst } => {
            format!("bridge fdb replace {mac} dev {dev} dst {dst} self permanent")
        }
        RepairAction::FdbDelete { dev, mac, dst } => format!(
            "bridge fdb del {mac} dev {dev}{}",
            dst.as_ref()
                .map(|d| format!(" dst {d}"))
                .unwrap_or_default()
        ),
        RepairAction::RouteReplace {
            dst,
            gateway,
            dev,
            onlink,
        } => format!(
            "ip route replace {dst} via {gateway} dev {dev}{}",
            if *onlink { " onlink" } else { "" }
        ),
        RepairAction::RouteDelete { dst, table } => match table {
            254 => format!("ip route del {dst}"),
            t => format!("ip route del {dst} table {}", table_name(*t)),
        },
        RepairAction::VtepRecreate { spec } => format!(
            "ip link del {dev}; ip link add {dev}{mac} type vxlan id {} {}{}dstport {} {}; ip link set {dev} mtu {}{}{}",
            spec.vni,
            spec.local
                .map(|l| format!("local {l} "))
                .unwrap_or_default(),
            spec.underlay
                .as_ref()
                .map(|u| format!("dev {u} "))
                .unwrap_or_default(),
            spec.port,
            if spec.learning {
                "learning"
            } else {
                "nolearning"
            },
            spec.mtu,
            if spec.up { " up" } else { "" },
            spec.addrs
                .iter()
                .map(|a| format!("; ip addr add {a} dev {}", spec.dev))
                .collect::<String>(),
            dev = spec.dev,
            mac = spec
                .mac
                .as_ref()
                .map(|m| format!(" address {m}"))
                .unwrap_or_default(),
        ),
        RepairAction::LinkUp { dev } => format!("ip link set {dev} up"),
        RepairAction::LinkMtu { dev, mtu } => format!("ip link set {dev} mtu {mtu}"),
        RepairAction::AddrReplace { dev, remove, add } => {
            let mut s: Vec<String> = remove
                .iter()
                .map(|r| format!("ip addr del {r} dev {dev}"))
                .collect();
            s.push(format!("ip addr add {add} dev {dev}"));
            s.join("; ")
        }
        RepairAction::Sysctl { key, value } => format!("sysctl -w {key}={value}"),
        RepairAction::RuleAdd { priority, table } => {
            format!("ip rule add pref {priority} lookup {}", table_name(*table))
        }
        RepairAction::IptablesChains {
            table,
            chains,
            owner,
        } => format!("restore {owner}'s {table} chains {}", chains.join(", ")),
        RepairAction::IptablesPolicy {
            table,
            chain,
            policy,
        } => format!("iptables -t {table} -P {chain} {policy}"),
        RepairAction::NftablesTable {
            family,
            table,
            owner,
        } => format!("rewrite {owner}'s nftables table {family} {table} as {owner} writes it"),
        RepairAction::Ethtool { dev, feature, on } => format!(
            "ethtool -K {dev} {feature} {}",
            if *on { "on" } else { "off" }
        ),
        RepairAction::Manual { what } => format!("(by hand) {what}"),
    }
}

/// A routing table as `ip rule` names it.
pub fn table_name(table: u32) -> String {
    match table {
        255 => "local".into(),
        254 => "main".into(),
        253 => "default".into(),
        t => t.to_string(),
    }
}

/// Renders findings; `nodes` are the nodes whose dataplane was checked,
/// `not_read` the cluster's nodes whose dataplane was out of reach (said
/// plainly, so that their silence is not taken for health).
pub fn render(
    findings: &[Finding],
    nodes: &[String],
    not_read: &[super::reach::NotRead],
) -> String {
    let mut o = String::new();
    let mut last_node: Option<Option<&str>> = None;
    for f in findings {
        if last_node != Some(f.node.as_deref()) {
            let head = Style::new().bold();
            let _ = writeln!(
                o,
                "{head}{}{head:#}",
                f.node.as_deref().unwrap_or("cluster")
            );
            last_node = Some(f.node.as_deref());
        }
        let st = style(f.severity);
        let sev = format!("{:?}", f.severity).to_uppercase();
        let _ = writeln!(o, "  {st}{sev:<7}{st:#} {}  {}", f.id, f.summary);
        let objects: Vec<String> = f.objects.iter().map(|x| x.to_string()).collect();
        if !objects.is_empty() {
            let _ = writeln!(o, "          objects:  {}", objects.join(", "));
        }
        if let (Some(e), Some(a)) = (&f.expected, &f.actual) {
            let _ = writeln!(o, "          expected: {e}");
            let _ = writeln!(o, "          actual:   {a}");
        }
        for (i, a) in f.repair.iter().enumerate() {
            let _ = writeln!(
                o,
                "          {} {}",
                if i == 0 { "repair: " } else { "        " },
                action_line(a)
            );
        }
    }
    o.push_str(&summary(findings, nodes, not_read));
    o
}

/// `-o wide`: one line a finding, every field in a column (severity, id,
/// node, objects, expected, actual), to scan, sort and grep; then the
/// same summary as the text.
pub fn render_wide(
    findings: &[Finding],
    nodes: &[String],
    not_read: &[super::reach::NotRead],
) -> String {
    let rows: Vec<[String; 6]> = findings
        .iter()
        .map(|f| {
            [
                format!("{:?}", f.severity).to_uppercase(),
                f.id.to_string(),
                f.node.clone().unwrap_or_else(|| "cluster".into()),
                f.objects
                    .iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                f.expected.clone().unwrap_or_default(),
                f.actual.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut o = columns(
        ["SEVERITY", "ID", "NODE", "OBJECTS", "EXPECTED", "ACTUAL"],
        &rows,
    );
    o.push_str(&summary(findings, nodes, not_read));
    o
}

/// `rows` under `head` in columns as wide as their widest cell, three
/// spaces apart, the last left ragged (`-o wide`, as kubectl's); nothing
/// for no rows.
pub fn columns<const N: usize>(head: [&str; N], rows: &[[String; N]]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut widths = head.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}   "));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut o = line(head);
    for r in rows {
        o.push_str(&line(std::array::from_fn(|i| r[i].as_str())));
    }
    o
}

/// What was checked and what was found, in a line or two.
fn summary(all: &[Finding], nodes: &[String], not_read: &[super::reach::NotRead]) -> String {
    let mut o = String::new();
    // Refused lists make the answer incomplete: never "healthy".
    let (refused, findings): (Vec<&Finding>, Vec<&Finding>) = all
        .iter()
        .partition(|f| f.id == super::FindingId::ApiUnreadable);
    let healthy = match refused.is_empty() {
        true => "healthy: no findings",
        false => "no findings in what could be read",
    };
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    let unreached_only = not_read
        .iter()
        .all(|n| n.why == super::reach::Unreached::OutOfReach);
    if nodes.is_empty() && unreached_only {
        let _ = writeln!(
            o,
            "(no node states in this source: cluster-level checks only)"
        );
    } else {
        for line in super::reach::lines(not_read) {
            let _ = writeln!(o, "{line}");
        }
    }
    if findings.is_empty() && nodes.is_empty() {
        let _ = writeln!(o, "{healthy} in the cluster objects");
    } else if findings.is_empty() {
        let _ = writeln!(
            o,
            "{healthy} ({} node(s) checked: {})",
            nodes.len(),
            nodes.join(", ")
        );
    } else {
        let _ = writeln!(
            o,
            "{} finding(s): {errors} error(s), {warnings} warning(s); {} node(s) checked",
            findings.len(),
            nodes.len()
        );
    }
    if !refused.is_empty() {
        let _ = writeln!(
            o,
            "incomplete: the API server refused {} list(s) (above); what depends on them was not checked",
            refused.len()
        );
    }
    o
}
