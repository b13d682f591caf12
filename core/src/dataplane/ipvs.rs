//! IPVS as data: virtual and real servers (from `ipvsadm -Sn` or `-Ln`)
//! and ipsets (from `ipset save`), the state kube-proxy's IPVS mode keeps.

use serde::{Deserialize, Serialize};

/// One real server behind a virtual server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RealServer {
    /// `IP:port`.
    pub addr: String,
    /// `masq`, `route` (DR), `tunnel`.
    pub forward: String,
    pub weight: i32,
}

/// One virtual server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualServer {
    /// `tcp`, `udp` or `sctp`.
    pub proto: String,
    /// `IP:port`.
    pub addr: String,
    pub scheduler: String,
    /// Persistence timeout (ClientIP affinity), in seconds.
    pub persistent: Option<u32>,
    pub reals: Vec<RealServer>,
}

/// One ipset with its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpSet {
    pub name: String,
    /// `hash:ip,port`, `bitmap:port`, ...
    pub kind: String,
    pub members: Vec<String>,
}

/// A parse error with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct ParseError {
    pub line: usize,
    pub what: String,
}

fn proto_of(flag: &str) -> Option<&'static str> {
    match flag {
        "-t" | "--tcp-service" => Some("tcp"),
        "-u" | "--udp-service" => Some("udp"),
        "--sctp-service" => Some("sctp"),
        _ => None,
    }
}

/// Parses `ipvsadm -Sn` (the rules in ipvsadm's own command syntax).
pub fn parse_save(text: &str) -> Result<Vec<VirtualServer>, ParseError> {
    let mut out: Vec<VirtualServer> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |what: String| ParseError { line: n + 1, what };
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.is_empty() {
            continue;
        }
        let arg = |flag: &str| {
            w.iter()
                .position(|x| *x == flag)
                .and_then(|i| w.get(i + 1))
                .map(|s| s.to_string())
        };
        let (proto, addr) = w
            .iter()
            .enumerate()
            .find_map(|(i, x)| Some((proto_of(x)?, w.get(i + 1)?.to_string())))
            .ok_or_else(|| err(format!("no -t/-u service address in {line:?}")))?;
        match w[0] {
            "-A" => out.push(VirtualServer {
                proto: proto.into(),
                addr,
                scheduler: arg("-s").unwrap_or_else(|| "wlc".into()),
                persistent: arg("-p")
                    .map(|p| p.parse().map_err(|_| err(format!("bad persistence {p:?}"))))
                    .transpose()?,
                reals: Vec::new(),
            }),
            "-a" => {
                let vs = out
                    .iter_mut()
                    .find(|v| v.proto == proto && v.addr == addr)
                    .ok_or_else(|| {
                        err(format!("real server for undeclared virtual server {addr}"))
                    })?;
                let forward = if w.contains(&"-m") {
                    "masq"
                } else if w.contains(&"-i") {
                    "tunnel"
                } else {
                    "route"
                };
                vs.reals.push(RealServer {
                    addr: arg("-r").ok_or_else(|| err("real server without -r".into()))?,
                    forward: forward.into(),
                    weight: arg("-w")
                        .map(|x| x.parse().map_err(|_| err(format!("bad weight {x:?}"))))
                        .transpose()?
                        .unwrap_or(1),
                });
            }
            other => return Err(err(format!("unexpected {other:?}"))),
        }
    }
    Ok(out)
}

