//! Capture files: writing pcapng with one interface block per captured
//! interface (its name and nanosecond timestamps), and reading pcap or
//! pcapng back into (interface, timestamp, frame) for the same decoding
//! and correlation as a live capture.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::Path;
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};

use crate::capture::link::Link;
use crate::error::{Error, Result};
use crate::files;

/// One frame from a file.
#[derive(Debug, Clone)]
pub struct FileFrame {
    pub iface: String,
    pub link: Link,
    /// Since the epoch.
    pub ts: Duration,
    pub len: u32,
    pub data: Vec<u8>,
}

/// A pcapng file being written: into a temporary file beside the target
/// that becomes the target only on [`PcapNgOut::finish`], so a failed or
/// abandoned capture leaves an earlier file of that name as it was, and a
/// symlink at the path is replaced, never written through.
pub struct PcapNgOut {
    writer: PcapNgWriter<BufWriter<files::Output>>,
    ifaces: Vec<String>,
    path: std::path::PathBuf,
    /// Frames not yet written, by time: each interface's capture thread
    /// hands its frames over on its own schedule, so a frame can arrive
    /// after a later one from another interface.
    pending: BinaryHeap<Reverse<Pending>>,
    /// The latest timestamp written to `pending`.
    newest: Duration,
    /// Frames written to the file so far.
    written: u64,
}

/// How long a frame waits for earlier frames of other interfaces (their
/// threads are milliseconds apart; this is hundreds of times that).
const REORDER_WINDOW: Duration = Duration::from_millis(500);

/// A frame waiting in [`PcapNgOut::pending`]: ordered by time, then by
/// arrival (frames of one interface keep their order).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    ts: Duration,
    arrival: u64,
    interface_id: u32,
    len: u32,
    data: Vec<u8>,
}

/// Declares one Ethernet interface per name, nanosecond timestamps.
fn declare<W: std::io::Write>(
    writer: &mut PcapNgWriter<W>,
    ifaces: &[String],
    snaplen: u32,
) -> std::result::Result<(), pcap_file::PcapError> {
    for name in ifaces {
        writer.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        })?;
    }
    Ok(())
}

/// A pcapng capture in memory: `frames` are (interface, time since the
/// epoch, length on the wire, bytes), each interface one of `ifaces`.
pub fn pcapng_bytes<'a>(
    ifaces: &[String],
    snaplen: u32,
    frames: impl IntoIterator<Item = (&'a str, Duration, u32, &'a [u8])>,
) -> Result<Vec<u8>> {
    let err = |e: pcap_file::PcapError| Error::internal(format!("writing pcapng to memory: {e}"));
    let mut writer = PcapNgWriter::new(Vec::new()).map_err(err)?;
    declare(&mut writer, ifaces, snaplen).map_err(err)?;
    for (iface, ts, len, data) in frames {
        writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: ifaces.iter().position(|i| i == iface).unwrap_or(0) as u32,
                timestamp: ts,
                original_len: len,
                data: Cow::Borrowed(data),
                options: Vec::new(),
            })
            .map_err(err)?;
    }
    Ok(writer.into_inner())
}

impl PcapNgOut {
    /// Starts `path` and declares one Ethernet interface per name.
    pub fn create(path: &Path, ifaces: &[String], snaplen: u32) -> Result<Self> {
        let file = files::Output::create(path, files::Replace::Yes)?;
        let err = |e: pcap_file::PcapError| Error::env(format!("{}: {e}", path.display()), None);
        let mut writer = PcapNgWriter::new(BufWriter::new(file)).map_err(err)?;
        declare(&mut writer, ifaces, snaplen).map_err(err)?;
        Ok(PcapNgOut {
            writer,
            ifaces: ifaces.to_vec(),
            path: path.to_path_buf(),
            pending: BinaryHeap::new(),
            newest: Duration::ZERO,
            written: 0,
        })
    }

    /// Writes everything out and puts the file in place; an error (a full
    /// disk) is reported and the target left as it was.
    pub fn finish(mut self) -> Result<()> {
        self.flush_until(None)?;
        let path = self.path;
        self.writer
            .into_inner()
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?
            .commit()
    }

    /// Adds a frame seen on `iface` at `ts` (since the epoch); frames are
    /// written in time order across interfaces.
    pub fn write(&mut self, iface: &str, ts: Duration, len: u32, data: &[u8]) -> Result<()> {
        let interface_id = self.ifaces.iter().position(|i| i == iface).unwrap_or(0) as u32;
        let arrival = self.pending.len() as u64 + self.written;
        self.pending.push(Reverse(Pending {
            ts,
            arrival,
            interface_id,
            len,
            data: data.to_vec(),
        }));
        self.newest = self.newest.max(ts);
        self.flush_until(Some(self.newest.saturating_sub(REORDER_WINDOW)))
    }

