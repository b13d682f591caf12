//! tshark as the independent judge of a capture's decode: the fields it
//! gives per frame, and the same fields from knetdoctor's JSON.

use std::process::Command;

/// What tshark says of each frame of `file`: outer and inner addresses,
/// VNI, ports, TCP flags, DNS name, HTTP method or status, ARP opcode,
/// cooked interface index.
pub fn frames(file: &str) -> Vec<Vec<String>> {
    let fields = [
        "sll.ifindex",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "vxlan.vni",
        "tcp.srcport",
        "tcp.dstport",
        "tcp.flags",
        "dns.qry.name",
        "http.request.method",
        "http.response.code",
        "arp.opcode",
    ];
    // flannel's VXLAN port; every segment dissected on its own (the same
    // segment on the next interface is not a retransmission to us).
    let mut args = vec![
        "-r",
        file,
        "-d",
        "udp.port==8472,vxlan",
        "-o",
        "tcp.analyze_sequence_numbers:FALSE",
        "-o",
        "tcp.desegment_tcp_streams:FALSE",
        "-T",
        "fields",
        "-E",
        "separator=|",
    ];
    for f in &fields {
        args.extend_from_slice(&["-e", f]);
    }
    let out = Command::new("tshark").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f: Vec<String> = l.split('|').map(str::to_string).collect();
            // IPv4 or IPv6 addresses in one column each, as ours.
            let (v6_src, v6_dst) = (f.remove(3), f.remove(3));
            for (i, v6) in [(1, v6_src), (2, v6_dst)] {
                if f[i].is_empty() {
                    f[i] = v6;
                }
            }
            f
        })
        .collect()
}

/// The same fields from knetdoctor's decode (one JSON frame).
pub fn ours(v: &serde_json::Value) -> Vec<String> {
    let f = &v["frame"];
    let s = |x: &serde_json::Value| match x {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    let inner = &f["vxlan"]["inner"];
    let both = |field: &str| {
        [s(&f["net"][field]), s(&inner["net"][field])]
            .into_iter()
            .filter(|x| !x.is_empty())
            .collect::<Vec<_>>()
            .join(",")
    };
    // tshark gives the innermost TCP, DNS and HTTP.
    let top = if inner.is_object() { inner } else { f };
    let tcp = |k: &str| {
        if top["transport"]["protocol"] == "tcp" {
            s(&top["transport"][k])
        } else {
            String::new()
        }
    };
    let flags = if top["transport"]["protocol"] == "tcp" {
        // tshark prints the flag byte (0x0002); ours is tcpdump's letters.
        let letters = s(&top["transport"]["flags"]);
        let bits = [
            ('F', 1),
            ('S', 2),
            ('R', 4),
            ('P', 8),
            ('.', 16),
            ('U', 32),
            ('E', 64),
            ('W', 128),
        ]
        .iter()
        .filter(|(c, _)| letters.contains(*c))
        .map(|(_, b)| b)
        .sum::<u16>();
        format!("0x{bits:04x}")
    } else {
        String::new()
    };
    let app = &top["app"];
    let dns_name = if app["kind"] == "dns" {
        // tshark calls the root `<Root>`; other names lose the final dot.
        match s(&app["name"]).as_str() {
            "." => "<Root>".to_string(),
            name => name.trim_end_matches('.').to_string(),
        }
    } else {
        String::new()
    };
    vec![
        s(&f["cooked"]["ifindex"]),
        both("src"),
        both("dst"),
        s(&f["vxlan"]["vni"]),
        tcp("src_port"),
        tcp("dst_port"),
        flags,
        dns_name,
        if app["kind"] == "http-request" {
            s(&app["method"])
        } else {
            String::new()
        },
        if app["kind"] == "http-response" {
            s(&app["status"])
        } else {
            String::new()
        },
        if top["net"]["kind"] == "arp" {
            s(&top["net"]["op"])
        } else {
            String::new()
        },
    ]
}
