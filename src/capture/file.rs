//! Capture files: writing pcapng with one interface block per captured
//! interface (its name and nanosecond timestamps), and reading pcap or
//! pcapng back into (interface, timestamp, frame) for the same decoding
//! and correlation as a live capture.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};

use crate::error::{Error, Result};

/// One frame from a file.
#[derive(Debug, Clone)]
pub struct FileFrame {
    pub iface: String,
    /// Since the epoch.
    pub ts: Duration,
    pub len: u32,
    pub data: Vec<u8>,
}

/// A pcapng file being written.
pub struct PcapNgOut {
    writer: PcapNgWriter<BufWriter<File>>,
    ifaces: Vec<String>,
}

impl PcapNgOut {
    /// Creates `path` and declares one Ethernet interface per name.
    pub fn create(path: &Path, ifaces: &[String], snaplen: u32) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let err = |e: pcap_file::PcapError| Error::env(format!("{}: {e}", path.display()), None);
        let mut writer = PcapNgWriter::new(BufWriter::new(file)).map_err(err)?;
        for name in ifaces {
            writer
                .write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: DataLink::ETHERNET,
                    snaplen,
                    options: vec![
                        InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                        InterfaceDescriptionOption::IfTsResol(9),
                    ],
                })
                .map_err(err)?;
        }
        Ok(PcapNgOut {
            writer,
            ifaces: ifaces.to_vec(),
        })
    }

    /// Appends a frame seen on `iface` at `ts` (since the epoch).
    pub fn write(&mut self, iface: &str, ts: Duration, len: u32, data: &[u8]) -> Result<()> {
        let interface_id = self.ifaces.iter().position(|i| i == iface).unwrap_or(0) as u32;
        self.writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id,
                timestamp: ts,
                original_len: len,
                data: Cow::Borrowed(data),
                options: Vec::new(),
            })
            .map_err(|e| Error::env(format!("writing pcapng: {e}"), None))?;
        Ok(())
    }
}

/// Reads a pcap or pcapng file (by its magic number).
pub fn read(path: &Path) -> Result<Vec<FileFrame>> {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| Error::io(path, e))?;
    let file = BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?);
    let bad = |e: pcap_file::PcapError| Error::Parse {
        path: path.to_path_buf(),
        what: e.to_string(),
    };
    let mut out = Vec::new();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut reader = PcapNgReader::new(file).map_err(bad)?;
        let mut ifaces: Vec<(String, u8)> = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.map_err(bad)? {
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
                    ifaces.push((name, resol));
                }
                Block::EnhancedPacket(epb) => {
                    let (name, resol) = ifaces
                        .get(epb.interface_id as usize)
                        .cloned()
                        .unwrap_or_else(|| (format!("if{}", epb.interface_id), 6));
                    // pcap-file hands over the raw count as nanoseconds; rescale by the interface's resolution.
                    let raw = epb.timestamp.as_nanos();
                    let ts = match resol {
                        9 => Duration::from_nanos(raw as u64),
                        6 => Duration::from_micros(raw as u64),
                        r if r < 9 => Duration::from_nanos((raw * 10u128.pow(9 - r as u32)) as u64),
                        _ => Duration::from_nanos(raw as u64),
                    };
                    out.push(FileFrame {
                        iface: name,
                        ts,
                        len: epb.original_len,
                        data: epb.data.to_vec(),
                    });
                }
                _ => {}
            }
        }
    } else {
        let mut reader = pcap_file::pcap::PcapReader::new(file).map_err(bad)?;
        while let Some(p) = reader.next_packet() {
            let p = p.map_err(bad)?;
            out.push(FileFrame {
                iface: "-".into(),
                ts: p.timestamp,
                len: p.orig_len,
                data: p.data.to_vec(),
            });
        }
    }
    Ok(out)
}
