//! The overview (nodes, findings, the last change) and a node's entries
//! against `expect()`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{WARN, fg, finding_line, list, mark_style, severity_style};
use crate::check::Severity;
use crate::tui::app::App;
use crate::tui::snapshot::{Mark, NodeRow, Snapshot};

/// A node's finding counts in a fixed-width column.
fn counts(c: &[usize; 3], read: bool) -> Span<'static> {
    let (text, style) = if !read {
        ("not read".to_string(), Style::default())
    } else if c == &[0, 0, 0] {
        ("ok".to_string(), mark_style(&Mark::Ok))
    } else if c[0] > 0 {
        (
            format!("{} err {} warn", c[0], c[1]),
            severity_style(Severity::Error),
        )
    } else {
        (format!("{} warn", c[1]), severity_style(Severity::Warning))
    };
    Span::styled(format!("{text:<12}"), style)
}

pub fn overview(f: &mut Frame, area: Rect, app: &App, s: &Snapshot) {
    let node_rows = s.nodes.len() as u16 + 2;
    let [top, bottom] =
        Layout::vertical([Constraint::Max(node_rows.max(3)), Constraint::Min(3)]).areas(area);
    let width = s
        .nodes
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let read = s.nodes.iter().filter(|n| n.read).count();
    list(
        f,
        top,
        format!(
            " nodes ({}, {read} read{}) — findings: flannel & node │ kube-proxy │ pods, pod CIDR │ peers ok, read by, kube-proxy, iptables │ VTEP ",
            s.nodes.len(),
            s.read_at
                .map(|t| format!(" at {}", crate::tui::snapshot::utc_clock(t)))
                .unwrap_or_default()
        ),
        s.nodes.len(),
        Some(app),
        &|i| node_line(&s.nodes[i], width),
    );
    let [changed, bottom] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(bottom);
    f.render_widget(
        Paragraph::new(format!(
            " last change: {}",
            app.last_change
                .as_deref()
                .unwrap_or("none since the dashboard opened")
        )),
        changed,
    );
    // Unfiltered, the lines on screen are looked up by index: the
    // 45,000 findings of a large cluster are not walked for every frame.
    let shown: Option<Vec<&crate::check::Finding>> = (!app.filter.is_empty()).then(|| {
        s.findings
            .iter()
            .filter(|f| {
                f.id.as_str().contains(&app.filter)
                    || f.summary.contains(&app.filter)
                    || f.node.as_deref().is_some_and(|n| n.contains(&app.filter))
            })
            .map(|f| &**f)
            .collect()
    });
    let len = shown.as_ref().map_or(s.findings.len(), Vec::len);
    let line = |i: usize| match &shown {
        Some(shown) => finding_line(shown[i], true),
        None => (s.findings.get(i)).map_or_else(Line::default, |f| finding_line(f, true)),
    };
    list(f, bottom, format!(" findings ({len}) "), len, None, &line);
}

/// One node of the overview: its findings, what the API says of it (pods,
/// lease), what was read (peers, kube-proxy, iptables) and how — or why
/// nothing was, in words.
fn node_line(n: &NodeRow, width: usize) -> Line<'static> {
    let mut spans = vec![Span::raw(format!("{:<width$}  ", n.name))];
    spans.push(counts(&n.node_findings, n.read));
    spans.push(Span::raw(" │ "));
    spans.push(counts(&n.proxy_findings, n.read));
    let cidr = n
        .lease
        .map_or_else(|| "no lease".to_string(), |(cidr, ..)| cidr.to_string());
    spans.push(Span::raw(format!(" │ {:>5} {cidr:<15} │ ", n.pods)));
    // The VTEP flannel's lease names, last: the widest column.
    let vtep = n
        .lease
        .map_or_else(String::new, |(_, mac, ip)| format!(" │ vtep {mac} {ip}"));
    if !n.read {
        let why = n.not_read.as_ref().map_or_else(
            || "no state for it in this source".to_string(),
            |w| w.explain(),
        );
        spans.push(Span::styled(format!("not read: {why}"), fg(WARN)));
        spans.push(Span::raw(vtep));
        return Line::from(spans);
    }
    let summary = n.summary.unwrap_or_default();
    let peers_style = if summary.peers_ok == summary.peers {
        mark_style(&Mark::Ok)
    } else {
        severity_style(Severity::Error)
    };
    spans.push(Span::raw("peers "));
    spans.push(Span::styled(
        format!("{:<9}", format!("{}/{}", summary.peers_ok, summary.peers)),
        peers_style,
    ));
    let proxy = match summary.proxy {
        Some((mode, services)) => format!("{} {services} svc", mode_name(mode)),
        None => "no kube-proxy state".to_string(),
    };
    let iptables = if n.iptables.is_empty() {
        "no iptables rules".to_string()
    } else {
        format!("iptables-{}", n.iptables.join("+"))
    };
    spans.push(Span::raw(format!(
        " {:<9} {proxy:<18} {iptables:<15}{vtep}",
        n.via.map_or("read", |v| v.label())
    )));
    Line::from(spans)
}

/// kube-proxy's mode as its configuration spells it.
fn mode_name(m: crate::model::kube_proxy::ProxyMode) -> &'static str {
    use crate::model::kube_proxy::ProxyMode;
    match m {
        ProxyMode::Iptables => "iptables",
        ProxyMode::Ipvs => "ipvs",
        ProxyMode::Nftables => "nftables",
    }
}

pub fn node(f: &mut Frame, area: Rect, app: &App, s: &Snapshot, name: &str) {
    let entries: Vec<&crate::tui::snapshot::Entry> = s
        .entries
        .get(name)
        .map(|v| {
            v.iter()
                .filter(|e| {
                    app.filter.is_empty()
                        || e.expected.contains(&app.filter)
                        || e.kind.contains(&app.filter)
                        || e.mark.label().contains(&app.filter)
                })
                .collect()
        })
        .unwrap_or_default();
    let bad = entries.iter().filter(|e| e.mark != Mark::Ok).count();
    let on_entries: std::collections::HashSet<crate::check::FindingId> = entries
        .iter()
        .filter_map(|e| e.finding.as_ref().map(|(id, _)| *id))
        .collect();
    let others: Vec<&crate::check::Finding> = s
        .findings_of(Some(name))
        .filter(|f| !on_entries.contains(&f.id))
        .collect();
    let [top, bottom] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(others.len().clamp(1, 6) as u16 + 2),
    ])
    .areas(area);
    list(
        f,
        top,
        format!(
            " {name}: entries against expect() (flannel, kube-proxy) — {} shown, {bad} not ok ",
            entries.len()
        ),
        entries.len(),
        Some(app),
        &|i| {
            let e = entries[i];
            let mut spans = vec![
                Span::styled(format!("{:<8}", e.mark.label()), mark_style(&e.mark)),
                Span::raw(format!("{:<7}{}", e.kind, e.expected)),
            ];
            if let Some((id, _)) = &e.finding {
                spans.push(Span::styled(format!("   ← {id}"), fg(WARN)));
            }
            Line::from(spans)
        },
    );
    list(
        f,
        bottom,
        format!(" other findings on {name} ({}) ", others.len()),
        others.len(),
        None,
        &|i| finding_line(others[i], false),
    );
}
