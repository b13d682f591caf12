//! `cargo bench --bench capture_live` (as root): live capture under load,
//! side by side with tcpdump. A lab (`kdlab-kdbcap-*`, no link to the root
//! namespace) is brought up; pods on one node send UDP to pods on the
//! others at a fixed rate, so every datagram crosses that node's cni0,
//! flannel.1 and (in VXLAN) eth0, and ends at the underlay switch (the
//! far nodes' share of the two cores would otherwise cap the rate the
//! senders reach before either capturer does). At each rate, `knetdoctor capture` on
//! the node's three interfaces and three `tcpdump -n` (one per interface,
//! as tcpdump takes one) run at the same time, both printing to /dev/null;
//! each reports what the kernel dropped (and knetdoctor what its own reader
//! gave up). Rates rise by a quarter until both lose frames (or the pods
//! cannot send faster), then three halvings of the step where one began to
//! lose narrow its limit; the highest rate each sustains with no drop at
//! all (as the pods sent it, which near their limit falls short of the
//! rate asked), and the ratio, are printed. The pods send with `sendmmsg`, so that
//! their share of the two cores goes to the datagrams rather than to a
//! system call each (with one `send` each they topped out at 130,000-
//! 160,000 a second, below knetdoctor's limit).
//!
//! Everything stays inside the lab's namespaces: the datagrams go from lab
//! pods to lab pods over the lab's own underlay.

mod common;
use common::{BIN, Lab, env};

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use knetdoctor::dataplane::Netns;
use knetdoctor::lab::Topology;

const LAB: &str = "kdbcap";
const IFACES: [&str; 3] = ["cni0", "flannel.1", "eth0"];
/// The UDP port the datagrams go to (nothing listens: the receivers'
/// port-unreachable answers are rate-limited by their kernels).
const PORT: u16 = 9;

/// What one capturer said it lost.
#[derive(Debug, Default, Clone, Copy)]
struct Loss {
    captured: u64,
    dropped: u64,
}

/// A child whose stderr is read until it says it is capturing.
fn started(mut c: Child, ready: &str) -> (Child, std::thread::JoinHandle<String>) {
    let stderr = c.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        let mut all = String::new();
        let mut line = String::new();
        let mut said = false;
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if !said && line.contains(&ready) {
                let _ = tx.send(());
                said = true;
            }
            all.push_str(&line);
            line.clear();
        }
        let _ = r.read_to_string(&mut all);
        all
    });
    let _ = rx.recv_timeout(Duration::from_secs(10));
    (c, reader)
}

fn tcpdump(netns: &str, iface: &str) -> (Child, std::thread::JoinHandle<String>) {
    let c = Command::new("ip")
        .args(["netns", "exec", netns, "tcpdump", "-n", "-l", "-i", iface])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tcpdump");
    started(c, "listening on")
}

