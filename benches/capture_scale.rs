//! `cargo bench --bench capture_scale`: a pcap of 1,000,000 frames (flannel
//! VXLAN carrying pod TCP and ICMP, mixed with plain pod traffic as on
//! cni0) is generated here, then read side by side by knetdoctor's decoder
//! and by `tcpdump -nn -r` and `tshark -r … -d udp.port==8472,vxlan`:
//! packets per second, peak memory and the ratios.

mod common;
use common::env;

use std::io::{BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use knetdoctor::capture::{decode::VXLAN_PORTS, file};

/// Frame i, as a capture on cni0 and eth0 of a busy flannel node sees
/// them: of every three, a pod's packet on cni0, the same packet
/// encapsulated on eth0 (so the two correlate), and another pod's packet
/// only seen encapsulated. Inner packets are TCP or ICMP echo.
fn frame(i: usize) -> Vec<u8> {
    let (k, r) = (i / 3, i % 3);
    let packet = if r == 2 { 2 * k + 1 } else { 2 * k };
    let inner = pod_packet(packet);
    if r == 0 {
        return inner;
    }
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    payload.extend_from_slice(&inner);
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 1, 2])
        .ipv4(
            [192, 168, 56, (i % 200) as u8 + 10],
            [192, 168, 56, ((i + 1) % 200) as u8 + 10],
            64,
        )
        .udp(40000 + (i % 1000) as u16, 8472)
        .write(&mut out, &payload)
        .unwrap();
    out
}

