//! The cluster's objects (Ingress → Service → DNS → Pods → Nodes) and one
//! object with everything it links to, broken links marked and the
//! findings that explain them.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};

use super::{WARN, fg, finding_line, list, mark_style};
use crate::tui::app::App;
use crate::tui::resources::Kind;
use crate::tui::snapshot::{Mark, Snapshot};

/// The resources list: kind, name, detail, and the finding naming it.
pub fn resources(f: &mut Frame, area: Rect, app: &App, s: &Snapshot, kind: Option<Kind>) {
    let shown = app.shown_resources(s, kind);
    let broken = shown.iter().filter(|r| r.finding.is_some()).count();
    let width = shown
        .iter()
        .take(2000)
        .map(|r| r.name.len())
        .max()
        .unwrap_or(10)
        .min(60);
    list(
        f,
        area,
        format!(
            " {} ({}, {broken} named by findings) — Enter opens, t traces from it ",
            kind.map_or("ingresses, services, dns, pods, nodes", |k| match k {
                Kind::Ingress => "ingresses",
                Kind::Service => "services",
                Kind::Dns => "dns names",
                Kind::Pod => "pods",
                Kind::Node => "nodes",
            }),
            shown.len()
        ),
        shown.len(),
        Some(app),
        &|i| {
            let r = shown[i];
            let mark = if r.finding.is_some() {
                Mark::Wrong
            } else {
                Mark::Ok
            };
            let mut spans = vec![
                Span::styled(
                    format!("{:<6}", if r.finding.is_some() { "XX" } else { "ok" }),
                    mark_style(&mark),
                ),
                Span::raw(format!(
                    "{:<5}{:<width$}  {}",
                    r.kind.label(),
                    r.name,
                    r.detail
                )),
            ];
            if let Some(id) = &r.finding {
                spans.push(Span::styled(format!("   ← {id}"), fg(WARN)));
            }
            Line::from(spans)
        },
    );
}

/// One object: the linked tree (`inspect`'s), then the findings.
pub fn object(f: &mut Frame, area: Rect, app: &App, kind: Kind, name: &str) {
    let view = match &app.linked {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            list(
                f,
                area,
                format!(" {} {name} ", kind.label()),
                1,
                None,
                &|_| Line::from(e.clone()),
            );
            return;
        }
        None => return,
    };
    let broken = view.lines.iter().filter(|l| l.ok == Some(false)).count();
    let [top, bottom] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(view.findings.len().clamp(1, 8) as u16 + 2),
    ])
    .areas(area);
    list(
        f,
        top,
        format!(
            " {} {name}: {} links, {broken} broken — Enter follows a link, t traces ",
            kind.label(),
            view.lines.len()
        ),
        view.lines.len(),
        Some(app),
        &|i| {
            let l = &view.lines[i];
            let (word, mark) = match l.ok {
                Some(true) => ("ok", Mark::Ok),
                Some(false) => ("broken", Mark::Wrong),
                None => ("", Mark::Ok),
            };
            Line::from(vec![
                Span::styled(format!("{word:<7}"), mark_style(&mark)),
                Span::raw(format!("{}{:<8} {}", "  ".repeat(l.depth), l.kind, l.text)),
            ])
        },
    );
    list(
        f,
        bottom,
        format!(" findings that explain them ({}) ", view.findings.len()),
        view.findings.len(),
        None,
        &|i| finding_line(&view.findings[i], true),
    );
}
