//! Running iproute2 and iptables inside the lab's namespaces. The lab is
//! built with the standard tools on purpose: knetdoctor's own reader then
//! checks itself against state it did not write.

use std::io::Write;
use std::process::Stdio;

use crate::dataplane::Netns;
use crate::error::{Error, Result};

/// Runs `program args` in `netns` with `input` on stdin; fails with stderr.
pub fn run_in(netns: &str, program: &str, args: &[&str], input: &str) -> Result<String> {
    let mut cmd = Netns::named(netns).command(program)?;
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let describe = || format!("{program} {} (in {netns})", args.join(" "));
    let mut child = cmd.spawn().map_err(|e| {
        Error::env(
            format!("cannot run {program}: {e}"),
            Some(
                "install it: apt-get install -y iproute2 iptables dnsmasq-base nginx-light"
                    .to_string(),
            ),
        )
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| Error::Command {
                command: describe(),
                stderr: e.to_string(),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Command {
        command: describe(),
        stderr: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: describe(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -batch -` in `netns` (nothing to do for an empty batch).
pub fn ip_batch(netns: &str, lines: &[String]) -> Result<()> {
    batch(netns, "ip", lines)
}

/// `bridge -batch -` in `netns`.
pub fn bridge_batch(netns: &str, lines: &[String]) -> Result<()> {
    batch(netns, "bridge", lines)
}

fn batch(netns: &str, tool: &str, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut input = lines.join("\n");
    input.push('\n');
    run_in(netns, tool, &["-batch", "-"], &input).map_err(|e| match e {
        Error::Command { command, stderr } => {
            // ip reports "Command failed -:N"; name the line itself.
            let line = stderr
                .rsplit_once("-:")
                .and_then(|(_, n)| n.trim().parse::<usize>().ok())
                .and_then(|n| lines.get(n.wrapping_sub(1)))
                .map(|l| format!(" (at `{tool} {l}`)"))
                .unwrap_or_default();
            Error::Command {
                command,
                stderr: format!("{stderr}{line}"),
            }
        }
        other => other,
    })?;
    Ok(())
}

/// `ip -batch -` in the root namespace, for `netns add`/`netns del` only.
pub fn ip_root_batch(lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut child = std::process::Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::env(
                format!("cannot run ip: {e}"),
                Some("apt-get install -y iproute2".to_string()),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all((lines.join("\n") + "\n").as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::Command {
        command: "ip -batch -".into(),
        stderr: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: "ip -batch -".into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}
