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
    o
}

/// The readable form of a probe: what was sent, what came back, where the
/// request and reply were seen, the last rules they hit, and whether that
/// agrees with the static trace.
pub fn render_probe(p: &super::probe::ProbeReport) -> String {
    use super::probe::verdict::Direction;
    let mut o = String::new();
    let bad = Style::new().bold().fg_color(Some(AnsiColor::Red.into()));
    let _ = writeln!(o, "\nprobe: {} (from {})", p.sent, p.from_netns);
    let reply_kind = super::name_of(&p.reply.kind);
    let st = if p.judgement.reached {
        Style::new()
    } else {
        bad
    };
    let _ = writeln!(
        o,
        "  reply: {st}{reply_kind}{st:#}{} — {}",
        p.reply
            .from
            .map(|f| format!(" from {f}"))
            .unwrap_or_default(),
        p.reply.detail
    );
    for (dir, name) in [(Direction::Request, "request"), (Direction::Reply, "reply")] {
        let mut places: Vec<&str> = Vec::new();
        for s in p.seen.iter().filter(|s| s.direction == dir) {
            if !places.contains(&s.at_iface.as_str()) {
                places.push(&s.at_iface);
            }
        }
        let _ = writeln!(
            o,
            "  {name} seen on: {}",
            if places.is_empty() {
                "nothing captured".to_string()
            } else {
                places.join(" -> ")
            }
        );
    }
    let j = &p.judgement;
    if let Some(b) = &j.branch {
        let _ = writeln!(o, "  the kernel chose: {b}");
    }
    if let Some(lost) = j.lost_before.as_ref().filter(|_| !j.reached) {
        let _ = writeln!(
            o,
            "  request last seen on {}, {st}not seen on {lost}{st:#}",
            j.last_seen.as_deref().unwrap_or("nothing"),
            st = bad
        );
    }
    for n in &p.netfilter {
        if let Some(note) = &n.note {
            let _ = writeln!(o, "  netfilter {}: not traced ({note})", n.node);
            continue;
        }
        if n.hits.is_empty() {
            let _ = writeln!(
                o,
                "  netfilter {}: no marked packet passed (it did not get here, or NAT rewrote the port the mark matches)",
                n.node
            );
        }
        for (which, reply) in [("request", false), ("reply", true)] {
            for h in n.decisions(reply) {
                let st = if h.verdict == "accept" {
                    Style::new()
                } else {
                    bad
                };
                let _ = writeln!(o, "  netfilter {} {which}: {st}{}{st:#}", n.node, h.line());
            }
        }
    }
    for n in &p.not_captured {
        let _ = writeln!(o, "  not captured: {n}");
    }
    match &j.disagreement {
        None => {
            let _ = writeln!(o, "the real packet agrees with the trace");
        }
        Some(d) => {
            let _ = writeln!(
                o,
                "{bad}the real packet DISAGREES with the trace{bad:#}: {d}"
            );
        }
    }
    o
}
