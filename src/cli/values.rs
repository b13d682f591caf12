//! Parsers for the command line's values, so that a number out of range or
//! a name that could escape its directory is refused by clap before any
//! work starts (exit 2, with what was wrong and what would be right). Each
//! takes the text as typed and returns the typed value or a sentence.

use std::time::Duration;

/// The longest wait any flag accepts: a day. `Duration::from_secs_f64`
/// panics on values it cannot hold, and nobody captures for a year by typo.
const MAX_SECONDS: f64 = 86_400.0;

/// The shortest wait any flag accepts: a millisecond (a smaller one would
/// round to no wait at all).
const MIN_SECONDS: f64 = 0.001;

/// Seconds as a finite number from a millisecond up to a day (`2`, `0.5`).
pub fn seconds(text: &str) -> Result<Duration, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds (e.g. 2 or 0.5)"))?;
    if !v.is_finite() || !(MIN_SECONDS..=MAX_SECONDS).contains(&v) {
        return Err(format!(
            "{text} seconds is out of range: give {MIN_SECONDS} to {MAX_SECONDS} (a day)"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A lab's name (`seed`): 1-16 lower-case letters and digits, so that it
/// can name neither a path outside the lab's directory nor another lab's
/// namespaces (`kdlab-NAME-`).
pub fn lab_name(text: &str) -> Result<String, String> {
    knetdoctor::lab::topology::validate_name(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

/// A repair's ID as `--history` lists it (`<20 digits>-<pid>`): never a
/// path, so `--undo` reads only journals of this node's directory.
pub fn repair_id(text: &str) -> Result<String, String> {
    if knetdoctor::repair::journal::valid_id(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a repair ID: IDs look like 01764570000123456789-4242 (`repair --node NODE --history` lists them)"
        ))
    }
}

/// One of `all` by its name, the names listed in `--help`: the domain
/// enums know their names; clap only asks them (they derive nothing of it).
fn named<T: Copy + Send + Sync + 'static>(
    all: &'static [T],
    name: fn(T) -> &'static str,
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(all.iter().map(|t| name(*t)))
        .map(move |s| *all.iter().find(|t| name(**t) == s).expect("a listed name"))
}

/// A repair category (`--only`).
pub fn category() -> impl clap::builder::TypedValueParser<Value = knetdoctor::repair::Category> {
    use knetdoctor::repair::Category;
    named(&Category::ALL, Category::name)
}

/// The protocol of a trace (`--proto`).
pub fn proto() -> impl clap::builder::TypedValueParser<Value = knetdoctor::trace::Proto> {
    use knetdoctor::trace::Proto;
    named(&Proto::ALL, Proto::name)
}

/// A lab fault (`lab break`).
pub fn fault() -> impl clap::builder::TypedValueParser<Value = knetdoctor::lab::Fault> {
    use knetdoctor::lab::Fault;
    named(Fault::all(), Fault::name)
}

/// The lab's iptables backend (`--iptables`).
pub fn iptables_backend()
-> impl clap::builder::TypedValueParser<Value = knetdoctor::lab::IptablesBackend> {
    use knetdoctor::lab::IptablesBackend;
    named(&IptablesBackend::ALL, IptablesBackend::name)
}

/// The control plane's Kubernetes version (`--k8s`).
pub fn k8s_version()
-> impl clap::builder::TypedValueParser<Value = knetdoctor::lab::control_plane::K8sVersion> {
    use knetdoctor::lab::control_plane::K8sVersion;
    named(&K8sVersion::ALL, K8sVersion::name)
}

/// kube-proxy's mode in the control-plane lab (`--kube-proxy-mode`).
pub fn kube_proxy_mode()
-> impl clap::builder::TypedValueParser<Value = knetdoctor::lab::control_plane::KubeProxyMode> {
    use knetdoctor::lab::control_plane::KubeProxyMode;
    named(&KubeProxyMode::ALL, KubeProxyMode::name)
}

/// Bytes kept of each frame: 1 to 262144 (tcpdump's `-s 0`, "all of it",
/// is the default here).
pub fn snaplen(text: &str) -> Result<i32, String> {
    let v: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of bytes"))?;
    match v {
        1..=262_144 => Ok(v as i32),
        0 => Err("-s 0 keeps nothing here: whole frames (262144 bytes, what tcpdump's -s 0 means) are the default; leave -s out".into()),
        _ => Err(format!("-s {v} is out of range: give 1 to 262144 bytes")),
    }
}

/// A UDP or TCP port, 1 to 65535 (port 0 names no service).
pub fn port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not a port: give 1 to 65535")),
        Ok(p) => Ok(p),
    }
}

/// A positive count (`-c 10`).
pub fn count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) | Err(_) => Err(format!(
            "{text:?} is not a count: give a whole number from 1"
        )),
        Ok(n) => Ok(n),
    }
}

/// The smallest and largest IP packet a probe sends: an IPv4 header and an
/// 8-byte ICMP or UDP header, up to IPv4's 16-bit total length.
pub const PROBE_SIZES: std::ops::RangeInclusive<usize> = 28..=65_535;

/// A probe's IP size in bytes (`--size 1450`).
pub fn probe_size(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if PROBE_SIZES.contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a probe size: give {} to {} bytes (the whole IP packet)",
            PROBE_SIZES.start(),
            PROBE_SIZES.end()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_refuses_what_duration_cannot_hold() {
        for bad in [
            "-1", "0", "NaN", "nan", "inf", "-inf", "1e300", "86401", "", "x",
        ] {
            assert!(seconds(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(seconds("86400"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn repair_ids_are_never_paths() {
        for bad in [
            "../../tmp/x",
            "/etc/passwd",
            "01764570000123456789",
            "1-2",
            "01764570000123456789-4242/..",
            "01764570000123456789-42a",
        ] {
            assert!(repair_id(bad).is_err(), "{bad:?} accepted");
        }
        assert!(repair_id("01764570000123456789-4242").is_ok());
    }

    #[test]
    fn lab_names_are_never_paths() {
        for bad in [
            "../lab/other",
            "seed/..",
            "Seed",
            "",
            "a-b",
            "seventeen-letters",
        ] {
            assert!(lab_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(lab_name("seed").as_deref(), Ok("seed"));
    }

    #[test]
    fn sizes_ports_counts_and_snaplen_have_their_ranges() {
        assert!(snaplen("0").is_err() && snaplen("-5").is_err() && snaplen("262145").is_err());
        assert_eq!(snaplen("96"), Ok(96));
        assert!(port("0").is_err() && port("65536").is_err());
        assert_eq!(port("8472"), Ok(8472));
        assert!(count("0").is_err() && count("-1").is_err());
        assert!(
            probe_size("27").is_err()
                && probe_size("65536").is_err()
                && probe_size("18446744073709551615").is_err()
        );
        assert_eq!(probe_size("1450"), Ok(1450));
    }
}
