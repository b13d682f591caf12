//! `knetdoctor capture`: libpcap on several interfaces (and nodes) at once,
//! or a pcap/pcapng file read back, printed like `tcpdump -nn`.

use std::io::Write as _;
use std::time::Instant;

use knetdoctor::access;
use knetdoctor::capture::link::Link;
use knetdoctor::error::Result;

use crate::cli::{CaptureArgs, LineOutput};

/// `capture`: live lines like `tcpdump -nn`, the interface first and the
/// VXLAN inner packet decoded; groups with `--group`; counters at the end.
pub fn run(a: CaptureArgs) -> Result<u8> {
    use knetdoctor::capture::{file, live, sink};
    let mut sink = sink::Sink::new(
        a.output == LineOutput::Json,
        a.group,
        &a.vxlan_ports,
        a.dns_timeout.as_secs_f64(),
    );
    let mut stats = Vec::new();
    let mut groups = None;
    let mut ended = None;
    if let Some(path) = &a.read {
        if a.output == LineOutput::Text {
            // The fast path: borrowed frames, allocation-free lines.
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            file::print_lines(path, &a.vxlan_ports, &mut sink.dns, &mut out)?;
            let _ = out.flush();
            if a.group {
                groups = Some(file::correlate(path, &a.vxlan_ports)?.1);
            }
        } else {
            let mut first = None;
            file::for_each(path, |iface, link, ts, len, data| {
                let at = ts.saturating_sub(*first.get_or_insert(ts)).as_secs_f64();
                sink.frame(iface, link, at, len, data);
            })?;
        }
    } else if a.agents.source().is_some() {
        let (s, e) = through_agents(&a, &mut sink)?;
        stats = s;
        ended = Some(e);
    } else {
        let mut interfaces = Vec::new();
        let mut places = Vec::new();
        if a.nodes.len() > 1 {
            if a.netns.is_some() {
                return Err(knetdoctor::Error::usage(
                    "--netns takes one namespace, not several nodes",
                    Some("name one node, or leave out --netns".to_string()),
                ));
            }
            for n in &a.nodes {
                let netns = access::resolve(Some(n), None, &a.lab)?.netns()?;
                interfaces.extend(live::Iface::in_netns(&netns, &a.interfaces, Some(n)));
                places.push(netns.display_name());
            }
        } else {
            let netns = access::resolve(
                a.nodes.first().map(String::as_str),
                a.netns.as_deref(),
                &a.lab,
            )?
            .netns()?;
            interfaces = live::Iface::in_netns(&netns, &a.interfaces, None);
            places.push(netns.display_name());
        }
        let labels: Vec<String> = interfaces.iter().map(|i| i.label.clone()).collect();
        let filter = match names_filter(&a)? {
            Some(names) => Some(match &a.filter {
                Some(f) => format!("({f}) and ({names})"),
                None => names,
            }),
            None => a.filter.clone(),
        };
        let spec = live::Spec {
            interfaces,
            filter,
            snaplen: a.snaplen,
            queue: 65536,
        };
        // The interfaces and the filter first: a typo must not cost the
        // file an earlier capture was written to.
        let running = live::start(&spec)?;
        let mut out = a
            .write
            .as_deref()
            .map(|p| file::PcapNgOut::create(p, &labels, a.snaplen as u32))
            .transpose()?;
        let limit = a.duration.or(if a.count.is_none() {
            Some(std::time::Duration::from_secs(10))
        } else {
            None
        });
        let _ = writeln!(
            anstream::stderr(),
            "capturing on {} in {}{}",
            a.interfaces.join(","),
            places.join(", "),
            limit
                .map(|d| format!(" for {:.1}s", d.as_secs_f64()))
                .unwrap_or_default()
        );
        let started = Instant::now();
        let mut seen = 0usize;
        'reading: while a.count.is_none_or(|c| seen < c)
            && limit.is_none_or(|l| started.elapsed() < l)
        {
            let batch = match running.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(b) => b,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    sink.flush();
                    continue;
                }
                // Every interface's thread ended (its interface went away).
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            for frame in batch {
                if a.count.is_some_and(|c| seen >= c) {
                    break 'reading;
                }
                seen += 1;
                if let Some(w) = out.as_mut() {
                    w.write(&frame.iface, frame.ts, frame.len, &frame.data)?;
                }
                // The nodes' interfaces are Ethernet (veths, cni0, flannel.1,
                // eth0).
                sink.frame(
                    &frame.iface,
                    Link::Ethernet,
                    frame.at.as_secs_f64(),
                    frame.len,
                    &frame.data,
                );
            }
        }
        ended = Some(started.elapsed().as_secs_f64());
        stats = running.finish();
        if let Some(w) = out {
            w.finish()?;
        }
    }
    sink.finish(groups, ended);
    for s in &stats {
        let _ = writeln!(
            anstream::stderr(),
            "{}: {} received, {} dropped by the kernel, {} by the interface, {} given up when the capture stopped",
            s.iface,
            s.received,
            s.kernel_dropped,
            s.if_dropped,
            s.queue_dropped
        );
    }
    Ok(0)
}

