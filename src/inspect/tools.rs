//! Parsers for the text of the standard tools knetdoctor reads a node with
//! where netlink has no (stable) API: conntrack and ethtool.

use std::net::IpAddr;

use crate::dataplane::state::ConntrackEntry;

/// Parses `conntrack -L` lines (`udp 17 29 src=.. dst=.. sport=.. dport=.. src=.. ...`).
/// Lines that are not entries (the summary on stderr, blanks) are skipped;
/// an entry missing a field is skipped too.
pub fn parse_conntrack(text: &str) -> Vec<ConntrackEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let proto = fields.next()?.to_string();
            let kv: Vec<(&str, &str)> = fields.filter_map(|f| f.split_once('=')).collect();
            let get = |key: &str, nth: usize| {
                kv.iter()
                    .filter(|(k, _)| *k == key)
                    .nth(nth)
                    .map(|(_, v)| *v)
            };
            Some(ConntrackEntry {
                proto,
                orig_src: get("src", 0)?.parse::<IpAddr>().ok()?,
                orig_dst: get("dst", 0)?.parse().ok()?,
                orig_dport: get("dport", 0)?.parse().ok()?,
                reply_src: get("src", 1)?.parse().ok()?,
            })
        })
        .collect()
}

/// Reads `tx-checksum-ip-generic: on|off` from `ethtool -k DEV`.
pub fn parse_tx_checksum(text: &str) -> Option<bool> {
    text.lines().find_map(|l| {
        let (k, v) = l.trim().split_once(':')?;
        (k == "tx-checksum-ip-generic").then(|| v.trim().starts_with("on"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrack_lines() {
        let text = "udp      17 29 src=10.2.2.50 dst=10.1.0.10 sport=42533 dport=53 src=10.2.0.2 dst=10.2.2.50 sport=53 dport=42533 mark=0 use=1\n\
                    conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n\
                    udp 17 3 src=10.2.2.50 dst=10.1.0.10 sport=1 [UNREPLIED]\n";
        let e = parse_conntrack(text);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].reply_src.to_string(), "10.2.0.2");
        assert_eq!(e[0].orig_dport, 53);
    }

    #[test]
    fn ethtool_features() {
        let text = "Features for flannel.1:\ntx-checksumming: on\n\ttx-checksum-ipv4: off [fixed]\n\ttx-checksum-ip-generic: on\n";
        assert_eq!(parse_tx_checksum(text), Some(true));
        assert_eq!(
            parse_tx_checksum("\ttx-checksum-ip-generic: off\n"),
            Some(false)
        );
        assert_eq!(parse_tx_checksum("garbage"), None);
    }
}
