//! The BPF program behind the drop watch, as instructions (pure). It runs
//! on the `kfree_skb` raw tracepoint (`skb, location, reason, ...`) and
//! pushes one [`DropRecord`](super::drops::DropRecord) per dropped packet
//! onto a queue map. Field offsets inside the kernel's structures differ
//! between builds, so they are parameters, read from the kernel's BTF at
//! load time; reading through `bpf_probe_read_kernel` makes the program
//! valid on any kernel since 5.5 that has the tracepoint with a reason
//! (5.17 on). A hundred instructions do not warrant a compiler toolchain.

use super::drops::{WINDOW, at};

/// Where the fields the program reads lie in the running kernel, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelOffsets {
    /// In `struct sk_buff`.
    pub skb_dev: i32,
    pub skb_head: i32,
    pub skb_data: i32,
    pub skb_len: i32,
    pub skb_mac_header: i32,
    pub skb_network_header: i32,
    pub skb_tail: i32,
    pub skb_protocol: i32,
    /// In `struct net_device`.
    pub dev_ifindex: i32,
    /// `net_device.nd_net.net`.
    pub dev_net: i32,
    /// `net.ns.inum`.
    pub net_inum: i32,
}

/// One BPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The 8 bytes the kernel reads (registers packed dst low, src high).
    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0x0f) | (self.src << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// Opcodes (include/uapi/linux/bpf.h, bpf_common.h).
const MOV64_IMM: u8 = 0xb7;
const MOV64_REG: u8 = 0xbf;
const ADD64_IMM: u8 = 0x07;
const ADD64_REG: u8 = 0x0f;
const LDX_DW: u8 = 0x79;
const LDX_H: u8 = 0x69;
const STX_DW: u8 = 0x7b;
const ST_DW: u8 = 0x7a;
const ST_W: u8 = 0x62;
const ST_H: u8 = 0x6a;
const JEQ_IMM: u8 = 0x15;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;
/// `src` of an `LD_IMM64` whose immediate is a map's file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

const HELPER_MAP_PUSH_ELEM: i32 = 87;
const HELPER_PROBE_READ_KERNEL: i32 = 113;

// Registers: r1-r5 helper arguments, r0 result, r6-r9 kept across calls,
// r10 the frame pointer.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const FP: u8 = 10;

/// The record's place on the stack, below the frame pointer.
const RECORD: i16 = -(super::drops::RECORD_SIZE as i16);

struct Asm(Vec<Insn>);

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.0.push(Insn {
            code,
            dst,
            src,
            off,
            imm,
        });
    }

    /// `bpf_probe_read_kernel(fp + RECORD + field, size, base + off)`; on
    /// failure the helper zeroes the field.
    fn read(&mut self, field: i16, size: i32, base: u8, off: i32) {
        self.op(MOV64_REG, R1, FP, 0, 0);
        self.op(ADD64_IMM, R1, 0, 0, i32::from(RECORD + field));
        self.op(MOV64_IMM, R2, 0, 0, size);
        self.op(MOV64_REG, R3, base, 0, 0);
        self.op(ADD64_IMM, R3, 0, 0, off);
        self.op(CALL, 0, 0, 0, HELPER_PROBE_READ_KERNEL);
    }

    /// A forward `if reg == imm goto` whose target is set by [`Asm::land`].
    fn jeq(&mut self, reg: u8, imm: i32) -> usize {
        self.op(JEQ_IMM, reg, 0, 0, imm);
        self.0.len() - 1
    }

    /// Points the jump at `from` to the next instruction.
    fn land(&mut self, from: usize) {
        self.0[from].off = (self.0.len() - from - 1) as i16;
    }
}

