//! `knetdoctor`: parse the command line, run the command, exit with its code.
//! The same binary is `kubectl knetdoctor` when installed or linked as
//! `kubectl-knetdoctor`, and kubectl's completer as
//! `kubectl_complete-knetdoctor`.

mod cli;
mod cmd;

use std::io::Write as _;
use std::process::ExitCode;

use clap::FromArgMatches as _;

fn main() -> ExitCode {
    knetdoctor::without_huge_pages();
    let invoked = cli::Invoked::from_program(std::env::args_os().next().as_deref());
    // A shell asking for completions is answered before anything else.
    clap_complete::CompleteEnv::with_factory(move || invoked.command())
        .var(cli::complete::ENV)
        .complete();
    if invoked == cli::Invoked::KubectlComplete {
        let args = std::env::args_os().skip(1).collect();
        return ExitCode::from(cli::complete::kubectl(invoked.command(), args));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KNETDOCTOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("knetdoctor=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let parsed =
        cli::Cli::from_arg_matches(&invoked.command().get_matches()).unwrap_or_else(|e| e.exit());
    match cmd::run(parsed, invoked) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(anstream::stderr(), "error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
