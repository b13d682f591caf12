//! Where captured or read frames go: one line (or JSON object) per frame,
//! DNS queries without an answer flagged as they expire, and, for
//! `--group`, every frame fed to the correlator. Shared by live capture and
//! `--read` of files that are printed as JSON.

use std::io::Write;
use std::time::Duration;

use super::correlate::{self, Correlator, Group};
use super::dns_watch::{DnsWatch, Unanswered};
use super::link::Link;

/// The state of one capture's output.
pub struct Sink<'a> {
    json: bool,
    group: bool,
    vxlan_ports: &'a [u16],
    /// Buffered: at tens of thousands of frames a second, a write per line
    /// was what made the reader fall behind the capture.
    /// Plain stdout: the lines carry no styling for anstream to strip (it
    /// read every byte again).
    out: std::io::BufWriter<std::io::Stdout>,
    /// The line being written (reused: no allocation per frame).
    line: Vec<u8>,
    /// On a terminal each line is shown as it comes; into a pipe or file
    /// they go in blocks, flushed whenever the capture is idle (as tcpdump
    /// does without -l).
    flush_each: bool,
    /// When the output was last flushed: a line never waits more than
    /// 100 ms, however slow the trickle.
    flushed: std::time::Instant,
    pub correlator: Correlator,
    pub dns: DnsWatch,
}

impl<'a> Sink<'a> {
    pub fn new(json: bool, group: bool, vxlan_ports: &'a [u16], dns_timeout: f64) -> Self {
        Sink {
            json,
            group,
            vxlan_ports,
            out: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()),
            line: Vec::with_capacity(256),
            flush_each: std::io::IsTerminal::is_terminal(&std::io::stdout()),
            flushed: std::time::Instant::now(),
            correlator: Correlator::default(),
            dns: DnsWatch::new(dns_timeout),
        }
    }

    /// One frame seen on `iface` (of link type `link`), `at` seconds into
    /// the capture.
    pub fn frame(&mut self, iface: &str, link: Link, at: f64, len: u32, data: &[u8]) {
        if !self.json && !self.group {
            // The fast path `--read` takes: the view's allocation-free line
            // where it fits, the full decoder (handed back, for DNS) where not.
            self.line.clear();
            write_prefix(&mut self.line, Duration::from_secs_f64(at.max(0.0)), iface);
            let decoded =
                super::view::write_line_link(data, link, self.vxlan_ports, &mut self.line);
            self.line.push(b'\n');
            let _ = self.out.write_all(&self.line);
            if let Some(d) = decoded {
                for q in self.dns.observe(iface, at, &d) {
                    self.flag(&q);
                }
            }
            self.flush_if_due();
            return;
        }
        let d = super::decode::decode_link(data, link, self.vxlan_ports);
        let _ = if self.json {
            writeln!(
                self.out,
                "{}",
                serde_json::json!({"iface": iface, "at": at, "len": len, "frame": d})
            )
        } else {
            writeln!(self.out, "{at:>10.6} {iface:<10} {}", d.line())
        };
        for q in self.dns.observe(iface, at, &d) {
            self.flag(&q);
        }
        if self.group {
            self.correlator.push_frame(iface, at, &d);
        }
        self.flush_if_due();
    }

    /// Flushes on a terminal, or when a line has waited 100 ms.
    fn flush_if_due(&mut self) {
        if self.flush_each || self.flushed.elapsed() >= Duration::from_millis(100) {
            self.flush();
        }
    }

    /// Writes out what is buffered (the capture calls it when idle).
    pub fn flush(&mut self) {
        let _ = self.out.flush();
        self.flushed = std::time::Instant::now();
    }

    /// A DNS query that got no answer.
    pub fn flag(&mut self, q: &Unanswered) {
        let _ = if self.json {
            writeln!(self.out, "{}", serde_json::json!({ "dns_unanswered": q }))
        } else {
            writeln!(self.out, "! {}", q.line())
        };
    }

    /// At the end (`end` seconds into a live capture): the queries still
    /// waiting, then the groups (`groups` when the caller correlated on its
    /// own, else this sink's).
    pub fn finish(mut self, groups: Option<Vec<Group>>, end: Option<f64>) {
        let dns = std::mem::replace(&mut self.dns, DnsWatch::new(0.0));
        for q in dns.finish(end) {
            self.flag(&q);
        }
        if !self.group {
            self.flush();
            return;
        }
        let correlator = std::mem::take(&mut self.correlator);
        let groups = groups.unwrap_or_else(|| correlator.groups());
        if !self.json && !groups.is_empty() {
            let _ = writeln!(self.out, "\npackets seen on more than one interface:");
        }
        for g in &groups {
            let _ = if self.json {
                writeln!(self.out, "{}", serde_json::json!({ "group": g }))
            } else {
                writeln!(self.out, "  {}", correlate::group_line(g))
            };
        }
        self.flush();
    }
}

/// A frame's line up to its decoded part, as `capture` prints it: seconds
/// since the start with six decimals, right-aligned to 10, then the
/// interface left-aligned to 10 (`  1.000250 cni0       `).
pub(super) fn write_prefix(out: &mut Vec<u8>, at: Duration, iface: &str) {
    let micros = (at.as_nanos() + 500) / 1000;
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    let mut b = itoa::Buffer::new();
    let s = b.format(secs);
    for _ in (s.len() + 7)..10 {
        out.push(b' ');
    }
    out.extend_from_slice(s.as_bytes());
    out.push(b'.');
    let mut b2 = itoa::Buffer::new();
    let f = b2.format(frac);
    for _ in f.len()..6 {
        out.push(b'0');
    }
    out.extend_from_slice(f.as_bytes());
    out.push(b' ');
    out.extend_from_slice(iface.as_bytes());
    for _ in iface.len()..10 {
        out.push(b' ');
    }
    out.push(b' ');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_matches_the_formatted_one() {
        for (nanos, iface) in [
            (0u64, "eth0"),
            (1_234_567_890, "flannel.1"),
            (999_999_600, "cni0"),
            (12_345_000_000_000, "k8s-node-12/eth0"),
        ] {
            let at = Duration::from_nanos(nanos);
            let mut out = Vec::new();
            write_prefix(&mut out, at, iface);
            let want = format!("{:>10.6} {iface:<10} ", at.as_secs_f64());
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
