//! Shell completion, generated from the command line's definition
//! (clap_complete's engine), with the names of what there is to name —
//! nodes, pods, Services — from the labs that are up on this machine: a
//! completion must answer in the time of a keypress, so it reads local
//! state only, never an API server. Three ways in:
//!
//! - `knetdoctor completion bash|zsh|fish|elvish|powershell` prints the
//!   shell's registration, which calls the binary back with
//!   `KNETDOCTOR_COMPLETE=<shell>` at each TAB ([`ENV`]);
//! - kubectl 1.26 and later complete a plugin's arguments by running
//!   `kubectl_complete-knetdoctor ARGS... CURRENT` and reading cobra's
//!   format (one candidate a line, `value\tdescription`, then
//!   `:<directive>`) ([`kubectl`]).

use std::ffi::{OsStr, OsString};
use std::io::Write as _;

use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};

use knetdoctor::lab::LabState;
use knetdoctor::lab::state::labs_root;

/// The variable the shells' registration sets to call back for
/// completions.
pub const ENV: &str = "KNETDOCTOR_COMPLETE";

/// cobra's ShellCompDirectiveNoFileComp: no file names after ours.
const NO_FILE_COMPLETION: u8 = 4;

/// The labs that are up, as their state files say.
fn labs() -> Vec<LabState> {
    let Ok(rd) = std::fs::read_dir(labs_root()) else {
        return Vec::new();
    };
    let mut labs: Vec<LabState> = rd
        .flatten()
        .filter_map(|e| {
            LabState::load(&e.file_name().to_string_lossy())
                .ok()
                .flatten()
        })
        .collect();
    labs.sort_by(|a, b| a.topology.params.name.cmp(&b.topology.params.name));
    labs
}

/// The candidates among `names` that start with `current`, once each.
fn matching(
    current: &OsStr,
    names: impl IntoIterator<Item = (String, String)>,
) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let mut seen = std::collections::BTreeMap::new();
    for (name, help) in names {
        if name.starts_with(current.as_ref()) {
            seen.entry(name).or_insert(help);
        }
    }
    seen.into_iter()
        .map(|(name, help)| CompletionCandidate::new(name).help(Some(help.into())))
        .collect()
}

fn node_names(current: &OsStr) -> Vec<CompletionCandidate> {
    matching(
        current,
        labs().iter().flat_map(|l| {
            let lab = l.topology.params.name.clone();
            l.topology
                .nodes
                .iter()
                .map(move |n| (n.name.clone(), format!("node of lab {lab}")))
                .collect::<Vec<_>>()
        }),
    )
}

/// Pods (`ns/name`) and Services (`ns/name`) of the labs that are up.
fn endpoint_names(current: &OsStr) -> Vec<CompletionCandidate> {
    let names = labs().into_iter().flat_map(|l| {
        let cluster = knetdoctor::lab::objects::cluster(&l.topology, &|_| true);
        let key = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or("default"),
                m.name.as_deref().unwrap_or_default()
            )
        };
        let pods = cluster
            .pods
            .iter()
            .map(|p| (key(&p.metadata), "pod".to_string()));
        let services = cluster
            .services
            .iter()
            .map(|s| (key(&s.metadata), "Service".to_string()));
        pods.chain(services).collect::<Vec<_>>()
    });
    matching(current, names)
}

/// Completes a node's name.
pub fn nodes() -> ArgValueCompleter {
    ArgValueCompleter::new(node_names)
}

/// Completes a pod's or a Service's `namespace/name`.
pub fn endpoints() -> ArgValueCompleter {
    ArgValueCompleter::new(endpoint_names)
}

/// `kubectl_complete-knetdoctor ARGS... CURRENT`: the candidates for the
/// last argument in cobra's format, for kubectl to show.
pub fn kubectl(mut cmd: clap::Command, args: Vec<OsString>) -> u8 {
    // kubectl passes the arguments after the plugin's name, the one being
    // completed last (empty at a fresh word).
    let mut line: Vec<OsString> = vec![OsString::from("knetdoctor")];
    line.extend(args);
    if line.len() == 1 {
        line.push(OsString::new());
    }
    let index = line.len() - 1;
    let current_dir = std::env::current_dir().ok();
    let candidates = clap_complete::engine::complete(&mut cmd, line, index, current_dir.as_deref())
        .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    for c in candidates.iter().filter(|c| !c.is_hide_set()) {
        let value = c.get_value().to_string_lossy();
        match c.get_help() {
            Some(help) => {
                let help = help.to_string();
                let first = help.lines().next().unwrap_or_default();
                let _ = writeln!(out, "{value}\t{first}");
            }
            None => {
                let _ = writeln!(out, "{value}");
            }
        }
    }
    let _ = writeln!(out, ":{NO_FILE_COMPLETION}");
    0
}

/// `knetdoctor completion SHELL`: the shell's registration script.
pub fn registration(cmd: &clap::Command, shell: &str) -> std::io::Result<Vec<u8>> {
    let shells = clap_complete::env::Shells::builtins();
    let completer = shells
        .completer(shell)
        .ok_or_else(|| std::io::Error::other(format!("no completion for shell {shell:?}")))?;
    let bin = cmd
        .get_bin_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let exe = std::env::current_exe()
        .ok()
        .filter(|p| p.file_name().is_some_and(|n| n == "knetdoctor"))
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_else(|| "knetdoctor".to_string());
    let mut buf = Vec::new();
    completer.write_registration(ENV, cmd.get_name(), &bin, &exe, &mut buf)?;
    Ok(buf)
}
