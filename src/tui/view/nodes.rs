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
use crate::tui::snapshot::{Mark, Snapshot};

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
    Span::styled(format!("{text:<14}"), style)
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
    list(
        f,
        top,
        format!(" nodes ({}) — flannel & node │ kube-proxy ", s.nodes.len()),
        s.nodes.len(),
        Some(app),
        &|i| {
            let n = &s.nodes[i];
            let mut spans = vec![Span::raw(format!("{:<width$}  ", n.name))];
            spans.push(counts(&n.node_findings, n.read));
            spans.push(Span::raw(" │ "));
            spans.push(counts(&n.proxy_findings, n.read));
            Line::from(spans)
        },
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
    let shown: Vec<&crate::check::Finding> = s
        .findings
        .iter()
        .filter(|f| {
            app.filter.is_empty()
                || f.id.as_str().contains(&app.filter)
                || f.summary.contains(&app.filter)
                || f.node.as_deref().is_some_and(|n| n.contains(&app.filter))
        })
        .collect();
    list(
        f,
        bottom,
        format!(" findings ({}) ", shown.len()),
        shown.len(),
        None,
        &|i| finding_line(shown[i], true),
    );
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