    /// Writes the pending frames older than `before` (all of them: `None`).
    fn flush_until(&mut self, before: Option<Duration>) -> Result<()> {
        while self
            .pending
            .peek()
            .is_some_and(|Reverse(p)| before.is_none_or(|b| p.ts < b))
        {
            let Some(Reverse(p)) = self.pending.pop() else {
                break;
            };
            self.written += 1;
            self.writer
                .write_pcapng_block(EnhancedPacketBlock {
                    interface_id: p.interface_id,
                    timestamp: p.ts,
                    original_len: p.len,
                    data: Cow::Owned(p.data),
                    options: Vec::new(),
                })
                .map_err(|e| Error::env(format!("{}: {e}", self.path.display()), None))?;
        }
        Ok(())
    }
}

/// Reads a pcap or pcapng file (by its magic number) into owned frames.
pub fn read(path: &Path) -> Result<Vec<FileFrame>> {
    let mut out = Vec::new();
    for_each(path, |iface, link, ts, len, data| {
        out.push(FileFrame {
            iface: iface.to_string(),
            link,
            ts,
            len,
            data: data.to_vec(),
        })
    })?;
    Ok(out)
}

/// Streams a pcap or pcapng file (by its magic number): `f(interface, its
/// link type, time since the epoch, length on the wire, the bytes)` per
/// frame, the bytes borrowed from the reader's buffer. Returns the number
/// of frames. A file that is empty, cut short, corrupt or of a link type
/// the decoder does not read is one error naming the file and the byte
/// offset where reading stopped (exit 2).
pub fn for_each(path: &Path, f: impl FnMut(&str, Link, Duration, u32, &[u8])) -> Result<usize> {
    let mut head = Vec::with_capacity(12);
    File::open(path)
        .and_then(|file| file.take(12).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    if head.len() < 4 {
        return Err(bad_file(
            path,
            0,
            format!("{} bytes, not a capture (pcap or pcapng)", head.len()),
        ));
    }
    // The pcap readers buffer on their own.
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    for_each_from(file, &head, path, f)
}

/// [`for_each`] over a capture held in memory (an agent's answer);
/// `origin` names it in errors.
pub fn for_each_bytes(
    bytes: &[u8],
    origin: &Path,
    f: impl FnMut(&str, Link, Duration, u32, &[u8]),
) -> Result<usize> {
    if bytes.len() < 4 {
        return Err(bad_file(
            origin,
            0,
            format!("{} bytes, not a capture (pcap or pcapng)", bytes.len()),
        ));
    }
    for_each_from(bytes, &bytes[..bytes.len().min(12)], origin, f)
}

fn bad_file(path: &Path, offset: u64, what: impl std::fmt::Display) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        what: format!("at byte {offset}: {what}"),
    }
}

/// What pcap_file says of a record it cannot read, in a reader's words.
fn record_error(e: pcap_file::PcapError) -> String {
    match e {
        pcap_file::PcapError::IncompleteBuffer => {
            "the file ends inside a record (cut short?)".into()
        }
        pcap_file::PcapError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends inside a record (cut short?)".into()
        }
        other => other.to_string(),
    }
}

/// The link type with LINKTYPE number `code`, or an error that names it.
fn link_of(path: &Path, offset: u64, code: u32) -> Result<Link> {
    Link::from_code(code).ok_or_else(|| {
        bad_file(
            path,
            offset,
            format!(
                "link type {code} ({:?}) is not one knetdoctor decodes; it reads {}",
                DataLink::from(code),
                Link::READ
            ),
        )
    })
}

