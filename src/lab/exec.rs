//! Running iproute2 and iptables inside the lab's namespaces. The lab is
//! built with the standard tools on purpose: knetdoctor's own reader then
//! checks itself against state it did not write.

use crate::dataplane::Netns;
use crate::error::{Error, Result};

/// Runs `program args` in `netns` with `input` on stdin; fails with stderr.
pub fn run_in(netns: &str, program: &str, args: &[&str], input: &str) -> Result<String> {
    Netns::named(netns).exec(program, args, Some(input))
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
    Netns::Current
        .exec("ip", &["-batch", "-"], Some(&(lines.join("\n") + "\n")))
        .map(|_| ())
}

/// Writes nftables table `t` whole in `netns` (one `nft -j -f`
/// transaction), as kube-proxy's and flannel's nftables modes own theirs.
pub fn write_table(netns: &str, t: &crate::dataplane::nft_table::NftTableSpec) -> Result<()> {
    run_in(netns, "nft", &["-j", "-f", "-"], &t.replace_commands()).map(drop)
}
