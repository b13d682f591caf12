//! `knetdoctor drops`: what the kernel drops, live, with its reason and
//! the function that freed the packet, then the counts by reason. One
//! kernel serves every network namespace on the machine (a lab's nodes
//! included), so the drops are the machine's.

use std::io::Write as _;
use std::time::Instant;

use knetdoctor::capture::drops;
use knetdoctor::capture::kfree::DropWatch;
use knetdoctor::error::Result;

use super::json;
use crate::cli::{DropProtocol, DropsArgs, Output};

pub fn run(a: DropsArgs) -> Result<u8> {
    let protocol = match a.protocol {
        DropProtocol::Ipv4 => Some(0x0800),
        DropProtocol::Ipv6 => Some(0x86dd),
        DropProtocol::Arp => Some(0x0806),
        DropProtocol::Any => None,
    };
    let watch = DropWatch::start(protocol)?;
    let _ = writeln!(
        anstream::stderr(),
        "watching the kernel's drops for {:.1}s",
        a.duration.as_secs_f64()
    );
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut stdout = anstream::stdout();
    while let Some(left) = a.duration.checked_sub(started.elapsed()) {
        let Ok(d) = watch
            .drops
            .recv_timeout(left.min(std::time::Duration::from_millis(100)))
        else {
            continue;
        };
        if a.output == Output::Text {
            let _ = writeln!(
                stdout,
                "{:>10.6} {} in {} (protocol 0x{:04x})",
                started.elapsed().as_secs_f64(),
                d.reason,
                d.function,
                d.protocol
            );
        }
        seen.push(d);
    }
    seen.extend(watch.finish());
    let counts = drops::tally(&seen);
    match a.output {
        Output::Json => json(&serde_json::json!({"drops": seen, "counts": counts})),
        Output::Text => {
            let _ = writeln!(stdout, "{} drops", seen.len());
            for c in &counts {
                let _ = writeln!(stdout, "{:>8} {} in {}", c.count, c.reason, c.function);
            }
        }
    }
    Ok(0)
}
