//! Netfilter tracing of the probe: a table of our own in each node on the
//! path marks the probe's packets with `meta nftrace set 1` at the first
//! hooks, `nft monitor trace` reports every chain and rule they pass, and
//! the table is deleted afterwards (also when the probe fails part way or
//! is stopped by a signal; tables a `kill -9` left behind are swept on the
//! next run).
//!
//! nftrace sees nftables rules, which is what iptables-nft (the default
//! since Debian 11) writes; rules loaded with iptables-legacy are invisible
//! to it, so such a node is reported as not traceable rather than traced
//! wrongly.

use crate::trace::Proto;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::dataplane::Netns;
use crate::error::{Error, Result};

/// The prefix of the tables the probe adds; `<prefix><pid>_<tag>`.
pub const TABLE_PREFIX: &str = "knetdoctor_probe_";

/// One step of a packet through netfilter, from `nft monitor trace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RuleHit {
    /// True for the probe's reply.
    pub reply: bool,
    pub table: String,
    pub chain: String,
    /// The rule as nft prints it, or `policy`.
    pub rule: String,
    /// accept, drop, jump X, return, continue, ...
    pub verdict: String,
}

impl RuleHit {
    pub fn line(&self) -> String {
        format!(
            "{} {} {} (verdict {})",
            self.table, self.chain, self.rule, self.verdict
        )
    }
}

/// The nft rules that mark the probe and its reply: request by source
/// port or echo id, reply by destination port or echo id, first packets only.
pub fn mark_rules(proto: Proto, tag: u16) -> (String, String) {
    match proto {
        Proto::Icmp => (
            format!("icmp type echo-request icmp id {tag}"),
            format!("icmp type echo-reply icmp id {tag}"),
        ),
        Proto::Udp => (format!("udp sport {tag}"), format!("udp dport {tag}")),
        Proto::Tcp => (
            format!("tcp sport {tag} tcp flags & (syn|ack) == syn"),
            format!("tcp dport {tag} tcp flags & (syn|rst) != 0"),
        ),
    }
}

/// Parses `nft monitor trace` lines into rule hits, leaving out our own
/// marking table. Which way a trace id goes is read from its `packet:` line.
pub fn parse(lines: &[String], proto: Proto, tag: u16) -> Vec<RuleHit> {
    let request_marker = match proto {
        Proto::Icmp => "icmp type echo-request".to_string(),
        Proto::Udp => format!("udp sport {tag} "),
        Proto::Tcp => format!("tcp sport {tag} "),
    };
    let mut direction: std::collections::HashMap<String, bool> = Default::default();
    let mut hits = Vec::new();
    for line in lines {
        let Some(rest) = line.strip_prefix("trace id ") else {
            continue;
        };
        let mut words = rest.splitn(5, ' ');
        let (Some(id), Some(_family), Some(table), Some(chain), Some(what)) = (
            words.next(),
            words.next(),
            words.next(),
            words.next(),
            words.next(),
        ) else {
            continue;
        };
        if let Some(pkt) = what.strip_prefix("packet: ") {
            direction.insert(
                id.to_string(),
                !(pkt.to_string() + " ").contains(&request_marker),
            );
            continue;
        }
        if table.starts_with(TABLE_PREFIX) {
            continue;
        }
        let reply = direction.get(id).copied().unwrap_or(false);
        let (rule, verdict) = if let Some(r) = what.strip_prefix("rule ") {
            match r.rsplit_once(" (verdict ") {
                Some((rule, v)) => (rule.trim().to_string(), v.trim_end_matches(')').to_string()),
                None => (r.trim().to_string(), String::new()),
            }
        } else if let Some(v) = what.strip_prefix("policy ") {
            ("policy".to_string(), v.trim().to_string())
        } else if let Some(v) = what.strip_prefix("verdict ") {
            ("end of chain".to_string(), v.trim().to_string())
        } else {
            continue;
        };
        hits.push(RuleHit {
            reply,
            table: table.to_string(),
            chain: chain.to_string(),
            rule,
            verdict,
        });
    }
    hits
}

/// A running trace on one node; [`Tracer::finish`] stops it and removes
/// the table (dropping it without finishing removes the table too).
pub struct Tracer {
    netns: Netns,
    table: String,
    monitor: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

/// Why a node is not traced.
pub fn unavailable(netns: &Netns) -> Option<String> {
    match netns.exec("nft", &["list", "tables"], None) {
        Err(e) => Some(e.to_string()),
        Ok(tables) => (!tables.contains("table ip filter") && !tables.contains("table ip nat"))
            .then(|| {
                "its iptables rules are not in nftables (iptables-legacy): nftrace cannot see them"
                    .to_string()
            }),
    }
}

/// Probe tables in place now: what the signal handler deletes when the
/// process is told to stop (Ctrl-C, `kill`) before a tracer's own cleanup
/// runs.
static IN_PLACE: Mutex<Vec<(Netns, String)>> = Mutex::new(Vec::new());

fn in_place() -> std::sync::MutexGuard<'static, Vec<(Netns, String)>> {
    IN_PLACE.lock().unwrap_or_else(|e| e.into_inner())
}

fn delete_table(netns: &Netns, table: &str) {
    let _ = netns.feed("nft", &["-f", "-"], &format!("delete table ip {table}\n"));
}

