//! The commands, one file each: each turns its typed arguments into calls
//! on the library, prints, and returns the exit code.

mod agent;
mod capture;
mod check;
mod collect;
mod drops;
mod hidden;
mod inspect;
mod lab;
mod progress;
mod repair;
mod tour;
mod trace;

use std::io::Write as _;

use knetdoctor::access::Source;
use knetdoctor::error::Result;

use crate::cli::{Cli, Command, Invoked, Shell, SourceArgs};

/// Runs the command `cli` names; `knetdoctor` alone opens the dashboard.
/// `invoked` is how the binary was called (completions and man pages are
/// named after it).
pub fn run(cli: Cli, invoked: Invoked) -> Result<u8> {
    let command = match cli.command {
        Some(c) => c,
        None => match <Cli as clap::Parser>::parse_from(["knetdoctor", "tui"]).command {
            Some(c) => c,
            None => unreachable!("`tui` parses to a command"),
        },
    };
    match command {
        Command::Tui(a) => knetdoctor::tui::run(knetdoctor::tui::Options {
            source: knetdoctor::access::Source {
                published: true,
                ..source_in(&a.source, &a.namespace)
            },
            refresh: std::time::Duration::from_millis(a.refresh_ms),
            namespace: a.namespace,
        }),
        Command::Check(a) => check::run(a),
        Command::Trace(a) => trace::run(a),
        Command::Inspect(c) => inspect::run(c),
        Command::Capture(a) => capture::run(a),
        Command::Drops(a) => drops::run(a),
        Command::Repair(a) => repair::run(a),
        Command::Collect(a) => collect::run(a),
        Command::Rbac(a) => rbac(a),
        Command::Agent(a) => agent::run(a),
        Command::Lab(c) => lab::run(c),
        Command::Completion { shell } => completion(invoked, shell),
        Command::Man { out } => man(invoked, &out),
        c @ (Command::LabResponder { .. }
        | Command::LabForward { .. }
        | Command::LabKubelets { .. }) => hidden::run(c),
    }
}

/// `rbac`: the reader role, and the bindings asked for.
fn rbac(a: crate::cli::RbacArgs) -> Result<u8> {
    use knetdoctor::inspect::rbac::{Grantee, Options, render};
    let grantee = match (a.user, a.group, a.serviceaccount) {
        (Some(u), _, _) => Some(Grantee::User(u)),
        (_, Some(g), _) => Some(Grantee::Group(g)),
        (_, _, Some(sa)) => Some(Grantee::service_account(&sa)?),
        _ => None,
    };
    out(&render(&Options {
        grantee,
        namespace: a.namespace,
    }));
    Ok(0)
}

/// `completion SHELL`: the shell's registration script on stdout.
fn completion(invoked: Invoked, shell: Shell) -> Result<u8> {
    let name = match shell {
        Shell::Bash => "bash",
        Shell::Zsh => "zsh",
        Shell::Fish => "fish",
        Shell::Elvish => "elvish",
        Shell::Powershell => "powershell",
    };
    let script = crate::cli::complete::registration(&invoked.command(), name)
        .map_err(|e| knetdoctor::Error::internal(format!("completion for {name}: {e}")))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .map_err(|e| knetdoctor::Error::io("standard output", e))?;
    Ok(0)
}

/// `man --out DIR`: one page per command.
fn man(invoked: Invoked, out: &std::path::Path) -> Result<u8> {
    std::fs::create_dir_all(out).map_err(|e| knetdoctor::Error::io(out, e))?;
    let cmd = invoked.command();
    // One page per command that is not hidden (what clap_mangen writes).
    fn pages(c: &clap::Command) -> usize {
        1 + c
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(pages)
            .sum::<usize>()
    }
    let pages = pages(&cmd);
    clap_mangen::generate_to(cmd, out).map_err(|e| knetdoctor::Error::io(out, e))?;
    let _ = writeln!(
        anstream::stderr(),
        "{pages} man pages in {} (`man -l {}/knetdoctor.1`)",
        out.display(),
        out.display()
    );
    Ok(0)
}

/// Where the flags say to read from.
fn source(a: &SourceArgs) -> Source {
    Source {
        bundle: a.bundle.clone(),
        lab: a.lab.clone(),
        live: a.live(),
        published: false,
    }
}

/// The source of a command with `-n`: where the API server refuses a
/// kind's list across the cluster, that namespace's list stands in (a
/// user bound in one namespace still gets its answers).
fn source_in(a: &SourceArgs, namespace: &Option<String>) -> Source {
    let mut s = source(a);
    if let Some(live) = s.live.as_mut() {
        live.namespace_if_refused = namespace.clone();
    }
    s
}

/// The live cluster of `--kubeconfig`/`--context`, whose nodes are
/// reached through their agents (capture and drops).
fn through_agents(lab: &str, a: &crate::cli::LiveArgs) -> Result<knetdoctor::access::Target> {
    Source {
        lab: lab.to_string(),
        live: a.source(),
        ..Default::default()
    }
    .target()
}

/// A command's document as `-o json` or `-o yaml` asks (the same
/// document either way; text is each command's own).
fn emit(format: crate::cli::Output, value: &impl serde::Serialize) {
    let text = match format {
        crate::cli::Output::Yaml => serde_yaml_ng::to_string(value).expect("serializable"),
        _ => serde_json::to_string_pretty(value).expect("serializable") + "\n",
    };
    let _ = write!(anstream::stdout(), "{text}");
}

fn out(text: &str) {
    let _ = write!(anstream::stdout(), "{text}");
}
