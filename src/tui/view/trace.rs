//! The trace view: the two ends, the hop list as `trace` prints it, and
//! while an end is being picked, the fuzzy matches.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::list;
use crate::tui::app::{App, Prompt};
use crate::tui::snapshot::Snapshot;

pub fn trace(f: &mut Frame, area: Rect, app: &App, s: &Snapshot) {
    let t = &app.trace;
    let [ends, hops] = Layout::vertical([Constraint::Length(2), Constraint::Min(3)]).areas(area);
    let end = |what: &str, v: &Option<String>| {
        Line::from(vec![
            Span::raw(format!(" {what:<5}")),
            Span::styled(
                v.clone().unwrap_or_else(|| "(not picked)".into()),
                Style::default().add_modifier(Modifier::BOLD),
            ),
        ])
    };
    f.render_widget(
        Paragraph::new(vec![end("from", &t.from), end("to", &t.to)]),
        ends,
    );
    let lines: Vec<&String> = t
        .lines
        .iter()
        .filter(|l| app.filter.is_empty() || l.contains(&app.filter))
        .collect();
    let title = match t.running {
        Some(what) => format!(" {what} running… "),
        None if t.lines.is_empty() => {
            " s picks the source, d the destination; Enter traces, p probes ".to_string()
        }
        None => {
            " hops — Enter traces again, p sends a real probe (lab), s/d change an end ".to_string()
        }
    };
    list(f, hops, title, lines.len(), Some(app), &|i| {
        Line::from(lines[i].clone())
    });
    if let Some(Prompt::Pick {
        query,
        matches,
        selected,
        ..
    }) = &app.prompt
    {
        // The matches over the hop list, as a popup.
        let h = (matches.len() as u16 + 2).clamp(3, hops.height.saturating_sub(1).max(3));
        let popup = Rect {
            x: hops.x + 2,
            y: hops.y + 1,
            width: hops.width.saturating_sub(4),
            height: h,
        };
        f.render_widget(Clear, popup);
        let block = Block::default().borders(Borders::ALL).title(format!(
            " {} of {} match {query:?} ",
            matches.len(),
            s.trace_targets.len()
        ));
        let inner = block.inner(popup);
        f.render_widget(block, popup);
        let rows = inner.height as usize;
        let offset = (selected + 1).saturating_sub(rows);
        let items: Vec<Line> = matches
            .iter()
            .enumerate()
            .skip(offset)
            .take(rows)
            .map(|(n, &i)| {
                let tt = &s.trace_targets[i];
                let l = Line::from(format!("{:<5}{}", tt.kind.label(), tt.text));
                if n == *selected {
                    l.style(Style::default().add_modifier(Modifier::REVERSED))
                } else {
                    l
                }
            })
            .collect();
        f.render_widget(Paragraph::new(items), inner);
    }
}
