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

mod capture;
mod links;
mod nodes;
mod repair;
mod trace;

use super::app::{App, Confirm, End, ListAt, Prompt, View};
use super::snapshot::Mark;
use crate::check::Severity;

/// Warnings and annotations: magenta reads on dark and light backgrounds
/// alike (ANSI yellow fades on white); red and green carry the marks, and
/// every mark is a word first.
const WARN: Color = Color::Magenta;

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
        Severity::Warning => fg(WARN),
        Severity::Info => Style::default(),
    }
}

fn mark_style(m: &Mark) -> Style {
    match m {
        Mark::Ok => fg(Color::Green),
        Mark::Other(_) => fg(WARN),
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
        (Some(s), View::Overview) => nodes::overview(f, body, app, s),
        (Some(s), View::Node(n)) => nodes::node(f, body, app, s, n),
        (Some(s), View::Repair(n)) => repair::repair(f, body, app, s, n),
        (Some(_), View::History(n)) => repair::history(f, body, app, n),
        (Some(s), View::Resources(kind)) => links::resources(f, body, app, s, *kind),
        (Some(_), View::Object(kind, name)) => links::object(f, body, app, *kind, name),
        (Some(s), View::Trace) => trace::trace(f, body, app, s),
        (Some(_), View::Capture(n)) => capture::capture(f, body, app, n),
    }
    f.render_widget(Paragraph::new(footer(app)), foot);
}

/// What a `width`x`height` terminal shows of `app`, as text, one line a
/// row with trailing spaces trimmed: the screens the tests pin and the
/// README's picture of the dashboard.
pub fn to_text(app: &App, width: u16, height: u16) -> String {
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height))
        .expect("a test backend does not fail");
    t.draw(|f| render(f, app))
        .expect("drawing into memory does not fail");
    let buf = t.backend().buffer();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
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
        View::History(n) => format!("repair history {n}"),
        View::Resources(None) => "resources".to_string(),
        View::Resources(Some(k)) => format!("resources: {}", k.label()),
        View::Object(k, n) => format!("{} {n}", k.label()),
        View::Trace => "trace".to_string(),
        View::Capture(n) => format!("capture {n}"),
        View::Help => "keys".to_string(),
    };
    spans.push(Span::raw(format!(" {where_}")));
    if let Some(s) = &app.snapshot {
        // Counted as the runs were made, not finding by finding: 45,000
        // at scale, read on every frame.
        let errors = s.findings.tally().errors();
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        spans.push(Span::raw(format!(
            "  ·  {}  ·  {}, ",
            s.source,
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
        // What was read, so that "0 findings" over nothing is not health.
        let t = &s.totals;
        spans.push(Span::raw(format!(
            "  ·  {}, {}, {}, {}/{} endpoints ready, {}",
            plural(t.nodes, "node"),
            plural(t.pods, "pod"),
            plural(t.services, "Service"),
            t.endpoints_ready,
            t.endpoints,
            match t.ingresses {
                1 => "1 Ingress".to_string(),
                n => format!("{n} Ingresses"),
            },
        )));
        // Lists the API server refused: the counts above are not all.
        let refused = s.cluster.unread.len();
        if refused > 0 {
            spans.push(Span::styled(
                format!("  ·  read in part: {} refused", plural(refused, "list")),
                fg(WARN),
            ));
        }
    }
    if app.snapshot.is_some()
        && let Some(e) = &app.error
    {
        spans.push(Span::styled(format!("  ·  stale: {e}"), fg(WARN)));
    }
    Line::from(spans)
}

fn footer(app: &App) -> Line<'static> {
    match &app.prompt {
        Some(Prompt::Command(t)) => Line::from(format!(":{t}")),
        Some(Prompt::Filter(t)) => Line::from(format!("/{t}")),
        Some(Prompt::Confirm(c)) => Line::styled(
            match c {
                Confirm::Apply(n) => format!("apply the repair plan to {n}? (y/n)"),
                Confirm::Undo { node, id } => {
                    format!("undo repair {id} on {node}, putting back what it replaced? (y/n)")
                }
            },
            fg(WARN).add_modifier(Modifier::BOLD),
        ),
        Some(Prompt::Pick { end, query, .. }) => Line::from(format!(
            "trace {}: {query}▏  (type to search, ↑↓ choose, Enter take, Esc cancel)",
            match end {
                End::From => "from",
                End::To => "to",
            }
        )),
        None => match &app.status {
            Some(s) => Line::styled(s.clone(), fg(WARN)),
            None => Line::from(format!(
                "{}q quit  ? keys  : view  / filter  Enter open  t trace  c capture  r repair  Esc back",
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
    selecting: Option<&App>,
    line: &dyn Fn(usize) -> Line<'static>,
) {
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let height = inner.height as usize;
    let sel = selecting.map(|a| a.selected.min(total.saturating_sub(1)));
    let offset = sel.map_or(0, |s| (s + 1).saturating_sub(height));
    if let Some(app) = selecting {
        app.list_at.set(ListAt {
            top: inner.y,
            height: inner
                .height
                .min(total.saturating_sub(offset).min(usize::from(u16::MAX)) as u16),
            offset,
        });
    }
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

fn help(f: &mut Frame, area: Rect) {
    let keys = [
        ("q, Ctrl-C", "quit (the terminal is restored)"),
        ("?", "this list"),
        (":overview", "nodes and the cluster's findings"),
        (
            ":res :ing :svc :dns :pods",
            "the cluster's objects; `:svc NAME` opens one",
        ),
        (
            ":node NAME",
            "a node's devices, neigh, FDB, routes and kube-proxy rules against expect()",
        ),
        (
            "Enter",
            "open the selected node or object; in an object, the linked one",
        ),
        (
            "t, :trace",
            "trace from the selected object (fuzzy search for the other end)",
        ),
        (
            "  s d",
            "in the trace view: pick the source, the destination",
        ),
        (
            "  Enter p",
            "in the trace view: trace again, send a real probe",
        ),
        (
            "c, :capture N",
            "live packets on the node's cni0, flannel.1 and eth0",
        ),
        (
            "  space v w",
            "in the capture: pause, follow packets across interfaces, write pcapng",
        ),
        (
            "r, :repair N",
            "the repair plan of the selected (or named) node",
        ),
        ("  a", "in the repair view: apply the plan (asks y/n first)"),
        (
            "  h, :history N",
            "past repairs of the node; u undoes one (y/n)",
        ),
        ("Esc", "clear the filter, then go back"),
        ("/TEXT", "keep the lines containing TEXT (as you type)"),
        (
            "j k ↓ ↑ wheel",
            "move; PgDn PgUp by 20; g to the top; click selects",
        ),
    ];
    let lines: Vec<Line> = keys
        .iter()
        .map(|(k, what)| Line::from(format!("  {k:<27} {what}")))
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" keys ")),
        area,
    );
}
