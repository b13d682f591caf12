//! A node's repair plan, and its past repairs with undo.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;

use super::list;
use crate::tui::app::App;
use crate::tui::snapshot::Snapshot;

/// The node's repair plan, as `knetdoctor repair --node NODE` prints it.
pub fn repair(f: &mut Frame, area: Rect, app: &App, s: &Snapshot, name: &str) {
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
    list(f, area, title, lines.len(), Some(app), &|i| {
        Line::from(lines[i].to_string())
    });
}

/// A node's past repairs, newest first; `u` undoes the selected one.
pub fn history(f: &mut Frame, area: Rect, app: &App, node: &str) {
    let rows: Vec<String> = match &app.history {
        Some((n, Ok(past))) if n == node => past.iter().rev().map(|j| j.summary()).collect(),
        Some((n, Err(e))) if n == node => vec![e.clone()],
        _ => vec!["reading the journal…".to_string()],
    };
    let title = if app.applying {
        format!(" repairs of {node} — working… ")
    } else {
        format!(" repairs of {node}, newest first — u undoes the selected one (after a yes) ")
    };
    let shown = if rows.is_empty() {
        vec![format!("no repairs of {node} recorded")]
    } else {
        rows
    };
    list(f, area, title, shown.len(), Some(app), &|i| {
        Line::from(shown[i].clone())
    });
}