/// Pod packet i: TCP with 40 bytes of payload or an ICMP echo request.
fn pod_packet(i: usize) -> Vec<u8> {
    let pod = |n: usize| [10, 2, (n % 200) as u8, (n % 250 + 2) as u8];
    let mut inner = Vec::new();
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(
        pod(i),
        pod(i + 7),
        64,
    );
    if i.is_multiple_of(2) {
        builder
            .tcp(40000 + (i % 20000) as u16, 80, i as u32, 64240)
            .ack(1)
            .write(&mut inner, &[0u8; 40])
            .unwrap();
    } else {
        builder
            .icmpv4_echo_request((i % 65535) as u16, 1)
            .write(&mut inner, &[0u8; 56])
            .unwrap();
    }
    inner
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Runs a command with stdout to /dev/null; (seconds, peak RSS MiB) via GNU time.
fn timed(cmd: &[&str]) -> Option<(f64, f64)> {
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .args(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .ok()?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        eprintln!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    let kb: f64 = String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()?;
    Some((secs, kb / 1024.0))
}

/// Writes frames `0..n` of `frame` to a pcap of link type `link`, one
/// microsecond apart.
fn write_pcap(
    path: &std::path::Path,
    link: pcap_file::DataLink,
    n: usize,
    frame: impl Fn(usize) -> Vec<u8>,
) {
    let header = pcap_file::pcap::PcapHeader {
        datalink: link,
        ..Default::default()
    };
    let file = std::fs::File::create(path).unwrap();
    let mut w = pcap_file::pcap::PcapWriter::with_header(BufWriter::new(file), header).unwrap();
    for i in 0..n {
        let data = frame(i);
        w.write_packet(&pcap_file::pcap::PcapPacket::new(
            Duration::from_micros(1_700_000_000_000_000 + i as u64),
            data.len() as u32,
            &data,
        ))
        .unwrap();
    }
}

fn main() {
    knetdoctor::without_huge_pages();
    let n = env("KD_BENCH_FRAMES", 1_000_000);
    let path = std::env::temp_dir().join(format!("knetdoctor-bench-{}.pcap", std::process::id()));
    write_pcap(&path, pcap_file::DataLink::ETHERNET, n, frame);
    let mib = std::fs::metadata(&path).unwrap().len() as f64 / 1048576.0;
    println!(
        "generated {n} frames ({mib:.0} MiB): 1/3 plain pod TCP/ICMP (cni0), 2/3 flannel VXLAN carrying pod TCP or ICMP (eth0), half of them the cni0 packets again"
    );
    let p = path.to_str().unwrap();

    // knetdoctor: decode and print one line per frame (as tcpdump does),
    // exactly what `knetdoctor capture --read FILE` runs.
    let t = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create("/dev/null").unwrap());
    let mut dns = knetdoctor::capture::dns_watch::DnsWatch::new(2.0);
    let count = file::print_lines(&path, &VXLAN_PORTS, &mut dns, &mut out).unwrap();
    out.flush().unwrap();
    let print_secs = t.elapsed().as_secs_f64();
    assert_eq!(count, n);

    // Where the time goes: reading alone, then reading and viewing.
    let t = Instant::now();
    file::for_each(&path, |_, _, _, _, d| {
        std::hint::black_box(d);
    })
    .unwrap();
    let read_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    file::for_each(&path, |_, _, _, _, d| {
        std::hint::black_box(knetdoctor::capture::view::view(d, &VXLAN_PORTS));
    })
    .unwrap();
    let view_secs = t.elapsed().as_secs_f64();
    println!(
        "knetdoctor, reading only: {read_secs:.2} s; reading + viewing every frame: {view_secs:.2} s"
    );

    // knetdoctor: decode and correlate, no printing (`capture --read FILE
    // --group` without the per-frame lines).
    let t = Instant::now();
    let (count, groups) = file::correlate(&path, &VXLAN_PORTS).unwrap();
    let silent_secs = t.elapsed().as_secs_f64();
    assert_eq!(count, n);
    let pps = |s: f64| n as f64 / s;
    println!(
        "knetdoctor, one line per frame: {print_secs:.2} s, {:.0} frames/s",
        pps(print_secs)
    );
    println!(
        "knetdoctor, decode + correlate, no output: {silent_secs:.2} s, {:.0} frames/s ({} groups); peak RSS {:.0} MiB",
        pps(silent_secs),
        groups.len(),
        peak_rss_mib()
    );

    match timed(&["tcpdump", "-nn", "-r", p]) {
        Some((s, m)) => println!(
            "tcpdump -nn -r: {s:.2} s, {:.0} frames/s, {m:.0} MiB; knetdoctor printing is {:.1}x its rate (target >= 10x)",
            pps(s),
            s / print_secs
        ),
        None => println!("tcpdump -nn -r: not measured"),
    }
    match timed(&["tcpdump", "-r", p, "-w", "/dev/null"]) {
        Some((s, m)) => println!(
            "tcpdump -r -w /dev/null (reading only): {s:.2} s, {m:.0} MiB; knetdoctor decode+correlate takes {:.1}x that (target <= 5x)",
            silent_secs / s
        ),
        None => println!("tcpdump -w /dev/null: not measured"),
    }
    match timed(&["tshark", "-r", p, "-d", "udp.port==8472,vxlan"]) {
        Some((s, m)) => println!(
            "tshark -r -d udp.port==8472,vxlan: {s:.2} s, {:.0} frames/s, {m:.0} MiB; knetdoctor printing is {:.1}x its rate",
            pps(s),
            s / print_secs
        ),
        None => println!("tshark: not measured"),
    }
    let _ = std::fs::remove_file(&path);
    any_capture(n);
}

/// Frame i as `tcpdump -i any` writes it (LINUX_SLL2): the Ethernet
/// header replaced by the cooked one, cni0's frames on ifindex 3 as
/// received, eth0's on ifindex 2 as sent.
fn sll2_frame(i: usize) -> Vec<u8> {
    let eth = frame(i);
    let (ifindex, packet_type) = if i.is_multiple_of(3) {
        (3u8, 0u8)
    } else {
        (2, 4)
    };
    let mut out = vec![0x08, 0x00, 0, 0, 0, 0, 0, ifindex, 0, 1, packet_type, 6];
    out.extend_from_slice(&eth[6..12]);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&eth[14..]);
    out
}

/// The same million frames as a `tcpdump -i any` capture, printed by
/// knetdoctor and by `tcpdump -nn -r` in one run.
fn any_capture(n: usize) {
    let path =
        std::env::temp_dir().join(format!("knetdoctor-bench-sll2-{}.pcap", std::process::id()));
    write_pcap(&path, pcap_file::DataLink::LINUX_SLL2, n, sll2_frame);
    let t = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create("/dev/null").unwrap());
    let mut dns = knetdoctor::capture::dns_watch::DnsWatch::new(2.0);
    let count = file::print_lines(&path, &VXLAN_PORTS, &mut dns, &mut out).unwrap();
    out.flush().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(count, n);
    println!(
        "-i any (LINUX_SLL2), {n} frames: knetdoctor one line per frame {secs:.2} s, {:.0} frames/s",
        n as f64 / secs
    );
    match timed(&["tcpdump", "-nn", "-r", path.to_str().unwrap()]) {
        Some((s, m)) => println!(
            "-i any (LINUX_SLL2): tcpdump -nn -r {s:.2} s, {m:.0} MiB; knetdoctor printing is {:.1}x its rate (target >= 10x)",
            s / secs
        ),
        None => println!("tcpdump -nn -r (LINUX_SLL2): not measured"),
    }
    let _ = std::fs::remove_file(&path);
}