/// The program for a kernel with `offsets`, pushing onto the queue map
/// `map_fd`, skipping frees whose reason is `not_specified` (most of those
/// are packets consumed, not dropped).
pub fn program(offsets: &KernelOffsets, map_fd: i32, not_specified: u32) -> Vec<Insn> {
    let o = offsets;
    let mut a = Asm(Vec::new());
    a.op(MOV64_REG, R6, R1, 0, 0);
    // reason (args[2]); nothing to report for an unspecified one.
    a.op(LDX_DW, R0, R6, 16, 0);
    let unspecified = a.jeq(R0, not_specified as i32);
    a.op(STX_DW, FP, R0, RECORD + at::REASON, 0);
    a.op(LDX_DW, R0, R6, 8, 0);
    a.op(STX_DW, FP, R0, RECORD + at::LOCATION, 0);
    a.op(LDX_DW, R7, R6, 0, 0);
    a.read(at::DEV, 8, R7, o.skb_dev);
    a.read(at::HEAD, 8, R7, o.skb_head);
    a.read(at::DATA, 8, R7, o.skb_data);
    a.read(at::LEN, 4, R7, o.skb_len);
    a.read(at::MAC_HEADER, 2, R7, o.skb_mac_header);
    a.read(at::NETWORK_HEADER, 2, R7, o.skb_network_header);
    a.read(at::TAIL, 4, R7, o.skb_tail);
    a.read(at::PROTOCOL, 2, R7, o.skb_protocol);
    a.op(ST_H, FP, 0, RECORD + at::PAD, 0);
    a.op(ST_W, FP, 0, RECORD + at::IFINDEX, 0);
    a.op(ST_W, FP, 0, RECORD + at::NETNS, 0);
    a.op(ST_DW, FP, 0, RECORD + at::NET, 0);
    // The device, and through it the namespace, when there is one.
    a.op(LDX_DW, R8, FP, RECORD + at::DEV, 0);
    let no_dev = a.jeq(R8, 0);
    a.read(at::IFINDEX, 4, R8, o.dev_ifindex);
    a.read(at::NET, 8, R8, o.dev_net);
    a.op(LDX_DW, R8, FP, RECORD + at::NET, 0);
    let no_net = a.jeq(R8, 0);
    a.read(at::NETNS, 4, R8, o.net_inum);
    a.land(no_dev);
    a.land(no_net);
    // The bytes from the link header when it is set, else from data.
    a.op(LDX_DW, R8, FP, RECORD + at::DATA, 0);
    a.op(LDX_H, R0, FP, RECORD + at::MAC_HEADER, 0);
    let unset = a.jeq(R0, 0xffff);
    a.op(LDX_DW, R8, FP, RECORD + at::HEAD, 0);
    a.op(ADD64_REG, R8, R0, 0, 0);
    a.land(unset);
    a.read(at::BYTES, WINDOW as i32, R8, 0);
    // bpf_map_push_elem(map, record, 0): when the queue is full the newest
    // is lost (4096 entries read every 10 ms: far above what a node drops).
    a.op(LD_IMM64, R1, PSEUDO_MAP_FD, 0, map_fd);
    a.op(0, 0, 0, 0, 0);
    a.op(MOV64_REG, R2, FP, 0, 0);
    a.op(ADD64_IMM, R2, 0, 0, i32::from(RECORD));
    a.op(MOV64_IMM, R3, 0, 0, 0);
    a.op(CALL, 0, 0, 0, HELPER_MAP_PUSH_ELEM);
    a.land(unspecified);
    a.op(MOV64_IMM, R0, 0, 0, 0);
    a.op(EXIT, 0, 0, 0, 0);
    a.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFSETS: KernelOffsets = KernelOffsets {
        skb_dev: 16,
        skb_head: 192,
        skb_data: 200,
        skb_len: 112,
        skb_mac_header: 186,
        skb_network_header: 184,
        skb_tail: 180,
        skb_protocol: 178,
        dev_ifindex: 224,
        dev_net: 264,
        net_inum: 152,
    };

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        let i = Insn {
            code: LDX_DW,
            dst: R7,
            src: R6,
            off: -8,
            imm: 0x1234,
        };
        assert_eq!(i.encode(), [0x79, 0x67, 0xf8, 0xff, 0x34, 0x12, 0, 0]);
    }

    #[test]
    fn jumps_land_inside_the_program_and_it_ends_with_exit() {
        let p = program(&OFFSETS, 5, 2);
        assert_eq!(p.last().unwrap().code, EXIT);
        for (n, i) in p.iter().enumerate() {
            if i.code == JEQ_IMM {
                let to = n as i64 + 1 + i64::from(i.off);
                assert!(i.off > 0 && (to as usize) < p.len(), "jump at {n}");
            }
        }
        // The first jump skips to `r0 = 0; exit` on an unspecified reason.
        assert_eq!(p[2].imm, 2);
        let to = 2 + 1 + p[2].off as usize;
        assert_eq!((p[to].code, p[to + 1].code), (MOV64_IMM, EXIT));
        // The map's descriptor is where the kernel looks for it.
        let ld = p.iter().position(|i| i.code == LD_IMM64).unwrap();
        assert_eq!(
            (p[ld].src, p[ld].imm, p[ld + 1].code),
            (PSEUDO_MAP_FD, 5, 0)
        );
        // Every stack access stays inside the record.
        for i in &p {
            if i.dst == FP && i.code != MOV64_REG {
                assert!(i.off >= RECORD && i.off < 0, "{i:?}");
            }
        }
    }
}