fn for_each_from(
    file: impl Read,
    head: &[u8],
    path: &Path,
    mut f: impl FnMut(&str, Link, Duration, u32, &[u8]),
) -> Result<usize> {
    let mut count = 0;
    if head.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut reader = PcapNgReader::new(file).map_err(|e| bad_file(path, 0, record_error(e)))?;
        // After the section header block the reader consumed.
        let mut offset = first_block_len(head);
        let mut ifaces: Vec<(String, u8, Link)> = Vec::new();
        let mut big_endian = reader.section().endianness == pcap_file::Endianness::Big;
        while let Some(raw) = reader.next_raw_block() {
            let raw = raw.map_err(|e| bad_file(path, offset, record_error(e)))?;
            let len = u64::from(raw.initial_len);
            // A new section may change the byte order: its magic says.
            if raw.type_ == 0x0a0d_0d0a {
                big_endian = raw.body.starts_with(&[0x1a, 0x2b, 0x3c, 0x4d]);
            }
            let block = if big_endian {
                raw.try_into_block::<byteorder_slice::BigEndian>()
            } else {
                raw.try_into_block::<byteorder_slice::LittleEndian>()
            }
            .map_err(|e| bad_file(path, offset, record_error(e)))?;
            match block {
                Block::InterfaceDescription(idb) => {
                    let name = idb
                        .options
                        .iter()
                        .find_map(|o| match o {
                            InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                            _ => None,
                        })
                        .unwrap_or_else(|| format!("if{}", ifaces.len()));
                    let resol = idb
                        .options
                        .iter()
                        .find_map(|o| match o {
                            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                            _ => None,
                        })
                        .unwrap_or(6);
                    let link = link_of(path, offset, u32::from(idb.linktype))?;
                    ifaces.push((name, resol, link));
                }
                Block::SectionHeader(_) => ifaces.clear(),
                Block::EnhancedPacket(epb) => {
                    let Some((name, resol, link)) = ifaces.get(epb.interface_id as usize) else {
                        return Err(bad_file(
                            path,
                            offset,
                            format!(
                                "a packet on interface {}, which no interface block describes",
                                epb.interface_id
                            ),
                        ));
                    };
                    // pcap-file hands over the raw count as nanoseconds; rescale by the interface's resolution.
                    let raw = epb.timestamp.as_nanos();
                    let ts = match *resol {
                        9 => Duration::from_nanos(raw as u64),
                        6 => Duration::from_micros(raw as u64),
                        r if r < 9 => Duration::from_nanos((raw * 10u128.pow(9 - r as u32)) as u64),
                        _ => Duration::from_nanos(raw as u64),
                    };
                    f(name, *link, ts, epb.original_len, &epb.data);
                    count += 1;
                }
                _ => {}
            }
            offset += len;
        }
    } else {
        let mut reader = pcap_file::pcap::PcapReader::new(file)
            .map_err(|e| bad_file(path, 0, record_error(e)))?;
        let link = link_of(path, 20, u32::from(reader.header().datalink))?;
        // The global header, then a 16-byte header and the bytes per record.
        let mut offset = 24u64;
        while let Some(p) = reader.next_packet() {
            let p = p.map_err(|e| bad_file(path, offset, record_error(e)))?;
            f("-", link, p.timestamp, p.orig_len, &p.data);
            offset += 16 + p.data.len() as u64;
            count += 1;
        }
    }
    Ok(count)
}

/// The length of a pcapng file's first block (its section header), from
/// the file's first 12 bytes: type, length, byte-order magic.
fn first_block_len(head: &[u8]) -> u64 {
    let Some(len) = head.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
        return 0;
    };
    match head.get(8..12) {
        Some([0x1a, 0x2b, 0x3c, 0x4d]) => u64::from(u32::from_be_bytes(len)),
        _ => u64::from(u32::from_le_bytes(len)),
    }
}

/// `capture --read FILE` without JSON: one line per frame like `tcpdump
/// -nn`, time since the first frame and interface first, through the fast
/// [`view`](super::view) where it fits; DNS queries that got no answer are
/// flagged by `dns` as they expire (`! DNS query ...`). Returns the frames read.
pub fn print_lines(
    path: &Path,
    vxlan_ports: &[u16],
    dns: &mut super::dns_watch::DnsWatch,
    out: &mut impl std::io::Write,
) -> Result<usize> {
    let mut first: Option<Duration> = None;
    let mut line = Vec::with_capacity(256);
    let mut failed = None;
    let n = for_each(path, |iface, link, ts, _len, data| {
        if failed.is_some() {
            return;
        }
        let at = ts.saturating_sub(*first.get_or_insert(ts));
        line.clear();
        super::sink::write_prefix(&mut line, at, iface);
        if let Some(f) = super::view::write_line_link(data, link, vxlan_ports, &mut line) {
            for q in dns.observe(iface, at.as_secs_f64(), &f) {
                line.extend_from_slice(b"\n! ");
                line.extend_from_slice(q.line().as_bytes());
            }
        }
        line.push(b'\n');
        if let Err(e) = out.write_all(&line) {
            failed = Some(e);
        }
    })?;
    match failed {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(n),
        Some(e) => Err(Error::env(format!("writing the output: {e}"), None)),
        None => Ok(n),
    }
}