/// `N packets captured` and `N packets dropped by kernel` from tcpdump.
fn tcpdump_loss(text: &str) -> Loss {
    let count = |what: &str| -> u64 {
        text.lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Loss {
        captured: count("packets captured"),
        dropped: count("packets dropped by kernel"),
    }
}

/// knetdoctor's per-interface lines: `IF: N received, K dropped by the
/// kernel, I by the interface, Q given up when the capture stopped`.
fn knetdoctor_loss(text: &str) -> Loss {
    let mut loss = Loss::default();
    for l in text.lines().filter(|l| l.contains("dropped by the kernel")) {
        let nums: Vec<u64> = l
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        // The interface name may hold a digit (flannel.1): the last four.
        if let [.., received, kernel, iface, queue] = nums[..] {
            loss.captured += received;
            loss.dropped += kernel + iface + queue;
        }
    }
    loss
}

/// Drops `node`'s VXLAN datagrams at the underlay switch's port, as they
/// leave its eth0: what is measured is the capture on `node`'s way out,
/// and the other nodes' decapsulating, forwarding and refusing each
/// datagram only took the two cores from the senders and the capturers.
/// A netdev ingress rule in the lab's underlay namespace (gone with it).
fn drop_at_the_switch(topo: &Topology, node: &knetdoctor::lab::topology::LabNode) {
    let rules = format!(
        "table netdev kdbench {{\n\
         chain ingress {{ type filter hook ingress device \"{}\" priority -500; \
         ip saddr {} udp dport {} drop; }}\n}}\n",
        node.switch_port,
        node.ip,
        knetdoctor::model::flannel::VXLAN_PORT
    );
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &topo.underlay_netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run nft");
    std::io::Write::write_all(&mut nft.stdin.take().expect("stdin"), rules.as_bytes())
        .expect("write the rule");
    assert!(nft.wait().expect("nft").success(), "nft refused {rules}");
}

/// Sends from each (pod namespace, destination) pair at `rate` datagrams a
/// second in all, for `secs`; returns how many went out.
fn send(pairs: &[(String, Ipv4Addr)], rate: u64, secs: f64) -> u64 {
    let per = (rate / pairs.len() as u64).max(1);
    let handles: Vec<_> = pairs
        .iter()
        .cloned()
        .map(|(netns, dst)| {
            std::thread::spawn(move || -> u64 {
                Netns::named(netns)
                    .run(move || -> knetdoctor::Result<u64> {
                        let sock = UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
                        // Connected: the route is looked up once, not per
                        // datagram.
                        sock.connect(SocketAddr::from((dst, PORT)))
                            .expect("a route to the pod");
                        let mut payload = [0x5au8; 64];
                        let start = Instant::now();
                        let mut sent = 0u64;
                        // Up to BURST datagrams a system call (sendmmsg),
                        // all the same 64 bytes: the pods' share of the two
                        // cores goes to the datagrams' way through the
                        // node, not to a system call each.
                        const BURST: usize = 64;
                        let mut iov = libc::iovec {
                            iov_base: payload.as_mut_ptr().cast(),
                            iov_len: payload.len(),
                        };
                        // SAFETY: zeroed mmsghdr is a valid empty header;
                        // each points at the one iovec, alive for the loop.
                        let mut msgs: Vec<libc::mmsghdr> = (0..BURST)
                            .map(|_| {
                                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                                m.msg_hdr.msg_iov = &mut iov;
                                m.msg_hdr.msg_iovlen = 1;
                                m
                            })
                            .collect();
                        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
                        // Paced by the millisecond: each tick sends what
                        // the rate owes so far.
                        while start.elapsed().as_secs_f64() < secs {
                            let owed = (start.elapsed().as_secs_f64() * per as f64) as u64;
                            while sent < owed {
                                let n = (owed - sent).min(BURST as u64) as u32;
                                // SAFETY: `msgs` holds BURST valid headers
                                // on a connected socket.
                                let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n, 0) };
                                if r <= 0 {
                                    break;
                                }
                                sent += r as u64;
                            }
                            std::thread::sleep(Duration::from_micros(500));
                        }
                        Ok(sent)
                    })
                    .and_then(|r| r)
                    .unwrap_or(0)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
}

/// One rate: both capturers on the node's three interfaces while the pods
/// send. Returns (datagrams sent, knetdoctor's loss, tcpdump's loss).
fn round(
    node: &str,
    node_ns: &str,
    pairs: &[(String, Ipv4Addr)],
    rate: u64,
    secs: f64,
) -> (u64, Loss, Loss) {
    let dumps: Vec<_> = IFACES.iter().map(|i| tcpdump(node_ns, i)).collect();
    let ours = Command::new(BIN)
        .args(["capture", node, "--lab", LAB, "--duration"])
        .arg(format!("{}", secs + 2.0))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run knetdoctor capture");
    let (mut ours, ours_err) = started(ours, "capturing on");
    // Both are open: wait a moment for every ring to be set up.
    std::thread::sleep(Duration::from_millis(300));
    let sent = send(pairs, rate, secs);
    std::thread::sleep(Duration::from_millis(1500));
    let mut theirs = Loss::default();
    for (mut c, err) in dumps {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = c.wait();
        // `ip netns exec` forwards nothing: tcpdump is its child.
        let l = tcpdump_loss(&err.join().unwrap_or_default());
        theirs.captured += l.captured;
        theirs.dropped += l.dropped;
    }
    let _ = ours.wait();
    let said = ours_err.join().unwrap_or_default();
    let ours = knetdoctor_loss(&said);
    if ours.dropped > 0 {
        // Where the frames were lost (kernel, interface or reader).
        said.lines()
            .filter(|l| l.contains("dropped by the kernel"))
            .for_each(|l| println!("    knetdoctor: {l}"));
    }
    (sent, ours, theirs)
}

fn main() {
    knetdoctor::without_huge_pages();
    if !nix::unistd::Uid::effective().is_root() {
        println!("capture_live: not root, skipped (it needs a lab)");
        return;
    }
    let secs = env("KD_BENCH_SECONDS", 5) as f64;
    let max_rate = env("KD_BENCH_MAX_RATE", 256_000) as u64;
    let lab = Lab::up(LAB);
    let topo = &lab.1;
    let node = &topo.nodes[0];
    drop_at_the_switch(topo, node);
    // Every pod on node 0 sends to a pod on each other node.
    let pairs: Vec<(String, Ipv4Addr)> = topo
        .pods
        .iter()
        .filter(|p| p.node == node.name)
        .flat_map(|p| {
            topo.pods
                .iter()
                .filter(|q| q.node != node.name)
                .map(|q| (p.netns.clone(), q.ip))
        })
        .collect();
    println!(
        "lab {LAB}: capturing on {}'s {} while {} pod pairs send UDP across nodes ({secs:.0} s per rate; each datagram is seen on all three)",
        node.name,
        IFACES.join(", "),
        pairs.len()
    );
    // Per capturer (knetdoctor, tcpdump): the highest rate sent that it
    // kept every frame of, and the lowest it lost frames at (u64::MAX:
    // none yet).
    let mut limits = [(0u64, u64::MAX); 2];
    // One rate asked of the pods, both capturers at once; whether the pods
    // reached it.
    let measure = |limits: &mut [(u64, u64); 2], rate: u64| -> bool {
        let (sent, ours, theirs) = round(&node.name, &node.netns, &pairs, rate, secs);
        let achieved = sent as f64 / secs;
        println!(
            "{rate:>7} /s asked, {achieved:>9.0} /s sent: knetdoctor {} frames, {} dropped; tcpdump x3 {} frames, {} dropped",
            ours.captured, ours.dropped, theirs.captured, theirs.dropped
        );
        // What counts is the rate the pods really sent (below the one asked
        // where the cores ran out), and only when the frames were seen.
        let sent_rate = achieved as u64;
        for (loss, (best, lost)) in [ours, theirs].into_iter().zip(limits.iter_mut()) {
            if loss.dropped == 0 && loss.captured >= 3 * sent * 9 / 10 {
                *best = (*best).max(sent_rate);
            } else {
                *lost = (*lost).min(sent_rate);
            }
        }
        // Past the rate the pods can reach, asking for more says nothing.
        achieved >= 0.9 * rate as f64
    };
    let mut rate = env("KD_BENCH_FIRST_RATE", 8_000) as u64;
    while rate <= max_rate {
        let reached = measure(&mut limits, rate);
        if !reached || limits.iter().all(|(_, lost)| *lost < u64::MAX) {
            break;
        }
        rate += rate / 4;
    }
    // Steps of a quarter leave a limit up to 25 % short: three halvings of
    // the bracket between the last rate kept whole and the first that lost
    // frames, tcpdump's first (knetdoctor's, if it has one).
    for _ in 0..3 {
        let bracket =
            |(best, lost): (u64, u64)| (best > 0 && lost < u64::MAX).then(|| (best + lost) / 2);
        let Some(mid) = bracket(limits[1]).or(bracket(limits[0])) else {
            break;
        };
        measure(&mut limits, mid);
    }
    let [(ours_best, _), (theirs_best, _)] = limits;
    println!(
        "highest rate with no drop: knetdoctor {ours_best} datagrams/s ({} frames/s on three interfaces), tcpdump {theirs_best} datagrams/s",
        3 * ours_best
    );
    println!(
        "ratio knetdoctor / tcpdump = {} (target >= 2)",
        if theirs_best > 0 {
            format!("{:.2}", ours_best as f64 / theirs_best as f64)
        } else {
            "n/a (tcpdump dropped at the lowest rate)".to_string()
        }
    );
}
