//! `knetdoctor`: parse the command line, run the command, exit with its code.

mod cli;
mod cmd;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KNETDOCTOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("knetdoctor=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cmd::run(cli::Cli::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(anstream::stderr(), "error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
