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
mod repair;
mod trace;

use std::io::Write as _;

use knetdoctor::access::Source;
use knetdoctor::error::Result;

use crate::cli::{Cli, Command, SourceArgs};

/// Runs the command `cli` names; `knetdoctor` alone opens the dashboard.
pub fn run(cli: Cli) -> Result<u8> {
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
                ..source(&a.source)
            },
            refresh: std::time::Duration::from_millis(a.refresh_ms),
        }),
        Command::Check(a) => check::run(a),
        Command::Trace(a) => trace::run(a),
        Command::Inspect(c) => inspect::run(c),
        Command::Capture(a) => capture::run(a),
        Command::Drops(a) => drops::run(a),
        Command::Repair(a) => repair::run(a),
        Command::Collect(a) => collect::run(a),
        Command::Agent(a) => agent::run(a),
        Command::Lab(c) => lab::run(c),
        c @ (Command::LabResponder { .. }
        | Command::LabForward { .. }
        | Command::LabKubelets { .. }) => hidden::run(c),
    }
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
