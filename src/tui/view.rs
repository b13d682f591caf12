//! Drawing the dashboard from the app state and the snapshot (no I/O).
//! Lists draw only their visible lines, so a node of a 5,000-node cluster
//! (15,000 entries) costs what the screen shows. Marks are words (`ok`,
//! `missing`, ...) first and colours second, so NO_COLOR and light
//! terminals lose nothing.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::app::{App, Prompt, View};
use super::snapshot::{Mark, Snapshot};
use crate::check::Severity;

/// The smallest screen the dashboard draws on.
pub const MIN_SIZE: (u16, u16) = (60, 12);

fn colours() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn fg(c: Color) -> Style {
    if colours() {
        Style::default().fg(c)
    } else {
        Style::default()
    }
}

fn severity_style(s: Severity) -> Style {
    match s {
        Severity::Error => fg(Color::Red).add_modifier(Modifier::BOLD),
        Severity::Warning => fg(Color::Yellow),
        Severity::Info => Style::default(),
    }
}

fn mark_style(m: &Mark) -> Style {
    match m {
        Mark::Ok => fg(Color::Green),
        Mark::Other(_) => fg(Color::Yellow),
        _ => fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

/// Draws one frame.
pub fn render(f: &mut Frame, app: &App) {
    let area = f.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        f.render_widget(
            Paragraph::new(format!(
                "terminal too small: {}x{}, the dashboard needs {}x{}",
                area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
            )),
            area,
        );
        return;
    }
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(header(app)), head);
    match (&app.snapshot, app.view()) {
        (_, View::Help) => help(f, body),
        (None, _) => {
            let text = app
                .error
                .clone()
                .unwrap_or_else(|| "reading the cluster…".into());
            f.render_widget(
                Paragraph::new(text).block(Block::default().borders(Borders::ALL)),
                body,
            );
        }
        (Some(s), View::Overview) => overview(f, body, app, s),
        (Some(s), View::Node(n)) => node(f, body, app, s, n),
        (Some(s), View::Repair(n)) => repair(f, body, app, s, n),
    }
    f.render_widget(Paragraph::new(footer(app)), foot);
}

fn header(app: &App) -> Line<'static> {
    let mut spans = vec![Span::styled(
        " knetdoctor ",
        Style::default().add_modifier(Modifier::REVERSED),
    )];
    let where_ = match app.view() {
        View::Overview => "overview".to_string(),
        View::Node(n) => format!("node {n}"),
        View::Repair(n) => format!("repair {n}"),
        View::Help => "keys".to_string(),
    };
    spans.push(Span::raw(format!(" {where_}")));
    if let Some(s) = &app.snapshot {
        let errors = s
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        spans.push(Span::raw(format!(
            "  ·  {}  ·  {}  ·  {}, ",
            s.source,
            plural(s.nodes.len(), "node"),
            plural(s.findings.len(), "finding")
        )));
        spans.push(Span::styled(
            plural(errors, "error"),
            severity_style(if errors > 0 {
                Severity::Error
            } else {
                Severity::Info
            }),
        ));
    }
    if app.snapshot.is_some()
        && let Some(e) = &app.error
    {
        spans.push(Span::styled(format!("  ·  stale: {e}"), fg(Color::Yellow)));
    }
    Line::from(spans)
}

fn footer(app: &App) -> Line<'static> {
    match &app.prompt {
        Some(Prompt::Command(t)) => Line::from(format!(":{t}")),
        Some(Prompt::Filter(t)) => Line::from(format!("/{t}")),
        Some(Prompt::Confirm(n)) => Line::styled(
            format!("apply the repair plan to {n}? (y/n)"),
            fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
        None => match &app.status {
            Some(s) => Line::styled(s.clone(), fg(Color::Yellow)),
            None => Line::from(format!(
                "{}q quit  ? keys  : view  / filter  Enter open  r repair  Esc back",
                if app.filter.is_empty() {
                    String::new()
                } else {
                    format!("filter {:?}  ·  ", app.filter)
                }
            )),
        },
    }
}

