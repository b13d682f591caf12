use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use knetdoctor::cli::{Cli, Command, InspectCommand, LabCommand, Output};
use knetdoctor::error::Result;
use knetdoctor::inspect;
use knetdoctor::lab::{self, Fault, LabParams, faults::Scope};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KNETDOCTOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("knetdoctor=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(anstream::stderr(), "error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn json(value: &impl serde::Serialize) {
    let _ = writeln!(
        anstream::stdout(),
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

fn out(text: &str) {
    let _ = write!(anstream::stdout(), "{text}");
}

fn run(cli: Cli) -> Result<u8> {
    let command = match cli.command {
        Some(c) => c,
        // `knetdoctor` alone opens the dashboard on the lab.
        None => match Cli::parse_from(["knetdoctor", "tui"]).command {
            Some(c) => c,
            None => unreachable!("`tui` parses to a command"),
        },
    };
    match command {
        Command::Inspect(InspectCommand::Node(a)) => {
            let (state, name) = match a.bundle {
                Some(bundle) => {
                    let target = inspect::Target::from_flags(Some(bundle), &a.lab, None)?;
                    let mut states = target.node_states(a.node.as_deref())?;
                    states
                        .pop()
                        .map(|(n, s)| (s, Some(n)))
                        .expect("node_states returns the node asked for")
                }
                None => {
                    let source =
                        inspect::resolve_node(a.node.as_deref(), a.netns.as_deref(), &a.lab)?;
                    (inspect::node::read(&source)?, source.node.clone())
                }
            };
            match a.output {
                Output::Json => json(&state),
                Output::Text => out(&inspect::render::node_text(&state, name.as_deref())),
            }
            Ok(0)
        }
        Command::Inspect(InspectCommand::Pod(a)) => linked(a, inspect::chain::pod),
        Command::Inspect(InspectCommand::Svc(a)) => linked(a, inspect::chain::service),
        Command::Inspect(InspectCommand::Ingress(a)) => linked(a, inspect::chain::ingress),
        Command::Inspect(InspectCommand::Dns(a)) => linked(a, inspect::chain::dns_name),
        Command::Lab(cmd) => lab_command(cmd),

        Command::Check(a) => {
            let live = a.source.live();
            let target = inspect::Target::from_flags(a.source.bundle, &a.source.lab, live)?;
            let cluster = target.cluster()?;
            let nodes = target.node_states(a.node.as_deref())?;
            let findings = knetdoctor::check::run(&cluster, &nodes);
            let names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
            match a.output {
                Output::Json => json(&serde_json::json!({"nodes": names, "findings": findings})),
                Output::Text => out(&knetdoctor::check::text::render(&findings, &names)),
            }
            Ok(if findings.is_empty() { 0 } else { 1 })
        }
        Command::Capture(a) => capture(a),
        Command::Trace(a) => {
            let live = a.source.live();
            let target = inspect::Target::from_flags(a.source.bundle, &a.source.lab, live)?;
            let cluster = target.cluster()?;
            let nodes = target.node_states(None)?;
            let findings = knetdoctor::check::run(&cluster, &nodes);
            let src = knetdoctor::trace::resolve::resolve(&cluster, &a.src, &a.namespace)?;
            let dst = knetdoctor::trace::resolve::resolve(&cluster, &a.dst, &a.namespace)?;
            let proto = format!("{:?}", a.proto).to_lowercase();
            let port = a.port;
            let world = knetdoctor::trace::sim::World::new(&cluster, &nodes, &findings);
            let t = knetdoctor::trace::sim::trace(&world, &src, &dst, &proto, port);
            if !a.probe {
                match a.output {
                    Output::Json => json(&t),
                    Output::Text => out(&knetdoctor::trace::text::render(&t)),
                }
                return Ok(if t.reachable { 0 } else { 1 });
            }
            if !(0.05..=60.0).contains(&a.timeout.as_secs_f64()) {
                return Err(knetdoctor::Error::usage(
                    format!("--timeout {:?} is out of range", a.timeout),
                    Some("give 0.05 to 60 seconds".to_string()),
                ));
            }
            let opts = knetdoctor::trace::probe::Options {
                lab: a.source.lab.clone(),
                timeout: a.timeout,
                size: a.size,
            };
            let p = knetdoctor::trace::probe::run(&t, &src, &opts)?;
            match a.output {
                Output::Json => json(&serde_json::json!({"trace": t, "probe": p})),
                Output::Text => out(&format!(
                    "{}{}",
                    knetdoctor::trace::text::render(&t),
                    knetdoctor::trace::text::render_probe(&p)
                )),
            }
            Ok(if p.judgement.reached { 0 } else { 1 })
        }
        Command::Repair(a) => knetdoctor::repair::command::run(a),
        Command::Tui(a) => knetdoctor::tui::run(a),
        Command::Collect(a) => {
            // A dangling symlink counts: it names a place already taken.
            if std::fs::symlink_metadata(&a.dir).is_ok() {
                return Err(knetdoctor::Error::usage(
                    format!("{} already exists", a.dir.display()),
                    Some("name a new directory; collect never overwrites".to_string()),
                ));
            }
            let target = inspect::Target::from_flags(None, &a.lab, None)?;
            let cluster = target.cluster()?;
            let nodes = target.node_states(None)?;
            let redactions = if inspect::bundle::is_tarball(&a.dir) {
                let tmp = tempfile::Builder::new()
                    .prefix("knetdoctor-collect-")
                    .tempdir()
                    .map_err(|e| knetdoctor::Error::io(std::env::temp_dir(), e))?;
                let dir = tmp.path().join("bundle");
                let r = inspect::bundle::write(&dir, &cluster, &nodes)?;
                inspect::bundle::pack(&dir, &a.dir)?;
                r
            } else {
                inspect::bundle::write(&a.dir, &cluster, &nodes)?
            };
            out(&format!(
                "bundle written to {}: {} nodes, {} pods, {} services\n{}",
                a.dir.display(),
                nodes.len(),
                cluster.pods.len(),
                cluster.services.len(),
                redactions.text()
            ));
            Ok(0)
        }

        Command::LabResponder { name, listen } => {
            lab::services::run_responder(&name, listen)?;
            Ok(0)
        }
        Command::LabForward {
            netns,
            to,
            port_file,
        } => {
            lab::control_plane::forward::run(
                std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
                &netns,
                to,
                &port_file,
            )?;
            Ok(0)
        }
        Command::LabKubelets { name } => {
            lab::control_plane::kubelets::run(&name)?;
            Ok(0)
        }
    }
}

fn lab_command(cmd: LabCommand) -> Result<u8> {
    match cmd {
        LabCommand::Up {
            name,
            nodes,
            pods_per_node,
            iptables,
            kubeconfig,
            control_plane,
            k8s,
            output,
        } => {
            let started = Instant::now();
            // Drawn only on a terminal, and only once the build takes a while.
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} lab up [{bar:30}] {pos}/{len} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            let progress = |what: &str, done: u64, total: u64| {
                if started.elapsed().as_millis() > 500 {
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_message(what.to_string());
                }
            };
            let params = LabParams {
                name: name.name.clone(),
                nodes,
                pods_per_node,
            };
            let result = lab::up(
                params,
                iptables,
                kubeconfig,
                control_plane.then_some(k8s),
                &progress,
            );
            bar.finish_and_clear();
            let state = result?;
            let secs = started.elapsed().as_secs_f64();
            match output {
                Output::Json => json(&serde_json::json!({
                    "name": name.name,
                    "dir": state.dir,
                    "cluster_dir": state.cluster_dir(),
                    "nodes": state.topology.nodes.len(),
                    "pods": state.topology.pods.len(),
                    "namespaces": state.topology.all_netns().len(),
                    "seconds": secs,
                })),
                Output::Text => out(&format!(
                    "lab {} is up in {secs:.2}s: {} nodes, {} pods, {} namespaces (kdlab-{}-*)\ncluster objects: {}\n{}",
                    name.name,
                    state.topology.nodes.len(),
                    state.topology.pods.len(),
                    state.topology.all_netns().len(),
                    name.name,
                    state.cluster_dir().display(),
                    match &state.control_plane {
                        Some(cp) => format!(
                            "control plane: Kubernetes {} (etcd, kube-apiserver, kube-controller-manager on k8s-master-10; kube-proxy on every node)\nkubeconfig: {}\n",
                            serde_json::to_value(cp.version)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default(),
                            lab::control_plane::host_kubeconfig(&state).display()
                        ),
                        None => String::new(),
                    }
                )),
            }
            Ok(0)
        }
        LabCommand::Status {
            name,
            no_probe,
            output,
        } => {
            let st = lab::status::status(&name.name, !no_probe)?;
            let healthy = st.paths.iter().all(|p| p.ok)
                && st.processes.iter().all(|p| p.alive)
                && st.namespaces_present == st.namespaces_expected;
            match output {
                Output::Json => json(&st),
                Output::Text => out(&status_text(&st)),
            }
            Ok(if healthy { 0 } else { 1 })
        }
        LabCommand::Down { name } => {
            let started = Instant::now();
            let r = lab::down(&name.name)?;
            out(&format!(
                "lab {} removed in {:.2}s: {} namespaces, {} processes{}\n",
                name.name,
                started.elapsed().as_secs_f64(),
                r.namespaces,
                r.processes,
                if r.had_state {
                    ""
                } else {
                    " (no state file: removed by namespace prefix)"
                }
            ));
            Ok(0)
        }
        LabCommand::Break { list: true, .. } => {
            for f in Fault::all() {
                let scope = match f.scope() {
                    Scope::Peer => "node+peer",
                    Scope::Node => "node",
                    Scope::Cluster => "cluster",
                };
                out(&format!("{:<22} [{scope:<9}] {}\n", f.name(), f.describe()));
            }
            Ok(0)
        }
        LabCommand::Break {
            name,
            fault,
            node,
            peer,
            ..
        } => {
            let fault = fault.expect("clap requires FAULT without --list");
            let active = lab::break_fault(&name.name, fault, node.as_deref(), peer.as_deref())?;
            out(&format!(
                "injected {}{}{}: {}\n`knetdoctor lab heal --name {}` undoes it\n",
                fault.name(),
                active
                    .node
                    .as_deref()
                    .map(|n| format!(" on {n}"))
                    .unwrap_or_default(),
                active
                    .peer
                    .as_deref()
                    .map(|p| format!(" towards {p}"))
                    .unwrap_or_default(),
                active.detail,
                name.name
            ));
            Ok(0)
        }
        LabCommand::Heal { name } => {
            let healed = lab::heal(&name.name)?;
            if healed.is_empty() {
                out("no faults were injected\n");
            }
            for f in healed {
                out(&format!(
                    "healed {}{}\n",
                    f.fault.name(),
                    f.node.map(|n| format!(" on {n}")).unwrap_or_default()
                ));
            }
            Ok(0)
        }
    }
}

fn status_text(st: &lab::status::Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "lab {}: {} nodes ({}), {} pods, {}/{} namespaces, iptables {}{}",
        st.name,
        st.nodes.len(),
        st.nodes.join(", "),
        st.pods,
        st.namespaces_present,
        st.namespaces_expected,
        st.iptables,
        if st.complete {
            ""
        } else {
            " (INCOMPLETE: `lab down` and up again)"
        }
    );
    match &st.control_plane {
        Some(_) => {
            let _ = writeln!(
                o,
                "cluster objects: on the lab's API server (what the lab publishes: {})",
                st.cluster_dir
            );
        }
        None => {
            let _ = writeln!(o, "cluster objects: {}", st.cluster_dir);
        }
    }
    let alive = st.processes.iter().filter(|p| p.alive).count();
    let _ = writeln!(o, "processes: {alive}/{} running", st.processes.len());
    for p in st.processes.iter().filter(|p| !p.alive) {
        let _ = writeln!(o, "  DEAD {} in {} (pid {})", p.role, p.pod, p.pid);
    }
    if let Some(cp) = &st.control_plane {
        let state = |p: &lab::status::ProcessLine| if p.alive { "up" } else { "DOWN" };
        let components: Vec<String> = st
            .processes
            .iter()
            .filter(|p| p.pod == "control-plane")
            .map(|p| format!("{} {}", p.role, state(p)))
            .collect();
        let proxies: Vec<String> = st
            .nodes
            .iter()
            .map(|n| {
                match st
                    .processes
                    .iter()
                    .find(|p| p.role == "kube-proxy" && p.pod == *n)
                {
                    Some(p) => format!("{n} {}", state(p)),
                    None => format!("{n} STOPPED (by a fault; `lab heal` starts it)"),
                }
            })
            .collect();
        let _ = writeln!(
            o,
            "control plane: Kubernetes {}: {}{}\nkube-proxy: {}",
            serde_json::to_value(cp.version)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            components.join(", "),
            cp.port
                .map(|p| format!(" (API server at 127.0.0.1:{p} through the forwarder)"))
                .unwrap_or_default(),
            proxies.join(", ")
        );
    }
    if st.faults.is_empty() {
        let _ = writeln!(o, "faults: none");
    } else {
        let _ = writeln!(o, "faults:");
        for f in &st.faults {
            let _ = writeln!(
                o,
                "  {} {}: {}",
                f.fault.name(),
                f.node.as_deref().unwrap_or("(cluster)"),
                f.detail
            );
        }
    }
    if !st.paths.is_empty() {
        let _ = writeln!(o, "paths:");
        for p in &st.paths {
            let _ = writeln!(
                o,
                "  {} {:<58} {}",
                if p.ok { "ok  " } else { "FAIL" },
                p.name,
                p.detail
            );
        }
    }
    o
}

type LinkedFn = fn(
    &knetdoctor::model::Cluster,
    &[(String, knetdoctor::dataplane::NodeState)],
    &[knetdoctor::check::Finding],
    &str,
    &str,
) -> Result<inspect::chain::LinkedView>;

/// `inspect pod|svc|ingress|dns`: the linked view; exit 1 when a link is broken.
fn linked(a: knetdoctor::cli::InspectObjectArgs, view: LinkedFn) -> Result<u8> {
    let live = a.source.live();
    let target = inspect::Target::from_flags(a.source.bundle, &a.source.lab, live)?;
    let cluster = target.cluster()?;
    let nodes = target.node_states(None)?;
    let findings = knetdoctor::check::run(&cluster, &nodes);
    let v = view(&cluster, &nodes, &findings, &a.name, &a.namespace)?;
    match a.output {
        Output::Json => json(&v),
        Output::Text => out(&inspect::chain::text(&v)),
    }
    Ok(
        if v.findings.is_empty() && v.lines.iter().all(|l| l.ok != Some(false)) {
            0
        } else {
            1
        },
    )
}

/// `capture`: live lines like `tcpdump -nn`, the interface first and the
/// VXLAN inner packet decoded; groups with `--group`; counters at the end.
fn capture(a: knetdoctor::cli::CaptureArgs) -> Result<u8> {
    use knetdoctor::capture::{file, live, sink};
    let mut sink = sink::Sink::new(
        a.output == Output::Json,
        a.group,
        &a.vxlan_ports,
        a.dns_timeout.as_secs_f64(),
    );
    let mut stats = Vec::new();
    let mut groups = None;
    let mut ended = None;
    if let Some(path) = &a.read {
        if a.output == Output::Text {
            // The fast path: borrowed frames, allocation-free lines.
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            file::print_lines(path, &a.vxlan_ports, &mut sink.dns, &mut out)?;
            let _ = out.flush();
            if a.group {
                groups = Some(file::correlate(path, &a.vxlan_ports)?.1);
            }
        } else {
            let mut first = None;
            file::for_each(path, |iface, ts, len, data| {
                let at = ts.saturating_sub(*first.get_or_insert(ts)).as_secs_f64();
                sink.frame(iface, at, len, data);
            })?;
        }
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
                let source = inspect::resolve_node(Some(n), None, &a.lab)?;
                interfaces.extend(live::Iface::in_netns(&source.netns, &a.interfaces, Some(n)));
                places.push(source.netns.display_name());
            }
        } else {
            let source = inspect::resolve_node(
                a.nodes.first().map(String::as_str),
                a.netns.as_deref(),
                &a.lab,
            )?;
            interfaces = live::Iface::in_netns(&source.netns, &a.interfaces, None);
            places.push(source.netns.display_name());
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
        while a.count.is_none_or(|c| seen < c) && limit.is_none_or(|l| started.elapsed() < l) {
            let frame = match running
                .frames
                .recv_timeout(std::time::Duration::from_millis(50))
            {
                Ok(f) => f,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                // Every interface's thread ended (its interface went away).
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            seen += 1;
            if let Some(w) = out.as_mut() {
                w.write(&frame.iface, frame.ts, frame.len, &frame.data)?;
            }
            sink.frame(&frame.iface, frame.at.as_secs_f64(), frame.len, &frame.data);
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
            "{}: {} received, {} dropped by the kernel, {} by the interface, {} by a slow reader",
            s.iface,
            s.received,
            s.kernel_dropped,
            s.if_dropped,
            s.queue_dropped
        );
    }
    Ok(0)
}

/// The BPF filter `--pod`/`--svc` stand for, from the lab's cluster objects.
fn names_filter(a: &knetdoctor::cli::CaptureArgs) -> Result<Option<String>> {
    if a.pod.is_none() && a.svc.is_none() {
        return Ok(None);
    }
    let cluster = inspect::Target::from_flags(None, &a.lab, None)?.cluster()?;
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