/// Set by a process that handles the signals itself (the agent, which
/// withdraws from the cluster before it ends) and calls [`remove_in_place`].
static SIGNALS_ELSEWHERE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Leaves SIGINT and SIGTERM to the caller, who removes the tables in
/// place with [`remove_in_place`] when it ends.
pub fn signals_handled_elsewhere() {
    SIGNALS_ELSEWHERE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Deletes every probe table this process has in place.
pub fn remove_in_place() {
    for (netns, table) in in_place().drain(..) {
        delete_table(&netns, &table);
    }
}

/// Once per process: SIGINT, SIGTERM, SIGHUP and SIGQUIT delete the probe
/// tables in place, then end the process as the signal would have.
fn clean_up_on_signals() {
    if SIGNALS_ELSEWHERE.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
        let Ok(mut signals) =
            signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
        else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                remove_in_place();
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                std::process::exit(128 + sig);
            }
        });
    });
}

impl Tracer {
    /// Adds the marking table in `netns` and starts `nft monitor trace`.
    pub fn start(netns: &Netns, proto: Proto, tag: u16) -> Result<Tracer> {
        clean_up_on_signals();
        sweep_stale(netns);
        let table = format!("{TABLE_PREFIX}{}_{tag}", std::process::id());
        let (req, rep) = mark_rules(proto, tag);
        let ruleset = format!(
            "table ip {table} {{\n\
             chain pre {{\n type filter hook prerouting priority -350;\n {req} meta nftrace set 1\n {rep} meta nftrace set 1\n}}\n\
             chain out {{\n type filter hook output priority -350;\n {req} meta nftrace set 1\n {rep} meta nftrace set 1\n}}\n}}\n"
        );
        netns.feed("nft", &["-f", "-"], &ruleset)?;
        in_place().push((netns.clone(), table.clone()));
        let mut tracer = Tracer {
            netns: netns.clone(),
            table,
            monitor: None,
            lines: Arc::default(),
            reader: None,
        };
        let mut child = netns
            .command("nft")?
            .args(["monitor", "trace"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::env(format!("cannot run nft monitor trace: {e}"), None))?;
        let stdout = child.stdout.take();
        tracer.monitor = Some(child);
        let lines = tracer.lines.clone();
        tracer.reader = stdout.map(|out| {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                    if let Ok(mut v) = lines.lock() {
                        v.push(line);
                    }
                }
            })
        });
        Ok(tracer)
    }

    /// Stops the monitor, removes the table, returns the trace lines.
    pub fn finish(mut self) -> Vec<String> {
        self.stop();
        self.lines.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.monitor.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        delete_table(&self.netns, &self.table);
        in_place().retain(|(_, t)| *t != self.table);
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if self.monitor.is_some() {
            self.stop();
        }
    }
}

/// Deletes probe tables whose knetdoctor process is gone (a probe killed
/// before it could clean up).
fn sweep_stale(netns: &Netns) {
    let Ok(out) = netns.exec("nft", &["list", "tables"], None) else {
        return;
    };
    for line in out.lines() {
        let Some(name) = line.strip_prefix("table ip ") else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(TABLE_PREFIX)
            .and_then(|r| r.split('_').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            delete_table(netns, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as `nft monitor trace` printed them for a SYN to a Service in the lab.
    const LINES: &str = r#"trace id cacff152 ip knetdoctor_probe_1_41235 pre packet: iif "cni0" ip saddr 10.2.2.50 ip daddr 10.1.59.153 tcp sport 41235 tcp dport 80 tcp flags == syn
trace id cacff152 ip knetdoctor_probe_1_41235 pre rule tcp sport 41235 meta nftrace set 1 (verdict continue)
trace id cacff152 ip nat PREROUTING packet: iif "cni0" ip saddr 10.2.2.50 ip daddr 10.1.59.153 tcp sport 41235 tcp dport 80 tcp flags == syn
trace id cacff152 ip nat PREROUTING rule  counter packets 3 bytes 210 jump KUBE-SERVICES (verdict jump KUBE-SERVICES)
trace id cacff152 ip nat KUBE-SEP-4GU5JBXAFUEZ43JM rule meta l4proto tcp   counter packets 1 bytes 60 dnat to 10.2.1.117:80 (verdict accept)
trace id 38e8c0ee ip filter FORWARD packet: iif "cni0" oif "flannel.1" ip saddr 10.2.2.50 ip daddr 10.2.1.117 tcp sport 41235 tcp dport 80 tcp flags == syn
trace id 38e8c0ee ip filter FORWARD policy drop
trace id 22f0beca ip filter FORWARD packet: iif "flannel.1" oif "cni0" ip saddr 10.2.1.117 ip daddr 10.2.2.50 tcp sport 80 tcp dport 41235 tcp flags == 0x12
trace id 22f0beca ip filter KUBE-FORWARD rule  ct state related,established counter packets 5 bytes 268 accept (verdict accept)"#;

    #[test]
    fn hits_leave_out_our_table_and_know_their_direction() {
        let lines: Vec<String> = LINES.lines().map(str::to_string).collect();
        let hits = parse(&lines, Proto::Tcp, 41235);
        assert_eq!(hits.len(), 4, "{hits:#?}");
        assert_eq!(
            hits[1].line(),
            "nat KUBE-SEP-4GU5JBXAFUEZ43JM meta l4proto tcp   counter packets 1 bytes 60 dnat to 10.2.1.117:80 (verdict accept)"
        );
        assert_eq!(
            (
                hits[2].chain.as_str(),
                hits[2].rule.as_str(),
                hits[2].verdict.as_str(),
                hits[2].reply
            ),
            ("FORWARD", "policy", "drop", false)
        );
        assert!(hits[3].reply);
        assert_eq!(hits[3].verdict, "accept");
    }

    #[test]
    fn marks_first_packets_of_each_protocol() {
        assert_eq!(
            mark_rules(Proto::Icmp, 7).0,
            "icmp type echo-request icmp id 7"
        );
        assert_eq!(mark_rules(Proto::Udp, 40001).1, "udp dport 40001");
        assert!(mark_rules(Proto::Tcp, 40001).0.contains("== syn"));
    }
}