/// `capture --read FILE --group` without printing every frame: the packets
/// seen on more than one interface, keyed through the fast view. This
/// thread reads and keys the frames; two correlators, each on its own
/// thread, take the packets by key, so both cores work.
pub fn correlate(
    path: &Path,
    vxlan_ports: &[u16],
) -> Result<(usize, Vec<super::correlate::Group>)> {
    use super::correlate::{Correlator, PacketKey, frame_key, icmp_kind, view_key};
    use std::sync::mpsc::sync_channel;
    /// One keyed sighting on its way to a correlator.
    type Item = (
        u64,
        u16,
        f64,
        PacketKey,
        Option<super::correlate::Outer>,
        Option<super::decode::IcmpKind>,
    );
    const SHARDS: usize = 2;
    const BATCH: usize = 4096;
    std::thread::scope(|scope| {
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..SHARDS {
            let (tx, rx) = sync_channel::<Vec<Item>>(8);
            senders.push(tx);
            workers.push(scope.spawn(move || {
                let mut c = Correlator::default();
                for batch in rx {
                    for (order, iface, at, key, vni, kind) in batch {
                        c.push_indexed(order, iface, at, key, vni, kind.as_ref());
                    }
                }
                c
            }));
        }
        let mut batches: Vec<Vec<Item>> = (0..SHARDS).map(|_| Vec::with_capacity(BATCH)).collect();
        let mut labels: Vec<String> = Vec::new();
        let mut first: Option<Duration> = None;
        let mut order = 0u64;
        let read = for_each(path, |iface, link, ts, _len, data| {
            let at = ts.saturating_sub(*first.get_or_insert(ts)).as_secs_f64();
            let keyed = match super::view::view_link(data, link, vxlan_ports) {
                Some(v) => {
                    let (key, vni) = view_key(&v);
                    Some((key, vni, None))
                }
                None => {
                    let f = super::decode::decode_link(data, link, vxlan_ports);
                    frame_key(&f).map(|(key, vni)| (key, vni, icmp_kind(&f).cloned()))
                }
            };
            let Some((key, vni, kind)) = keyed else {
                return;
            };
            // `-i any` in SLL2 names the interface by index: follow the
            // packet across those as across named ones.
            let ifindex = match link {
                Link::LinuxSll2 => super::link::strip(link, data)
                    .ok()
                    .and_then(|s| s.cooked.ifindex),
                _ => None,
            };
            let label: Cow<str> = match ifindex {
                Some(n) if iface == "-" => Cow::Owned(format!("ifindex {n}")),
                Some(n) => Cow::Owned(format!("{iface} ifindex {n}")),
                None => Cow::Borrowed(iface),
            };
            let i = match labels.iter().position(|l| *l == label) {
                Some(i) => i,
                None => {
                    labels.push(label.into_owned());
                    labels.len() - 1
                }
            } as u16;
            let shard = key.shard(SHARDS);
            batches[shard].push((order, i, at, key, vni, kind));
            order += 1;
            if batches[shard].len() == BATCH {
                let full = std::mem::replace(&mut batches[shard], Vec::with_capacity(BATCH));
                let _ = senders[shard].send(full);
            }
        });
        for (tx, batch) in senders.into_iter().zip(batches) {
            let _ = tx.send(batch);
        }
        let correlators: Vec<Correlator> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| Error::internal("a correlating worker panicked"))
            })
            .collect::<Result<_>>()?;
        let n = read?;
        // Name the groups on both threads, then merge them by first sighting.
        let labels = &labels;
        let parts: Vec<Vec<(u64, super::correlate::Group)>> = std::thread::scope(|s| {
            let handles: Vec<_> = correlators
                .into_iter()
                .map(|c| s.spawn(move || c.groups_ordered(labels)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| Error::internal("a grouping worker panicked"))
                })
                .collect::<Result<_>>()
        })?;
        let mut all: Vec<(u64, super::correlate::Group)> = parts.into_iter().flatten().collect();
        all.sort_by_key(|(o, _)| *o);
        Ok((n, all.into_iter().map(|(_, g)| g).collect()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_with(link: DataLink, frames: &[&[u8]]) -> Vec<u8> {
        let header = pcap_file::pcap::PcapHeader {
            datalink: link,
            ..Default::default()
        };
        let mut w = pcap_file::pcap::PcapWriter::with_header(Vec::new(), header).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.write_packet(&pcap_file::pcap::PcapPacket::new(
                Duration::from_millis(i as u64),
                f.len() as u32,
                f,
            ))
            .unwrap();
        }
        w.into_writer()
    }

    fn read_bytes(bytes: &[u8]) -> Result<Vec<(Link, Vec<u8>)>> {
        let mut out = Vec::new();
        for_each_bytes(bytes, Path::new("t.pcap"), |_, link, _, _, d| {
            out.push((link, d.to_vec()))
        })?;
        Ok(out)
    }

    #[test]
    fn each_file_link_type_reaches_the_decoder_and_unknown_ones_are_named() {
        let sll2 = [
            0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x45,
        ];
        let got = read_bytes(&pcap_with(DataLink::LINUX_SLL2, &[&sll2])).unwrap();
        assert_eq!(got, [(Link::LinuxSll2, sll2.to_vec())]);
        let got = read_bytes(&pcap_with(DataLink::RAW, &[&[0x45]])).unwrap();
        assert_eq!(got[0].0, Link::RawIp);
        let e = read_bytes(&pcap_with(DataLink::USER0, &[&[0x45]])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains("t.pcap") && e.to_string().contains("link type 147"),
            "{e}"
        );
    }

    #[test]
    fn bad_files_are_one_error_with_the_file_and_offset() {
        let e = read_bytes(&[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("at byte 0: 0 bytes"), "{e}");
        let good = pcap_with(DataLink::ETHERNET, &[&[1u8; 60], &[2u8; 60]]);
        // Cut inside the second record: 24 + (16 + 60) bytes read fine.
        let e = read_bytes(&good[..good.len() - 10]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .contains("at byte 100: the file ends inside a record"),
            "{e}"
        );
        let e = read_bytes(b"not a capture at all").unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains("at byte 0"), "{e}");
    }

    #[test]
    fn frames_are_written_in_time_order_across_interfaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pcapng");
        let ifaces = ["cni0".to_string(), "eth0".to_string()];
        let mut w = PcapNgOut::create(&path, &ifaces, 65535).unwrap();
        // eth0's thread hands over its frame after cni0's later one.
        for (iface, ms) in [
            ("cni0", 10),
            ("cni0", 30),
            ("eth0", 20),
            ("eth0", 25),
            ("cni0", 900),
        ] {
            w.write(iface, Duration::from_millis(ms), 1, &[ms as u8])
                .unwrap();
        }
        w.finish().unwrap();
        let got: Vec<(String, u128)> = read(&path)
            .unwrap()
            .into_iter()
            .map(|f| (f.iface, f.ts.as_millis()))
            .collect();
        assert_eq!(
            got,
            [
                ("cni0".to_string(), 10),
                ("eth0".to_string(), 20),
                ("eth0".to_string(), 25),
                ("cni0".to_string(), 30),
                ("cni0".to_string(), 900)
            ]
        );
    }

    #[test]
    fn the_two_core_correlation_of_a_file_equals_the_single_one() {
        use crate::capture::decode::{VXLAN_PORTS, decode};
        use crate::capture::test_frames::{icmp_echo, in_vxlan};
        let path = std::env::temp_dir().join(format!("kd-corr-{}.pcap", std::process::id()));
        let mut frames = Vec::new();
        for i in 0..3000u16 {
            let echo = icmp_echo([10, 2, (i % 7) as u8, 2], [10, 2, 0, 42], i);
            frames.push(echo.clone());
            if i % 3 != 0 {
                frames.push(in_vxlan(&echo, 1));
            }
        }
        {
            let mut w = pcap_file::pcap::PcapWriter::new(File::create(&path).unwrap()).unwrap();
            for (i, f) in frames.iter().enumerate() {
                w.write_packet(&pcap_file::pcap::PcapPacket::new(
                    Duration::from_micros(1_000_000 + 10 * i as u64),
                    f.len() as u32,
                    f,
                ))
                .unwrap();
            }
        }
        let (n, parallel) = correlate(&path, &VXLAN_PORTS).unwrap();
        let _ = std::fs::remove_file(&path);
        let single = crate::capture::correlate::correlate(
            &frames
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    (
                        "-".to_string(),
                        (10 * i) as f64 / 1e6,
                        decode(f, &VXLAN_PORTS),
                    )
                })
                .collect::<Vec<_>>(),
        );
        assert_eq!(n, frames.len());
        assert_eq!(parallel.len(), 2000);
        assert_eq!(parallel, single);
    }
}
