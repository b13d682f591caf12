//! A typed view of one iptables rule spec (the text after `-A CHAIN`), so
//! rules we expect and rules `iptables-save` prints compare by meaning:
//! iptables rewrites `--or-mark` as `--set-xmark`, prints probabilities
//! with 11 digits and inserts `-m tcp`; addresses, ports, targets and DNAT
//! destinations survive unchanged.

use serde::{Deserialize, Serialize};

/// `[!] value`: a match that may be negated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neg {
    pub negated: bool,
    pub value: String,
}

/// The parts of a rule knetdoctor reasons about; everything else stays in `tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub src: Option<Neg>,
    pub dst: Option<Neg>,
    pub proto: Option<String>,
    pub in_iface: Option<Neg>,
    pub out_iface: Option<Neg>,
    /// `--dport`, or the single port of `--dports`.
    pub dport: Option<u16>,
    /// Every port of `-m multiport --dports`.
    pub dports: Vec<u16>,
    pub comment: Option<String>,
    /// Match modules named with `-m`.
    pub matches: Vec<String>,
    /// `-j` target or `-g` goto chain.
    pub target: Option<String>,
    pub goto: bool,
    /// DNAT `--to-destination`.
    pub to_destination: Option<String>,
    /// `-m statistic --probability`.
    pub probability: Option<f64>,
    /// `-m addrtype --dst-type`.
    pub dst_type: Option<String>,
    /// `-m mark [!] --mark`.
    pub mark: Option<Neg>,
    /// `-m recent --name` (session affinity).
    pub recent: Option<String>,
    pub tokens: Vec<String>,
}

/// Options that take no value (everything else starting with `--` takes
/// the following non-option tokens as its value).
const FLAGS: &[&str] = &[
    "--random-fully",
    "--random",
    "--persistent",
    "--rsource",
    "--rdest",
    "--rcheck",
    "--set",
    "--reap",
    "--update",
    "--remove",
    "--syn",
    "--log-uid",
    "--fragment",
];

impl RuleSpec {
    /// The words that follow `-j`, `--jump`, `-g` or `--goto` in `rule`,
    /// without parsing it: its target among them, and any a comment
    /// spells so. Cheap enough to run over every rule of a 113,000-rule
    /// ruleset (what indexes jumps, or drops those into a chain); parse
    /// the rule where only the real target will do.
    pub fn jump_words(rule: &str) -> impl Iterator<Item = &str> {
        let mut words = rule.split_whitespace();
        std::iter::from_fn(move || {
            loop {
                let w = words.next()?;
                if matches!(w, "-j" | "--jump" | "-g" | "--goto") {
                    return words.next();
                }
            }
        })
    }

    /// Parses a rule spec; an error says which token is wrong.
    pub fn parse(spec: &str) -> Result<RuleSpec, String> {
        let tokens = shlex::split(spec).ok_or_else(|| format!("unbalanced quotes in {spec:?}"))?;
        let mut r = RuleSpec {
            tokens: tokens.clone(),
            ..Default::default()
        };
        let mut i = 0;
        let mut negate = false;
        let value = |i: usize, opt: &str| -> Result<String, String> {
            tokens
                .get(i + 1)
                .cloned()
                .ok_or_else(|| format!("{opt} needs a value"))
        };
        let port = |v: &str, opt: &str| -> Result<u16, String> {
            v.parse().map_err(|_| format!("{opt} {v:?} is not a port"))
        };
        while i < tokens.len() {
            let t = tokens[i].as_str();
            if t == "!" {
                negate = true;
                i += 1;
                continue;
            }
            let neg = |v: String| Neg {
                negated: negate,
                value: v,
            };
            let mut consumed = 2;
            match t {
                "-s" | "--source" => r.src = Some(neg(value(i, t)?)),
                "-d" | "--destination" => r.dst = Some(neg(value(i, t)?)),
                "-p" | "--protocol" => r.proto = Some(value(i, t)?.to_ascii_lowercase()),
                "-i" | "--in-interface" => r.in_iface = Some(neg(value(i, t)?)),
                "-o" | "--out-interface" => r.out_iface = Some(neg(value(i, t)?)),
                "-m" | "--match" => r.matches.push(value(i, t)?),
                "-j" | "--jump" => r.target = Some(value(i, t)?),
                "-g" | "--goto" => {
                    r.target = Some(value(i, t)?);
                    r.goto = true;
                }
                "--dport" | "--destination-port" => r.dport = Some(port(&value(i, t)?, t)?),
                "--dports" | "--destination-ports" => {
                    r.dports = value(i, t)?
                        .split(',')
                        .map(|p| port(p, t))
                        .collect::<Result<_, _>>()?;
                    if r.dports.len() == 1 {
                        r.dport = r.dports.first().copied();
                    }
                }
                "--comment" => r.comment = Some(value(i, t)?),
                "--to-destination" => r.to_destination = Some(value(i, t)?),
                "--probability" => {
                    let v = value(i, t)?;
                    r.probability = Some(
                        v.parse()
                            .map_err(|_| format!("--probability {v:?} is not a number"))?,
                    );
                }
                "--dst-type" => r.dst_type = Some(value(i, t)?),
                "--mark" => r.mark = Some(neg(value(i, t)?)),
                "--name" if r.matches.iter().any(|m| m == "recent") => {
                    r.recent = Some(value(i, t)?)
                }
                f if FLAGS.contains(&f) => consumed = 1,
                o if o.starts_with('-') => {
                    // An option we do not model: skip its values.
                    consumed = 1;
                    while tokens
                        .get(i + consumed)
                        .is_some_and(|v| !v.starts_with('-') && v != "!")
                    {
                        consumed += 1;
                    }
                }
                other => return Err(format!("unexpected {other:?}")),
            }
            negate = false;
            i += consumed;
        }
        Ok(r)
    }