/// Parses `ipvsadm -Ln` (the table people paste into tickets).
pub fn parse_list(text: &str) -> Result<Vec<VirtualServer>, ParseError> {
    let mut out: Vec<VirtualServer> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |what: String| ParseError { line: n + 1, what };
        let t = line.trim();
        if t.is_empty()
            || t.starts_with("IP Virtual Server")
            || t.starts_with("Prot ")
            || t.starts_with("-> RemoteAddress")
        {
            continue;
        }
        let w: Vec<&str> = t.split_whitespace().collect();
        if w[0] == "->" {
            let vs = out
                .last_mut()
                .ok_or_else(|| err("real server before any virtual server".into()))?;
            let (Some(addr), Some(fwd), Some(weight)) = (w.get(1), w.get(2), w.get(3)) else {
                return Err(err(format!("short real-server line {t:?}")));
            };
            vs.reals.push(RealServer {
                addr: addr.to_string(),
                forward: fwd.to_ascii_lowercase(),
                weight: weight
                    .parse()
                    .map_err(|_| err(format!("bad weight {weight:?}")))?,
            });
        } else {
            let (Some(proto), Some(addr), Some(sched)) = (w.first(), w.get(1), w.get(2)) else {
                return Err(err(format!("short virtual-server line {t:?}")));
            };
            let persistent = w
                .iter()
                .position(|x| *x == "persistent")
                .and_then(|i| w.get(i + 1))
                .and_then(|p| p.parse().ok());
            out.push(VirtualServer {
                proto: proto.to_ascii_lowercase(),
                addr: addr.to_string(),
                scheduler: sched.to_string(),
                persistent,
                reals: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// Parses `ipset save`.
pub fn parse_ipset_save(text: &str) -> Result<Vec<IpSet>, ParseError> {
    let mut out: Vec<IpSet> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |what: String| ParseError { line: n + 1, what };
        let w = shlex::split(line).ok_or_else(|| err("unbalanced quotes".into()))?;
        match w.first().map(String::as_str) {
            None => {}
            Some("create") => {
                let (Some(name), Some(kind)) = (w.get(1), w.get(2)) else {
                    return Err(err("create needs a name and a type".into()));
                };
                out.push(IpSet {
                    name: name.clone(),
                    kind: kind.clone(),
                    members: Vec::new(),
                });
            }
            Some("add") => {
                let (Some(name), Some(member)) = (w.get(1), w.get(2)) else {
                    return Err(err("add needs a set and a member".into()));
                };
                out.iter_mut()
                    .find(|s| &s.name == name)
                    .ok_or_else(|| err(format!("member of undeclared set {name}")))?
                    .members
                    .push(member.clone());
            }
            Some(other) => return Err(err(format!("unexpected {other:?}"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LN: &str = include_str!("../../../tests/fixtures/ipvs/seed-node-12.ipvsadm-Ln.txt");
    const SN: &str = include_str!("../../../tests/fixtures/ipvs/seed-node-12.ipvsadm-Sn.txt");
    const IPSET: &str = include_str!("../../../tests/fixtures/ipvs/seed-node-12.ipset-save.txt");

    #[test]
    fn list_and_save_formats_agree() {
        let a = parse_list(LN).unwrap();
        let b = parse_save(SN).unwrap();
        assert_eq!(a, b);
        let nginx = a.iter().find(|v| v.addr == "10.1.59.153:80").unwrap();
        assert_eq!(nginx.reals.len(), 3);
        assert_eq!(nginx.reals[0].forward, "masq");
        assert!(
            a.iter()
                .any(|v| v.proto == "udp" && v.addr == "10.1.0.10:53")
        );
    }

    #[test]
    fn persistence_is_read() {
        let l = parse_list("TCP  10.1.0.1:443 rr persistent 10800\n  -> 192.168.56.10:6443           Masq    1      0          0\n").unwrap();
        let s = parse_save(
            "-A -t 10.1.0.1:443 -s rr -p 10800\n-a -t 10.1.0.1:443 -r 192.168.56.10:6443 -m -w 1\n",
        )
        .unwrap();
        assert_eq!(l, s);
        assert_eq!(l[0].persistent, Some(10800));
    }

    #[test]
    fn real_ipset_save_output() {
        let sets = parse_ipset_save(IPSET).unwrap();
        let cip = sets.iter().find(|s| s.name == "KUBE-CLUSTER-IP").unwrap();
        assert_eq!(cip.kind, "hash:ip,port");
        assert!(cip.members.contains(&"10.1.0.10,udp:53".to_string()));
        assert_eq!(
            sets.iter()
                .find(|s| s.name == "KUBE-NODE-PORT-TCP")
                .unwrap()
                .members,
            ["30005"]
        );
    }

    #[test]
    fn malformed_input_names_the_line() {
        assert_eq!(
            parse_list("  -> 1.2.3.4:80 Masq 1 0 0\n").unwrap_err().line,
            1
        );
        assert_eq!(
            parse_save("-A -t 10.1.0.1:443 -s rr\n-a -t 10.9.9.9:1 -r 1.1.1.1:1 -m\n")
                .unwrap_err()
                .line,
            2
        );
        assert_eq!(
            parse_ipset_save("create A hash:ip\nadd B 1.2.3.4\n")
                .unwrap_err()
                .line,
            2
        );
        assert!(parse_list("TCP  10.1.0.1:443 rr\n  -> 1.2.3.4:80 Masq x 0 0\n").is_err());
        for cut in 0..LN.len() {
            let _ = parse_list(&LN[..cut]);
        }
        for cut in 0..SN.len() {
            let _ = parse_save(&SN[..cut]);
        }
    }
}