/// `capture NODE[,NODE...] --kubeconfig F`: each node's agent captures
/// (at once, bounded by -c and --duration), the frames come back as pcapng
/// and are printed as a local capture prints them, in time order across
/// nodes. Returns the interfaces' counters and how long the capture ran.
fn through_agents(
    a: &CaptureArgs,
    sink: &mut knetdoctor::capture::sink::Sink,
) -> Result<(Vec<knetdoctor::capture::live::IfaceStats>, f64)> {
    use knetdoctor::agent::api::CaptureSpec;
    use knetdoctor::capture::file;
    if a.nodes.is_empty() {
        return Err(knetdoctor::Error::usage(
            "a capture through the agents names its node(s)",
            Some("`knetdoctor capture k8s-node-12 --kubeconfig FILE -c 100`".to_string()),
        ));
    }
    if a.pod.is_some() || a.svc.is_some() {
        return Err(knetdoctor::Error::usage(
            "--pod and --svc name a lab's objects; through the agents give the filter (-f)",
            None,
        ));
    }
    let target = super::through_agents(&a.lab, &a.agents)?;
    let nodes = a
        .nodes
        .iter()
        .map(|n| target.node(n))
        .collect::<Result<Vec<_>>>()?;
    let Some(agents) = nodes
        .first()
        .and_then(|n| n.agent())
        .map(|n| n.agents().clone())
    else {
        return Err(knetdoctor::Error::usage(
            format!(
                "{} is this machine: capture on it without --kubeconfig",
                a.nodes[0]
            ),
            None,
        ));
    };
    let seconds = a
        .duration
        .map(|d| d.as_secs_f64().ceil() as u32)
        .unwrap_or(10);
    let spec = CaptureSpec {
        interfaces: a.interfaces.clone(),
        count: a
            .count
            .map_or(knetdoctor::capture::remote::MAX_FRAMES, |c| {
                c.min(knetdoctor::capture::remote::MAX_FRAMES as usize) as u32
            }),
        seconds,
        filter: a.filter.clone(),
        snaplen: a.snaplen,
    };
    let _ = writeln!(
        anstream::stderr(),
        "capturing on {} on {} through their agents for up to {seconds}s",
        a.interfaces.join(","),
        a.nodes.join(", ")
    );
    let several = a.nodes.len() > 1;
    let label = |node: &str, iface: &str| {
        if several {
            format!("{node}/{iface}")
        } else {
            iface.to_string()
        }
    };
    let mut frames: Vec<(String, Link, std::time::Duration, u32, Vec<u8>)> = Vec::new();
    let mut stats = Vec::new();
    let mut ended: f64 = 0.0;
    let waiting = super::progress::Spinner::start("waiting for the agents' captures");
    let answers = agents.capture(&a.nodes, &spec)?;
    drop(waiting);
    for (node, captured) in answers {
        let c = captured?;
        let origin = std::path::PathBuf::from(format!("the capture of {node}'s agent"));
        file::for_each_bytes(&c.pcapng, &origin, |iface, link, ts, len, data| {
            frames.push((label(&node, iface), link, ts, len, data.to_vec()));
        })?;
        stats.extend(c.stats.into_iter().map(|mut s| {
            s.iface = label(&node, &s.iface);
            s
        }));
        ended = ended.max(c.seconds);
    }
    frames.sort_by_key(|f| f.2);
    if let Some(c) = a.count {
        frames.truncate(c);
    }
    if let Some(path) = &a.write {
        let mut labels: Vec<String> = frames.iter().map(|f| f.0.clone()).collect();
        labels.sort();
        labels.dedup();
        let mut out = file::PcapNgOut::create(path, &labels, a.snaplen as u32)?;
        for (iface, _, ts, len, data) in &frames {
            out.write(iface, *ts, *len, data)?;
        }
        out.finish()?;
    }
    let first = frames.first().map(|f| f.2).unwrap_or_default();
    for (iface, link, ts, len, data) in &frames {
        sink.frame(
            iface,
            *link,
            ts.saturating_sub(first).as_secs_f64(),
            *len,
            data,
        );
    }
    Ok((stats, ended))
}

/// The BPF filter `--pod`/`--svc` stand for, from the lab's cluster objects.
fn names_filter(a: &CaptureArgs) -> Result<Option<String>> {
    if a.pod.is_none() && a.svc.is_none() {
        return Ok(None);
    }
    let cluster = access::Source {
        lab: a.lab.clone(),
        ..Default::default()
    }
    .target()?
    .cluster()?;
    let mut ips: Vec<std::net::Ipv4Addr> = Vec::new();
    if let Some(p) = &a.pod {
        match knetdoctor::trace::resolve::resolve(&cluster, p, "default")? {
            knetdoctor::trace::resolve::End::Pod {
                ip: std::net::IpAddr::V4(ip),
                ..
            } => ips.push(ip),
            other => {
                return Err(knetdoctor::Error::usage(
                    format!("--pod {p} names {}, not a pod", other.label()),
                    None,
                ));
            }
        }
    }
    if let Some(svc) = &a.svc {
        let (ns, name) = svc.split_once('/').unwrap_or(("default", svc));
        let s = cluster.service(ns, name).ok_or_else(|| {
            knetdoctor::Error::usage(format!("no service {svc}"), Some("use ns/name".to_string()))
        })?;
        ips.extend(
            s.spec
                .as_ref()
                .and_then(|sp| sp.cluster_ip.as_deref())
                .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok()),
        );
        for sp in s.spec.iter().flat_map(|sp| sp.ports.iter().flatten()) {
            for ep in cluster.ready_endpoints(
                ns,
                name,
                sp.name.as_deref().unwrap_or(""),
                sp.protocol.as_deref().unwrap_or("TCP"),
            ) {
                if let Some(ip) = ep.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok()) {
                    ips.push(ip);
                }
            }
        }
    }
    ips.sort();
    ips.dedup();
    Ok(Some(knetdoctor::capture::filter::for_addresses(
        &ips,
        &a.vxlan_ports,
    )))
}
