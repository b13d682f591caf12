//! What the drop watch needs from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`): where the fields it reads lie, and the
//! names of its drop reasons. Members of anonymous structs and unions (the
//! kernel nests `sk_buff.dev` three deep) count as the outer struct's.

use std::collections::BTreeMap;

use btf_rs::{Btf, Type};

use crate::capture::drop_program::KernelOffsets;
use crate::capture::drops;

/// Where the kernel publishes its own BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's BTF, parsed; why not, in words.
pub fn load() -> Result<Btf, String> {
    Btf::from_file(VMLINUX).map_err(|e| {
        format!("this kernel publishes no BTF at {VMLINUX} ({e}); it needs CONFIG_DEBUG_INFO_BTF")
    })
}

/// The byte offset of `path` (`nd_net.net`) in struct `ty`.
fn offset(btf: &Btf, ty: &str, path: &str) -> Result<i32, String> {
    let not_found = || format!("this kernel's struct {ty} has no {path}");
    let mut current = btf
        .resolve_types_by_name(ty)
        .map_err(|_| not_found())?
        .into_iter()
        .find(|t| matches!(t, Type::Struct(_)))
        .ok_or_else(not_found)?;
    let mut total = 0u32;
    for name in path.split('.') {
        let (Type::Struct(s) | Type::Union(s)) = &current else {
            return Err(not_found());
        };
        let (bits, member_type) = member(btf, s, name).ok_or_else(not_found)?;
        total += bits;
        current = member_type;
    }
    if !total.is_multiple_of(8) {
        return Err(format!("{ty}.{path} is a bit field"));
    }
    Ok((total / 8) as i32)
}

/// The bit offset and type of member `name` of `s`, looking inside
/// anonymous members.
fn member(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Option<(u32, Type)> {
    for m in &s.members {
        let m_name = btf.resolve_name(m).unwrap_or_default();
        let ty = skip_typedefs(btf, btf.resolve_chained_type(m).ok()?);
        if m_name == name {
            return Some((m.bit_offset(), ty));
        }
        if m_name.is_empty()
            && let Type::Struct(inner) | Type::Union(inner) = &ty
            && let Some((bits, t)) = member(btf, inner, name)
        {
            return Some((m.bit_offset() + bits, t));
        }
    }
    None
}

/// The type under typedefs and qualifiers (`possible_net_t` is a typedef).
fn skip_typedefs(btf: &Btf, mut t: Type) -> Type {
    loop {
        match &t {
            Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) | Type::Restrict(_) => {
                let Some(inner) = t
                    .as_btf_type()
                    .and_then(|b| btf.resolve_chained_type(b).ok())
                else {
                    return t;
                };
                t = inner;
            }
            _ => return t,
        }
    }
}

/// The offsets the drop program reads at.
pub fn offsets(btf: &Btf) -> Result<KernelOffsets, String> {
    Ok(KernelOffsets {
        skb_dev: offset(btf, "sk_buff", "dev")?,
        skb_head: offset(btf, "sk_buff", "head")?,
        skb_data: offset(btf, "sk_buff", "data")?,
        skb_len: offset(btf, "sk_buff", "len")?,
        skb_mac_header: offset(btf, "sk_buff", "mac_header")?,
        skb_network_header: offset(btf, "sk_buff", "network_header")?,
        skb_tail: offset(btf, "sk_buff", "tail")?,
        skb_protocol: offset(btf, "sk_buff", "protocol")?,
        dev_ifindex: offset(btf, "net_device", "ifindex")?,
        dev_net: offset(btf, "net_device", "nd_net.net")?,
        net_inum: offset(btf, "net", "ns.inum")?,
    })
}

/// The kernel's drop reasons by number (`enum skb_drop_reason`).
pub fn reasons(btf: &Btf) -> Result<BTreeMap<u32, String>, String> {
    let types = btf.resolve_types_by_name("skb_drop_reason").map_err(|_| {
        "this kernel has no drop reasons (enum skb_drop_reason arrived in 5.17)".to_string()
    })?;
    let Some(Type::Enum(e)) = types.into_iter().find(|t| matches!(t, Type::Enum(_))) else {
        return Err("this kernel's skb_drop_reason is not an enum".to_string());
    };
    Ok(drops::reason_names(e.members.iter().map(|m| {
        (btf.resolve_name(m).unwrap_or_default(), m.val())
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names read from the kernel's BTF are the ones its `kfree_skb`
    /// tracepoint prints (`__print_symbolic(REC->reason, { 2,
    /// "NOT_SPECIFIED" }, ...)` in its format): the running kernel's own,
    /// number for number.
    #[test]
    fn reasons_are_the_ones_the_kernels_tracepoint_prints() {
        let root = std::path::Path::new("/sys/kernel/tracing");
        if !root.join("events").is_dir() {
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
                .status()
                .unwrap();
            assert!(mounted.success(), "tracefs cannot be mounted");
        }
        let format = std::fs::read_to_string(root.join("events/skb/kfree_skb/format")).unwrap();
        let printed: BTreeMap<u32, String> = format
            .split("__print_symbolic(REC->reason")
            .nth(1)
            .unwrap()
            .split('{')
            .skip(1)
            .filter_map(|pair| {
                let (n, name) = pair.split('}').next()?.split_once(',')?;
                Some((
                    n.trim().parse().ok()?,
                    name.trim().trim_matches('"').to_string(),
                ))
            })
            .collect();
        let ours = reasons(&load().unwrap()).unwrap();
        assert!(printed.len() > 50, "{printed:?}");
        for (n, name) in &printed {
            assert_eq!(ours.get(n), Some(name), "reason {n}");
        }
        for name in [
            "NETFILTER_DROP",
            "IP_INNOROUTES",
            "PKT_TOO_BIG",
            "NOT_SPECIFIED",
        ] {
            assert!(drops::reason_number(&ours, name).is_some(), "{name}");
        }
    }
}
