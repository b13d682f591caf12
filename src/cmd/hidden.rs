//! The lab's own helper processes, started by `lab up` and hidden from
//! `--help`: a TCP responder, the API server's forwarder, the stand-in
//! kubelets.

use knetdoctor::error::Result;
use knetdoctor::lab;

use crate::cli::Command;

pub fn run(cmd: Command) -> Result<u8> {
    match cmd {
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
        _ => unreachable!("only the lab's helper commands are dispatched here"),
    }
}
