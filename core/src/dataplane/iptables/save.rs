//! Parsing `iptables-save` output (nf_tables and legacy backends print the
//! same format) into a [`Ruleset`]. Structure and quoting are checked here,
//! naming the line; rule specs are typed ([`super::RuleSpec`]) when a check
//! reads them — a kube-proxy ruleset has 100,000 rules and few are read.

use super::ruleset::Ruleset;
use crate::dataplane::iptables::ruleset::Chain;

/// A parse error with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct SaveError {
    pub line: usize,
    pub what: String,
}

/// The tables iptables-save prints.
const TABLES: [&str; 5] = ["filter", "nat", "mangle", "raw", "security"];

/// True if every `"` that is not escaped has its partner.
fn quotes_balanced(spec: &str) -> bool {
    let mut open = false;
    let mut escaped = false;
    for b in spec.bytes() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            open = !open;
        }
    }
    !open
}

/// A rule line without the `[packets:bytes] ` that `iptables-save -c`
/// prints before it (a chain declaration keeps its own counters after the
/// policy, where the declaration parser ignores them).
fn strip_counters(l: &str) -> &str {
    let Some(rest) = l.strip_prefix('[') else {
        return l;
    };
    match rest.split_once("] ") {
        Some((counters, rule))
            if counters.split_once(':').is_some_and(|(p, b)| {
                !p.is_empty()
                    && !b.is_empty()
                    && p.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            }) =>
        {
            rule
        }
        _ => l,
    }
}

/// Parses the whole text of `iptables-save` (with or without `-c`).
pub fn parse(text: &str) -> Result<Ruleset, SaveError> {
    let mut rs = Ruleset::default();
    let mut current: Option<usize> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let err = |what: String| SaveError { line, what };
        let l = raw.trim_end();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        // `iptables-save -c` puts each rule's counters first: `[pkts:bytes] -A ...`.
        let l = strip_counters(l);
        if let Some(name) = l.strip_prefix('*') {
            if !TABLES.contains(&name) {
                return Err(err(format!(
                    "unknown table {name:?} (iptables has {})",
                    TABLES.join(", ")
                )));
            }
            if current.is_some() {
                return Err(err(format!(
                    "table {name} starts before the previous table's COMMIT"
                )));
            }
            if rs.table(name).is_some() {
                return Err(err(format!("table {name} appears twice")));
            }
            rs.tables.push(super::ruleset::Table::empty(name));
            current = Some(rs.tables.len() - 1);
        } else if l == "COMMIT" {
            current
                .take()
                .ok_or_else(|| err("COMMIT outside a table".into()))?;
        } else if let Some(decl) = l.strip_prefix(':') {
            let t = current.ok_or_else(|| err("chain declared outside a table".into()))?;
            let mut parts = decl.split_whitespace();
            let (Some(name), Some(policy)) = (parts.next(), parts.next()) else {
                return Err(err(format!("malformed chain declaration {l:?}")));
            };
            if rs.tables[t].chain(name).is_some() {
                return Err(err(format!("chain {name} declared twice")));
            }
            rs.tables[t].push_chain(Chain {
                name: name.to_string(),
                policy: (policy != "-").then(|| policy.to_string()),
                rules: Vec::new(),
            });
        } else if let Some(rest) = l.strip_prefix("-A ") {
            let t = current.ok_or_else(|| err("rule outside a table".into()))?;
            let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
            if !quotes_balanced(spec) {
                return Err(err(format!("chain {chain}: unbalanced quotes")));
            }
            let table = &mut rs.tables[t];
            if table.chain(chain).is_none() {
                return Err(err(format!("rule for undeclared chain {chain}")));
            }
            table.append(chain, spec);
        } else {
            return Err(err(format!("unexpected line {l:?}")));
        }
    }
    if current.is_some() {
        return Err(SaveError {
            line: text.lines().count(),
            what: "missing COMMIT at end".into(),
        });
    }
    Ok(rs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NFT: &str = include_str!("../../../../tests/fixtures/iptables/seed-node-12.nft.save");
    const LEGACY: &str =
        include_str!("../../../../tests/fixtures/iptables/seed-master-10.legacy.save");

    #[test]
    fn parses_real_nft_and_legacy_output() {
        for text in [NFT, LEGACY] {
            let rs = parse(text).unwrap();
            let nat = rs.table("nat").unwrap();
            let svcs = nat.chain("KUBE-SERVICES").unwrap();
            assert!(svcs.rules.iter().any(|r| r.contains("10.1.59.153/32")));
            assert_eq!(
                nat.chain("PREROUTING").unwrap().policy.as_deref(),
                Some("ACCEPT")
            );
            assert_eq!(
                nat.chain("KUBE-SVC-K2WYTW5CBKHCXKSG").unwrap().rules.len(),
                4
            );
        }
    }

    #[test]
    fn round_trips_through_render() {
        let rs = parse(NFT).unwrap();
        assert_eq!(parse(&rs.render()).unwrap(), rs);
    }

    #[test]
    fn malformed_input_names_the_line() {
        let cases = [
            ("*nat\n:A - [0:0]\n-A B -j A\nCOMMIT\n", 3, "undeclared"),
            ("*nat\n-A A -j\nCOMMIT\n", 2, "undeclared"),
            (
                "*nat\n:A - [0:0]\n-A A -m comment --comment \"x\nCOMMIT\n",
                3,
                "unbalanced",
            ),
            (
                "*nat\n:A - [0:0]\n:A - [0:0]\nCOMMIT\n",
                3,
                "declared twice",
            ),
            ("*nat\n:A - [0:0]\n", 2, "missing COMMIT"),
            ("COMMIT\n", 1, "outside a table"),
            ("*nat\nbogus\n", 2, "unexpected"),
            ("*nat\nCOMMIT\n*nat\nCOMMIT\n", 3, "twice"),
        ];
        for (text, line, what) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.what.contains(what), "{text:?}: {e}");
        }
        // Escaped quotes inside a comment are balanced.
        assert!(parse("*nat\n:A - [0:0]\n-A A -m comment --comment \"dnat name: \\\"cbr0\\\"\" -j B\nCOMMIT\n").is_ok());
    }

    #[test]
    fn never_panics_on_truncated_input() {
        for cut in 0..NFT.len().min(4000) {
            let _ = parse(&NFT[..cut]);
        }
    }

    #[test]
    fn counters_from_iptables_save_c_are_read_past() {
        let plain = parse(NFT).unwrap();
        let with_counters: String = NFT
            .lines()
            .map(|l| {
                if l.starts_with("-A ") {
                    format!("[12:3456] {l}\n")
                } else if let Some(decl) = l.strip_prefix(':') {
                    let mut p = decl.split_whitespace();
                    format!(":{} {} [7:89]\n", p.next().unwrap(), p.next().unwrap())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert_eq!(parse(&with_counters).unwrap(), plain);
        let e = parse("*nat\n:X - [0:0]\n[1:x] -A X -j ACCEPT\nCOMMIT\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }
}
