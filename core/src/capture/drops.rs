//! Why the kernel freed a packet, from its `skb:kfree_skb` tracepoint (pure
//! parsing; the tracefs I/O is elsewhere). The kernel prints each event's
//! reason by name and its location as `function+offset/size`; the names are
//! the running kernel's own (its tracepoint format lists them), never a
//! table of ours, so a newer kernel's reasons read as it names them.

use std::collections::BTreeMap;

use serde::Serialize;

/// One packet the kernel dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelDrop {
    /// The kernel's reason (`NETFILTER_DROP`, `IP_INNOROUTES`, ...).
    pub reason: String,
    /// The function that freed it (`nf_hook_slow`).
    pub function: String,
    /// The EtherType of the packet (2048 for IPv4).
    pub protocol: u16,
}

/// How many drops of one reason at one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropCount {
    pub reason: String,
    pub function: String,
    pub count: usize,
}

/// The reason names of the running kernel, by number, from the
/// tracepoint's format (`__print_symbolic(REC->reason, { 2,
/// "NOT_SPECIFIED" }, ...)`).
pub fn reason_names(format: &str) -> BTreeMap<u32, String> {
    let Some(start) = format.find("__print_symbolic(REC->reason") else {
        return BTreeMap::new();
    };
    let mut names = BTreeMap::new();
    let mut rest = &format[start..];
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let pair = &rest[open + 1..open + close];
        if let Some((n, name)) = pair.split_once(',')
            && let Ok(n) = n.trim().parse::<u32>()
        {
            names.insert(n, name.trim().trim_matches('"').to_string());
        }
        rest = &rest[open + close + 1..];
    }
    names
}

/// The number the running kernel gives reason `name`.
pub fn reason_number(names: &BTreeMap<u32, String>, name: &str) -> Option<u32> {
    names.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
}

/// One line of the tracepoint's output (`trace_pipe`), e.g.
/// `<idle>-0 [001] ..s2. 81.5: kfree_skb: skbaddr=0x.. rx_sk=0x0
/// protocol=2048 location=nf_hook_slow+0x96/0xd0 reason: NETFILTER_DROP`.
pub fn parse_line(line: &str) -> Option<KernelDrop> {
    let body = &line[line.find("kfree_skb: ")?..];
    let field = |key: &str| -> Option<&str> {
        let at = body.find(key)? + key.len();
        body[at..].split_whitespace().next()
    };
    let protocol = field("protocol=")?.parse().ok()?;
    let location = field("location=")?;
    let function = location.split('+').next()?.to_string();
    let reason = field("reason: ")?.to_string();
    Some(KernelDrop {
        reason,
        function,
        protocol,
    })
}

/// The drops by reason and function, most frequent first.
pub fn tally(drops: &[KernelDrop]) -> Vec<DropCount> {
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for d in drops {
        *counts.entry((&d.reason, &d.function)).or_default() += 1;
    }
    let mut out: Vec<DropCount> = counts
        .into_iter()
        .map(|((reason, function), count)| DropCount {
            reason: reason.to_string(),
            function: function.to_string(),
            count,
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.count));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From this machine's kernel (6.18): the start of the format's list.
    const FORMAT: &str = r#"print fmt: "skbaddr=%p rx_sk=%p protocol=%u location=%pS reason: %s", REC->skbaddr, REC->rx_sk, REC->protocol, REC->location, __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, { 12, "NETFILTER_DROP" }, { 88, "IP_INNOROUTES" }, { 93, "PKT_TOO_BIG" }, { 129, "MAX" })"#;

    #[test]
    fn reason_names_come_from_the_kernel_format() {
        let names = reason_names(FORMAT);
        assert_eq!(names.len(), 6);
        assert_eq!(names[&12], "NETFILTER_DROP");
        assert_eq!(reason_number(&names, "PKT_TOO_BIG"), Some(93));
        assert!(reason_names("print fmt: \"x\"").is_empty());
    }

    #[test]
    fn trace_lines_give_reason_function_and_protocol() {
        let line = "          <idle>-0       [001] ..s2.  8118.411290: kfree_skb: skbaddr=00000000a1b2c3d4 rx_sk=0000000000000000 protocol=2048 location=nf_hook_slow+0x96/0xd0 reason: NETFILTER_DROP";
        let d = parse_line(line).unwrap();
        assert_eq!(
            d,
            KernelDrop {
                reason: "NETFILTER_DROP".into(),
                function: "nf_hook_slow".into(),
                protocol: 2048
            }
        );
        assert!(parse_line("ping-12 [000] .... 1.0: consume_skb: skbaddr=0").is_none());
        let t = tally(&[
            d.clone(),
            d.clone(),
            KernelDrop {
                reason: "IP_INNOROUTES".into(),
                ..d
            },
        ]);
        assert_eq!((t[0].reason.as_str(), t[0].count), ("NETFILTER_DROP", 2));
    }
}