/// Draws `lines` in `area` with a border and title, keeping `selected`
/// (clamped) in view; only the visible lines are built.
fn list(
    f: &mut Frame,
    area: Rect,
    title: String,
    total: usize,
    selected: Option<usize>,
    line: &dyn Fn(usize) -> Line<'static>,
) {
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let height = inner.height as usize;
    let sel = selected.map(|s| s.min(total.saturating_sub(1)));
    let offset = sel.map_or(0, |s| (s + 1).saturating_sub(height));
    let lines: Vec<Line> = (offset..total.min(offset + height))
        .map(|i| {
            let l = line(i);
            if Some(i) == sel {
                l.style(Style::default().add_modifier(Modifier::REVERSED))
            } else {
                l
            }
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

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

/// A finding as one line: severity, (node,) ID and summary.
fn finding_line(x: &crate::check::Finding, with_node: bool) -> Line<'static> {
    let node = if with_node {
        format!("{:<14} ", x.node.as_deref().unwrap_or("cluster"))
    } else {
        String::new()
    };
    Line::from(vec![
        Span::styled(
            format!("{:<7} ", format!("{:?}", x.severity).to_lowercase()),
            severity_style(x.severity),
        ),
        Span::raw(format!("{node}{}: {}", x.id, x.summary)),
    ])
}

fn overview(f: &mut Frame, area: Rect, app: &App, s: &Snapshot) {
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
        Some(app.selected),
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
                || f.id.contains(&app.filter)
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

fn node(f: &mut Frame, area: Rect, app: &App, s: &Snapshot, name: &str) {
    let entries: Vec<&super::snapshot::Entry> = s
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
    let on_entries: std::collections::HashSet<&str> = entries
        .iter()
        .filter_map(|e| e.finding.as_ref().map(|(id, _)| id.as_str()))
        .collect();
    let others: Vec<&crate::check::Finding> = s
        .findings_of(Some(name))
        .filter(|f| !on_entries.contains(f.id.as_str()))
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
        Some(app.selected),
        &|i| {
            let e = entries[i];
            let mut spans = vec![
                Span::styled(format!("{:<8}", e.mark.label()), mark_style(&e.mark)),
                Span::raw(format!("{:<7}{}", e.kind, e.expected)),
            ];
            if let Some((id, _)) = &e.finding {
                spans.push(Span::styled(format!("   ← {id}"), fg(Color::Yellow)));
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

/// The node's repair plan, as `knetdoctor repair --node NODE` prints it.
fn repair(f: &mut Frame, area: Rect, app: &App, s: &Snapshot, name: &str) {
    let text = match s.plans.get(name) {
        Some(p) => p.text(),
        None => format!("{name}'s dataplane was not read: nothing to plan\n"),
    };
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| app.filter.is_empty() || l.contains(&app.filter))
        .collect();
    let title = if app.applying {
        format!(" repair {name} — applying… ")
    } else {
        format!(" repair {name} — a applies (after a yes), Esc back ")
    };
    list(f, area, title, lines.len(), Some(app.selected), &|i| {
        Line::from(lines[i].to_string())
    });
}

fn help(f: &mut Frame, area: Rect) {
    let keys = [
        ("q, Ctrl-C", "quit (the terminal is restored)"),
        ("?", "this list"),
        (":overview", "nodes and the cluster's findings"),
        (
            ":node NAME",
            "a node's devices, neigh, FDB and routes against expect()",
        ),
        ("Enter", "open the selected node"),
        (
            "r, :repair N",
            "the repair plan of the selected (or named) node",
        ),
        ("a", "in the repair view: apply the plan (asks y/n first)"),
        ("Esc", "clear the filter, then go back"),
        ("/TEXT", "keep the lines containing TEXT (as you type)"),
        ("j k ↓ ↑", "move; PgDn PgUp by 20; g to the top"),
    ];
    let lines: Vec<Line> = keys
        .iter()
        .map(|(k, what)| Line::from(format!("  {k:<12} {what}")))
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" keys ")),
        area,
    );
}
