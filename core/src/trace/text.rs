//! The readable form of a trace: common hops, then each branch, the hop
//! that drops standing out, with the finding and repair that explain it.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};

use super::{Hop, Trace, Verdict};

fn hop_line(o: &mut String, h: &Hop, indent: &str) {
    let (mark, st) = match h.verdict {
        Verdict::Ok => ("ok  ", Style::new()),
        Verdict::Warn => (
            "warn",
            Style::new().fg_color(Some(AnsiColor::Yellow.into())),
        ),
        Verdict::Drop => (
            "DROP",
            Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
        ),
    };
    let point = super::name_of(&h.point);
    let place = [h.node.clone(), h.device.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/");
    let _ = writeln!(
        o,
        "{indent}{st}{mark}{st:#} {point:<16} {place:<24} {}",
        h.decided_by
    );
    if !h.evidence.is_empty() {
        let reason = h
            .reason
            .map(|r| format!("[{}] ", super::name_of(&r)))
            .unwrap_or_default();
        let _ = writeln!(o, "{indent}     {:<16} {reason}{}", "", h.evidence);
    }
    if let Some(f) = &h.finding {
        let _ = writeln!(o, "{indent}     {:<16} finding {}: {}", "", f.id, f.summary);
        for a in &f.repair {
            let _ = writeln!(
                o,
                "{indent}     {:<16} repair: {}",
                "",
                crate::check::text::action_line(a)
            );
        }
    }
}

/// Renders a trace.
pub fn render(t: &Trace) -> String {
    let mut o = String::new();
    let head = Style::new().bold();
    let _ = writeln!(
        o,
        "{head}trace{head:#} {} -> {} ({}{})",
        t.source,
        t.destination,
        t.protocol,
        t.port.map(|p| format!("/{p}")).unwrap_or_default()
    );
    for h in &t.hops {
        hop_line(&mut o, h, "  ");
    }
    for b in &t.branches {
        let _ = writeln!(
            o,
            "  {head}{}{head:#} {}",
            if b.reachable { "->" } else { "XX" },
            b.label
        );
        for h in &b.hops {
            hop_line(&mut o, h, "    ");
        }
    }
    let ok = t.branches.iter().filter(|b| b.reachable).count();
    let _ = writeln!(
        o,
        "{}: {ok} of {} path(s) deliver{}",
        if t.reachable {
            "reachable"
        } else {
            "NOT reachable"
        },
        t.branches.len(),
        t.path_mtu
            .map(|m| format!("; path MTU {m}"))
            .unwrap_or_default()
    );
    if let Some(line) = crate::model::reading::read_in_part(&t.unread) {
        let _ = writeln!(o, "{line}");
    }
    o
}
