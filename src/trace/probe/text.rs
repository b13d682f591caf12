//! The readable form of a probe's report.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};

/// The readable form of a probe: what was sent, what came back, where the
/// request and reply were seen, the last rules they hit, and whether that
/// agrees with the static trace.
pub fn render_probe(p: &super::ProbeReport) -> String {
    use super::verdict::Direction;
    let mut o = String::new();
    let bad = Style::new().bold().fg_color(Some(AnsiColor::Red.into()));
    let via = p
        .via_agent
        .as_ref()
        .map(|n| format!(", sent by the agent on {n}"))
        .unwrap_or_default();
    let _ = writeln!(o, "\nprobe: {} (from {}{via})", p.sent, p.from_netns);
    let reply_kind = crate::trace::name_of(&p.reply.kind);
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
        let _ = writeln!(o, "  {name} seen on: {}", places(p, dir));
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
        netfilter_lines(&mut o, n, bad);
    }
    for d in &p.kernel_drops {
        let _ = writeln!(
            o,
            "  the kernel dropped the {} on {}{}{}: {bad}{}{bad:#} in {} ({})",
            d.direction,
            d.node,
            if d.place.is_empty() { "" } else { " " },
            d.place,
            d.reason,
            d.function,
            d.packet
        );
    }
    if let Some(why) = &p.drops_note {
        let _ = writeln!(o, "  drop reasons not read: {why}");
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

/// The interfaces a direction of the probe was seen on, in order.
fn places(p: &super::ProbeReport, dir: super::verdict::Direction) -> String {
    let mut places: Vec<String> = Vec::new();
    for s in p.seen.iter().filter(|s| s.direction == dir) {
        let place = s.at_iface.to_string();
        if !places.contains(&place) {
            places.push(place);
        }
    }
    if places.is_empty() {
        "nothing captured".to_string()
    } else {
        places.join(" -> ")
    }
}

/// A node's netfilter decisions on the request and the reply.
fn netfilter_lines(o: &mut String, n: &super::NodeNetfilter, bad: Style) {
    if let Some(note) = &n.note {
        let _ = writeln!(o, "  netfilter {}: not traced ({note})", n.node);
        return;
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
