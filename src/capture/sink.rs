//! Where captured or read frames go: one line (or JSON object) per frame,
//! DNS queries without an answer flagged as they expire, and, for
//! `--group`, every frame fed to the correlator. Shared by live capture and
//! `--read` of files that are printed as JSON.

use std::io::Write;

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
    out: std::io::BufWriter<anstream::AutoStream<std::io::Stdout>>,
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
            out: std::io::BufWriter::with_capacity(1 << 16, anstream::stdout()),
            flush_each: std::io::IsTerminal::is_terminal(&std::io::stdout()),
            flushed: std::time::Instant::now(),
            correlator: Correlator::default(),
            dns: DnsWatch::new(dns_timeout),
        }
    }

    /// One frame seen on `iface` (of link type `link`), `at` seconds into
    /// the capture.
    pub fn frame(&mut self, iface: &str, link: Link, at: f64, len: u32, data: &[u8]) {
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
        if self.flush_each || self.flushed.elapsed() >= std::time::Duration::from_millis(100) {
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
