//! The three `bpf(2)` objects of the drop watch, owned as file descriptors
//! (closing them detaches and frees everything, so a crashed process
//! leaves nothing in the kernel): a queue map, the program, and its
//! attachment to the raw tracepoint. No BPF library is used: loading one
//! generated program needs five commands, and the attribute layouts below
//! are the kernel's stable ABI (include/uapi/linux/bpf.h).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::libc;

use crate::capture::drop_program::Insn;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
const BPF_MAP_TYPE_QUEUE: u32 = 22;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

/// `union bpf_attr`, as bytes: every command reads its own fields from
/// the start and wants the rest zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(mut self, at: usize, v: u32) -> Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, at: usize, v: u64) -> Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn bytes(mut self, at: usize, v: &[u8]) -> Attr {
        self.0[at..at + v.len()].copy_from_slice(v);
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable 128-byte buffer of the size passed,
    // and every pointer stored in it outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd(r: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us alone.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

/// A queue map of `entries` values of `value_size` bytes.
pub fn queue(value_size: u32, entries: u32) -> std::io::Result<OwnedFd> {
    let mut a = Attr::new()
        .u32(0, BPF_MAP_TYPE_QUEUE)
        .u32(4, 0)
        .u32(8, value_size)
        .u32(12, entries)
        .bytes(28, b"knetdoctor_drop");
    bpf(BPF_MAP_CREATE, &mut a).map(fd)
}

/// Loads `insns` as a raw tracepoint program; the verifier's log when it
/// refuses them.
pub fn load(insns: &[Insn]) -> Result<OwnedFd, String> {
    let code: Vec<u8> = insns.iter().flat_map(Insn::encode).collect();
    let license = c"Dual MIT/GPL";
    let mut log = vec![0u8; 64 * 1024];
    let attr = |log_level: u32, log: &mut Vec<u8>| {
        Attr::new()
            .u32(0, BPF_PROG_TYPE_RAW_TRACEPOINT)
            .u32(4, insns.len() as u32)
            .u64(8, code.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, log_level)
            .u32(28, if log_level > 0 { log.len() as u32 } else { 0 })
            .u64(
                32,
                if log_level > 0 {
                    log.as_mut_ptr() as u64
                } else {
                    0
                },
            )
            .bytes(48, b"knetdoctor_drop")
    };
    match bpf(BPF_PROG_LOAD, &mut attr(0, &mut log)) {
        Ok(r) => Ok(fd(r)),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(format!(
            "the kernel refused to load a BPF program: {e} (it needs root, or CAP_BPF and CAP_PERFMON)"
        )),
        Err(e) => {
            // Again with the verifier's log, to say why.
            let _ = bpf(BPF_PROG_LOAD, &mut attr(1, &mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = text.lines().rev().take(6).collect();
            Err(format!(
                "the kernel's verifier refused the drop program: {e}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ))
        }
    }
}

/// Attaches `prog` to raw tracepoint `name`; detached when the returned
/// descriptor closes.
pub fn attach(prog: &OwnedFd, name: &str) -> std::io::Result<OwnedFd> {
    let name = CString::new(name).map_err(std::io::Error::other)?;
    let mut a = Attr::new()
        .u64(0, name.as_ptr() as u64)
        .u32(8, prog.as_raw_fd() as u32);
    bpf(BPF_RAW_TRACEPOINT_OPEN, &mut a).map(fd)
}

/// Takes the oldest value off queue `map` into `into`; `false` when the
/// queue is empty.
pub fn pop(map: &OwnedFd, into: &mut [u8]) -> std::io::Result<bool> {
    let mut a = Attr::new()
        .u32(0, map.as_raw_fd() as u32)
        .u64(16, into.as_mut_ptr() as u64);
    match bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM, &mut a) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}
