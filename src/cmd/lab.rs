//! `knetdoctor lab up|status|down|break|heal`: the lab's face.

use std::time::Instant;

use knetdoctor::error::Result;
use knetdoctor::lab::{self, Fault, LabParams, faults::Scope};

use super::{emit, out};
use crate::cli::{LabAgentAction, LabCommand, Output};

pub fn run(cmd: LabCommand) -> Result<u8> {
    match cmd {
        LabCommand::Up {
            name,
            nodes,
            pods_per_node,
            iptables,
            kubeconfig,
            control_plane,
            k8s,
            kube_proxy_mode,
            without_endpoints,
            flannel_nftables,
            agents,
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
                control_plane.then_some(lab::control_plane::ControlPlane {
                    version: k8s,
                    port: None,
                    without_endpoints,
                }),
                kube_proxy_mode,
                flannel_nftables,
                &progress,
            );
            bar.finish_and_clear();
            let mut state = result?;
            if agents {
                lab::control_plane::agents::install(&mut state)?;
            }
            let secs = started.elapsed().as_secs_f64();
            match output {
                Output::Json | Output::Yaml => emit(
                    output,
                    &serde_json::json!({
                        "name": name.name,
                        "dir": state.dir,
                        "cluster_dir": state.cluster_dir(),
                        "nodes": state.topology.nodes.len(),
                        "pods": state.topology.pods.len(),
                        "namespaces": state.topology.all_netns().len(),
                        "seconds": secs,
                    }),
                ),
                Output::Text | Output::Wide => out(&format!(
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
        LabCommand::Agent { name, action, node } => {
            let mut state = lab::LabState::require(&name.name)?;
            state.topology.node(&node)?;
            match action {
                LabAgentAction::Stop => {
                    lab::control_plane::agents::stop(&mut state, &node)?;
                    out(&format!("agent on {node} stopped\n"));
                }
                LabAgentAction::Start => {
                    lab::control_plane::agents::stop(&mut state, &node)?;
                    let p = lab::control_plane::agents::start(&state, &node)?;
                    state.processes.push(p);
                    state.save()?;
                    out(&format!("agent on {node} started\n"));
                }
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
                Output::Json | Output::Yaml => emit(output, &st),
                Output::Text | Output::Wide => out(&status_text(&st)),
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
        LabCommand::Tour { name } => super::tour::run(&name.name),
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
