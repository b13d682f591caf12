//! Reading net sysctls. /proc/sys/net resolves against the network namespace
//! of the calling thread, so call these from inside [`super::Netns::run`].

use std::collections::BTreeMap;
use std::path::Path;

use super::state::Sysctls;

fn read_u8(path: &Path) -> Option<u8> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads the sysctls in [`Sysctls`] for the current thread's namespace;
/// `devices` are the interfaces to read `rp_filter` for.
pub fn read(devices: &[String]) -> Sysctls {
    let root = Path::new("/proc/sys/net");
    let mut rp_filter = BTreeMap::new();
    for dev in ["all", "default"]
        .into_iter()
        .map(str::to_string)
        .chain(devices.iter().cloned())
    {
        if let Some(v) = read_u8(&root.join("ipv4/conf").join(&dev).join("rp_filter")) {
            rp_filter.insert(dev, v);
        }
    }
    Sysctls {
        ip_forward: read_u8(&root.join("ipv4/ip_forward")).map(|v| v != 0),
        bridge_nf_call_iptables: read_u8(&root.join("bridge/bridge-nf-call-iptables"))
            .map(|v| v != 0),
        rp_filter,
    }
}

/// Writes one sysctl given as a dotted key (`net.ipv4.ip_forward`).
pub fn write(key: &str, value: &str) -> std::io::Result<()> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(path, value)
}