    /// The destination without a `/32` host suffix, if it is not negated.
    pub fn dst_host(&self) -> Option<&str> {
        self.dst
            .as_ref()
            .filter(|d| !d.negated)
            .map(|d| d.value.trim_end_matches("/32"))
    }

    /// True if the rule jumps (or goes) to `chain`.
    pub fn jumps_to(&self, chain: &str) -> bool {
        self.target.as_deref() == Some(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_words_are_the_words_after_each_jump_or_goto() {
        let rule = r#"-m comment --comment "x -j KUBE-SVC-B" -p tcp --goto KUBE-SVC-A"#;
        let words: Vec<&str> = RuleSpec::jump_words(rule).collect();
        assert_eq!(words, ["KUBE-SVC-B\"", "KUBE-SVC-A"]);
        let words: Vec<&str> = RuleSpec::jump_words("-s 10.2.0.0/16 -j ACCEPT").collect();
        assert_eq!(words, ["ACCEPT"]);
        assert_eq!(RuleSpec::jump_words("-j").count(), 0);
        assert_eq!(RuleSpec::jump_words("-p tcp --dport 80").count(), 0);
    }

    #[test]
    fn parses_kube_proxy_rules_as_iptables_save_prints_them() {
        let r = RuleSpec::parse(
            r#"-d 10.1.59.153/32 -p tcp -m comment --comment "test-svc-ns/linux0224-nginx cluster IP" -m tcp --dport 80 -j KUBE-SVC-K2WYTW5CBKHCXKSG"#,
        )
        .unwrap();
        assert_eq!(r.dst_host(), Some("10.1.59.153"));
        assert_eq!((r.proto.as_deref(), r.dport), (Some("tcp"), Some(80)));
        assert_eq!(
            r.comment.as_deref(),
            Some("test-svc-ns/linux0224-nginx cluster IP")
        );
        assert!(r.jumps_to("KUBE-SVC-K2WYTW5CBKHCXKSG"));

        let p = RuleSpec::parse("-m comment --comment \"a -> 10.2.0.42:80\" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-X").unwrap();
        assert!((p.probability.unwrap() - 1.0 / 3.0).abs() < 1e-6);

        let d = RuleSpec::parse(
            "-p tcp -m comment --comment x -m tcp -j DNAT --to-destination 10.2.0.42:80",
        )
        .unwrap();
        assert_eq!(d.to_destination.as_deref(), Some("10.2.0.42:80"));

        let n = RuleSpec::parse("! -s 10.2.0.0/16 -d 10.1.0.10/32 -j KUBE-MARK-MASQ").unwrap();
        assert!(n.src.unwrap().negated && !n.dst.unwrap().negated);

        let m = RuleSpec::parse("-s 10.2.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully").unwrap();
        assert_eq!(m.target.as_deref(), Some("MASQUERADE"));
        assert!(m.dst.unwrap().negated);

        let mark = RuleSpec::parse("-m mark ! --mark 0x4000/0x4000 -j RETURN").unwrap();
        assert!(mark.mark.unwrap().negated);

        let mp = RuleSpec::parse(r#"-p tcp -m comment --comment "dnat name: \"cbr0\" id: \"abc\"" -m multiport --dports 80 -j CNI-DN-1"#).unwrap();
        assert_eq!(mp.dports, [80]);
        assert_eq!(
            mp.comment.as_deref(),
            Some("dnat name: \"cbr0\" id: \"abc\"")
        );
    }

    #[test]
    fn bad_specs_are_errors_not_panics() {
        assert!(RuleSpec::parse("-j").is_err());
        assert!(RuleSpec::parse("-p tcp --dport http").is_err());
        assert!(RuleSpec::parse("-m comment --comment \"unterminated").is_err());
        assert!(RuleSpec::parse("stray").is_err());
        for junk in ["", "!", "! !", "--x", "-m", "-- --"] {
            let _ = RuleSpec::parse(junk);
        }
    }
}
