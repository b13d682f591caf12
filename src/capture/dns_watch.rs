//! DNS queries that got no answer: every query seen is remembered by the
//! client address, port and DNS id (the same query crosses cni0, flannel.1
//! and eth0, and its answer may come from the kube-dns VIP or from a CoreDNS
//! pod depending on where it is seen, so the server address is not part of
//! the key); an answer to the client settles it; a query still waiting
//! after the timeout is flagged.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use super::decode::{App, Frame, Net, Transport};

/// A query that got no answer in time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unanswered {
    pub client: String,
    pub server: String,
    pub id: u16,
    pub name: String,
    pub qtype: String,
    /// Seconds since the capture started, when it was first seen.
    pub at: f64,
    pub iface: String,
    /// How long it waited: the timeout, or until the capture ended.
    pub waited: f64,
}

impl Unanswered {
    pub fn line(&self) -> String {
        format!(
            "DNS query {} {}? {} from {} to {} (first seen on {} at {:.6}): no answer within {:.1}s",
            self.id,
            self.qtype,
            self.name,
            self.client,
            self.server,
            self.iface,
            self.at,
            self.waited
        )
    }
}

/// Watches queries and answers as frames arrive.
pub struct DnsWatch {
    timeout: f64,
    pending: HashMap<(IpAddr, u16, u16), Unanswered>,
    now: f64,
}

impl DnsWatch {
    pub fn new(timeout_secs: f64) -> Self {
        DnsWatch {
            timeout: timeout_secs,
            pending: HashMap::new(),
            now: 0.0,
        }
    }

    /// Takes in one frame seen on `iface` at `at`; returns the queries whose
    /// time ran out by then.
    pub fn observe(&mut self, iface: &str, at: f64, f: &Frame) -> Vec<Unanswered> {
        self.now = self.now.max(at);
        let inner = f.vxlan.as_ref().map(|x| &*x.inner).unwrap_or(f);
        if let (
            Some(Net::Ipv4 { src, dst, .. } | Net::Ipv6 { src, dst, .. }),
            Some(Transport::Udp {
                src_port, dst_port, ..
            }),
            Some(App::Dns {
                id,
                response,
                name,
                qtype,
                ..
            }),
        ) = (&inner.net, &inner.transport, &inner.app)
        {
            if *response {
                self.pending.remove(&(*dst, *dst_port, *id));
            } else {
                self.pending
                    .entry((*src, *src_port, *id))
                    .or_insert_with(|| Unanswered {
                        client: format!("{src}:{src_port}"),
                        server: format!("{dst}:{dst_port}"),
                        id: *id,
                        name: name.clone(),
                        qtype: qtype.clone(),
                        at,
                        iface: iface.to_string(),
                        waited: 0.0,
                    });
            }
        }
        self.expired(false)
    }

    /// At the end of the capture (`end` seconds in, when known): every
    /// query still waiting.
    pub fn finish(mut self, end: Option<f64>) -> Vec<Unanswered> {
        if let Some(end) = end {
            self.now = self.now.max(end);
        }
        self.expired(true)
    }

    fn expired(&mut self, all: bool) -> Vec<Unanswered> {
        let (now, timeout) = (self.now, self.timeout);
        let keys: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, q)| all || now - q.at > timeout)
            .map(|(k, _)| *k)
            .collect();
        let mut out: Vec<Unanswered> = keys
            .into_iter()
            .filter_map(|k| self.pending.remove(&k))
            .map(|mut q| {
                q.waited = if all { (now - q.at).max(0.0) } else { timeout };
                q
            })
            .collect();
        out.sort_by(|a, b| a.at.total_cmp(&b.at));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::decode::{VXLAN_PORTS, decode};
    use crate::capture::test_frames::in_vxlan;
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};

    fn dns(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, id: u16, response: bool) -> Vec<u8> {
        let mut m = Message::new(
            id,
            if response {
                MessageType::Response
            } else {
                MessageType::Query
            },
            OpCode::Query,
        );
        m.add_query(Query::query(
            Name::from_ascii("kubernetes.default.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        let payload = m.to_vec().unwrap();
        let mut out = Vec::new();
        etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut out, &payload)
            .unwrap();
        out
    }

    #[test]
    fn an_answered_query_is_settled_and_a_lost_one_is_flagged_once() {
        let pod = [10, 2, 2, 50];
        let mut w = DnsWatch::new(2.0);
        // Query 1 on cni0 to the VIP, again inside VXLAN to the CoreDNS pod;
        // its answer comes back from the pod inside VXLAN.
        let q1 = dns(pod, 40000, [10, 1, 0, 10], 53, 1, false);
        assert!(
            w.observe("cni0", 0.0, &decode(&q1, &VXLAN_PORTS))
                .is_empty()
        );
        let q1_wrapped = in_vxlan(&dns(pod, 40000, [10, 2, 1, 2], 53, 1, false), 1);
        assert!(
            w.observe("eth0", 0.001, &decode(&q1_wrapped, &VXLAN_PORTS))
                .is_empty()
        );
        let a1 = in_vxlan(&dns([10, 2, 1, 2], 53, pod, 40000, 1, true), 1);
        assert!(
            w.observe("eth0", 0.002, &decode(&a1, &VXLAN_PORTS))
                .is_empty()
        );
        // Query 2 never answered.
        let q2 = dns(pod, 40001, [10, 1, 0, 10], 53, 2, false);
        assert!(
            w.observe("cni0", 0.5, &decode(&q2, &VXLAN_PORTS))
                .is_empty()
        );
        let later = dns(pod, 40002, [10, 1, 0, 10], 53, 3, false);
        let flagged = w.observe("cni0", 2.6, &decode(&later, &VXLAN_PORTS));
        assert_eq!(flagged.len(), 1, "{flagged:?}");
        assert_eq!(
            (flagged[0].id, flagged[0].client.as_str()),
            (2, "10.2.2.50:40001")
        );
        assert!(
            flagged[0]
                .line()
                .contains("A? kubernetes.default.svc.cluster.local.")
        );
        // At the end, query 3 is still waiting; query 2 is not flagged twice.
        let rest = w.finish(Some(3.0));
        assert_eq!(rest.iter().map(|q| q.id).collect::<Vec<_>>(), [3]);
        assert!((rest[0].waited - 0.4).abs() < 1e-9);
    }
}
