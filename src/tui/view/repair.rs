//! A node's repair plan, and its past repairs with undo.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};

use super::{list, mark_style};
use crate::repair::journal::Journal;
use crate::tui::app::App;
use crate::tui::snapshot::{Mark, Snapshot};

/// The node's repair plan, as `knetdoctor repair --node NODE` prints it.
pub fn repair(f: &mut Frame, area: Rect, app: &App, s: &Snapshot, name: &str) {
    let text = match s.plan(name) {
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

/// A node's past repairs, newest first, and what the selected one did
/// (its journal: each change, made or failed); `u` undoes it.
pub fn history(f: &mut Frame, area: Rect, app: &App, node: &str) {
    let past: Vec<&Journal> = match &app.history {
        Some((n, Ok(past))) if n == node => past.iter().rev().collect(),
        Some((n, Err(e))) if n == node => {
            return list(f, area, format!(" repairs of {node} "), 1, None, &|_| {
                Line::from(e.clone())
            });
        }
        _ => {
            return list(f, area, format!(" repairs of {node} "), 1, None, &|_| {
                Line::from("reading the journal…")
            });
        }
    };
    if past.is_empty() {
        return list(f, area, format!(" repairs of {node} "), 1, None, &|_| {
            Line::from(format!("no repairs of {node} recorded"))
        });
    }
    let [top, bottom] =
        Layout::vertical([Constraint::Max(past.len() as u16 + 2), Constraint::Min(3)]).areas(area);
    let title = if app.applying {
        format!(" repairs of {node} — working… ")
    } else {
        format!(" repairs of {node}, newest first — u undoes the selected one (after a yes) ")
    };
    list(f, top, title, past.len(), Some(app), &|i| {
        Line::from(past[i].summary())
    });
    let j = past[app.selected.min(past.len() - 1)];
    list(
        f,
        bottom,
        format!(" journal {} ", j.id),
        j.entries.len(),
        None,
        &|i| {
            let e = &j.entries[i];
            use crate::repair::journal::Restore;
            let state = match (&e.restore, &e.error, e.applied, e.unanswered) {
                (Restore::Restored, ..) => "put back",
                (Restore::Failed(_), ..) => "not back",
                (_, Some(_), ..) => "failed",
                (_, None, true, true) => "sent?",
                (_, None, true, false) => "made",
                (_, None, false, _) => "not made",
            };
            Line::from(vec![
                Span::styled(
                    format!("{state:<9}"),
                    mark_style(&if state == "made" {
                        Mark::Ok
                    } else {
                        Mark::Wrong
                    }),
                ),
                Span::raw(format!(
                    "{}  ({}){}",
                    crate::check::text::action_line(&e.action),
                    e.finding,
                    e.error
                        .as_ref()
                        .map(|x| format!(": {x}"))
                        .unwrap_or_default()
                )),
            ])
        },
    );
}
