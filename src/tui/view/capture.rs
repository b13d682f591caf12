//! The capture view: a node's packets as they arrive (or followed across
//! interfaces), newest at the bottom; under them, what the kernel dropped
//! on the node, why and where, with the counts by reason.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};

use super::list;
use crate::tui::app::App;

pub fn capture(f: &mut Frame, area: Rect, app: &App, node: &str) {
    let Some(buffer) = &app.capture else {
        return;
    };
    let Ok(b) = buffer.lock() else {
        return;
    };
    // The drops pane: as tall as what it has to say, at most 8 lines.
    let drop_lines = b.drops.len().clamp(1, 6) as u16 + 2;
    let [area, drops_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(drop_lines)]).areas(area);
    drops(f, drops_area, &b, node);
    let source: Vec<&String> = if b.grouped {
        b.groups.iter().collect()
    } else {
        b.packets.iter().map(|p| &p.line).collect()
    };
    let lines: Vec<&String> = source
        .into_iter()
        .filter(|l| app.filter.is_empty() || l.contains(&app.filter))
        .collect();
    let state = match (&b.error, b.running, b.paused) {
        (Some(e), _, _) => format!("stopped: {e}"),
        (None, false, _) if b.interfaces.is_empty() => "opening the interfaces…".to_string(),
        (None, false, _) => "stopped".to_string(),
        (None, true, true) => "PAUSED".to_string(),
        (None, true, false) => "live".to_string(),
    };
    let title = format!(
        " {node} {} — {state}, {} {}, {} not kept — space pause, v {}, w pcapng ",
        if b.interfaces.is_empty() {
            "cni0,flannel.1,eth0".to_string()
        } else {
            b.interfaces.join(",")
        },
        lines.len(),
        if b.grouped {
            "packets followed"
        } else {
            "frames"
        },
        b.dropped,
        if b.grouped {
            "frames"
        } else {
            "follow packets"
        },
    );
    // Newest at the bottom, followed while nothing is selected (j or a
    // click selects a line and stops following; g follows again).
    if app.selected > 0 {
        list(f, area, title, lines.len(), Some(app), &|i| {
            Line::from(lines[i].clone())
        });
        return;
    }
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let start = lines.len().saturating_sub(inner.height as usize);
    let tail: Vec<Line> = lines[start..]
        .iter()
        .map(|l| Line::from((*l).clone()))
        .collect();
    f.render_widget(Paragraph::new(tail), inner);
}

/// The kernel's drops on the node, newest at the bottom, titled with the
/// counts by reason; or why they cannot be read.
fn drops(f: &mut Frame, area: Rect, b: &crate::tui::capture::Buffer, node: &str) {
    let counts: Vec<String> = b
        .drop_counts
        .iter()
        .take(3)
        .map(|c| format!("{} {}×", c.reason, c.count))
        .collect();
    let title = format!(
        " kernel drops on {node}{} ",
        if counts.is_empty() {
            String::new()
        } else {
            format!(": {}", counts.join(", "))
        }
    );
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let lines: Vec<Line> = match (&b.drops_note, b.drops.is_empty()) {
        (Some(why), _) => vec![Line::from(format!("not read: {why}"))],
        (None, true) => vec![Line::from("none so far")],
        (None, false) => {
            let start = b.drops.len().saturating_sub(inner.height as usize);
            b.drops
                .iter()
                .skip(start)
                .map(|l| Line::styled(l.clone(), Style::default().fg(Color::Red)))
                .collect()
        }
    };
    f.render_widget(Paragraph::new(lines), inner);
}
