//! Payloads: a body (node state JSON, pcapng, a plan) gzip-compressed and,
//! past what one object safely holds, split across [`NodePayload`] parts.
//! etcd refuses requests over 1.5 MiB by default and base64 grows bytes by
//! 4/3, so a part carries at most 768 KiB compressed (1 MiB of base64),
//! leaving room for metadata. A node with 5,000 peers and 10,000 Services
//! compresses to a few hundred KiB (see benches/agent_scale.rs), so one
//! part is the common case and splitting is for captures.

use std::io::{Read, Write};

use data_encoding::BASE64;
use sha2::{Digest, Sha256};

use super::api::Payload;
use crate::error::{Error, Result};

/// Compressed bytes per object.
pub const PART_BYTES: usize = 768 * 1024;

/// The largest body a client accepts (uncompressed): a bound on what a
/// misbehaving agent can make a client allocate.
pub const MAX_BODY: u64 = 1 << 30;

/// A body ready to send: the payload descriptor and, when it did not fit
/// inline, its parts' base64 data in order.
pub struct Encoded {
    pub payload: Payload,
    pub parts: Vec<String>,
}

/// Compresses `body` and splits it when it needs more than one object.
pub fn encode(body: &[u8]) -> Encoded {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(body);
    let compressed = gz.finish().unwrap_or_default();
    let sha256 = data_encoding::HEXLOWER.encode(&Sha256::digest(&compressed));
    let mut payload = Payload {
        encoding: "gzip".to_string(),
        size: body.len() as u64,
        sha256,
        inline: None,
        parts: 0,
    };
    if compressed.len() <= PART_BYTES {
        payload.inline = Some(BASE64.encode(&compressed));
        return Encoded {
            payload,
            parts: Vec::new(),
        };
    }
    let parts: Vec<String> = compressed
        .chunks(PART_BYTES)
        .map(|c| BASE64.encode(c))
        .collect();
    payload.parts = parts.len() as u32;
    Encoded { payload, parts }
}

impl Encoded {
    /// The body as parts only (an inline body becomes one part), and the
    /// descriptor that says so: for bodies stored as parts whatever their
    /// size (a published state).
    pub fn into_parts(self) -> (Vec<String>, Payload) {
        let Encoded { mut payload, parts } = self;
        let parts = match payload.inline.take() {
            Some(one) => vec![one],
            None => parts,
        };
        payload.parts = parts.len() as u32;
        (parts, payload)
    }
}

/// The name of part `i` of request `request`'s payload.
pub fn part_name(request: &str, i: u32) -> String {
    format!("{request}-{i}")
}

/// The body back from its descriptor and its parts (in order; empty when
/// inline). Every way it can be wrong is an error that says which.
pub fn decode(p: &Payload, parts: &[String]) -> Result<Vec<u8>> {
    let bad = |what: String| {
        Error::env(
            format!("the agent's answer is damaged: {what}"),
            Some("run the command again; if it persists, look at the agent's log".to_string()),
        )
    };
    if p.encoding != "gzip" {
        return Err(bad(format!("unknown encoding {:?}", p.encoding)));
    }
    if p.size > MAX_BODY {
        return Err(bad(format!("{} bytes is more than a client takes", p.size)));
    }
    let mut compressed = Vec::new();
    match &p.inline {
        Some(b) => {
            compressed = BASE64
                .decode(b.as_bytes())
                .map_err(|e| bad(e.to_string()))?
        }
        None => {
            if parts.len() != p.parts as usize {
                return Err(bad(format!("{} of {} parts", parts.len(), p.parts)));
            }
            for part in parts {
                compressed.extend(
                    BASE64
                        .decode(part.as_bytes())
                        .map_err(|e| bad(e.to_string()))?,
                );
            }
        }
    }
    let sha = data_encoding::HEXLOWER.encode(&Sha256::digest(&compressed));
    if sha != p.sha256 {
        return Err(bad("its checksum does not match".to_string()));
    }
    let mut body = Vec::with_capacity(p.size as usize);
    flate2::read::GzDecoder::new(&compressed[..])
        .take(MAX_BODY)
        .read_to_end(&mut body)
        .map_err(|e| bad(e.to_string()))?;
    if body.len() as u64 != p.size {
        return Err(bad(format!("{} bytes, {} announced", body.len(), p.size)));
    }
    Ok(body)
}

/// Bytes in JSON as base64: frames and pcapng travel inside JSON answers.
pub use knetdoctor_core::wire_bytes as base64_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_travel_inline_and_come_back() {
        let body = br#"{"links":[]}"#.repeat(100);
        let e = encode(&body);
        assert!(e.parts.is_empty());
        assert!(e.payload.inline.as_ref().unwrap().len() < body.len());
        assert_eq!(decode(&e.payload, &[]).unwrap(), body);
    }

    #[test]
    fn large_bodies_are_split_and_joined_in_order() {
        // Incompressible: xorshift bytes.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let body: Vec<u8> = (0..2 * PART_BYTES + 1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let e = encode(&body);
        assert_eq!(e.payload.parts, 3);
        assert!(e.payload.inline.is_none());
        assert!(e.parts.iter().all(|p| p.len() <= PART_BYTES * 4 / 3 + 4));
        assert_eq!(decode(&e.payload, &e.parts).unwrap(), body);
        let mut swapped = e.parts.clone();
        swapped.swap(0, 1);
        assert!(
            decode(&e.payload, &swapped)
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
        assert!(
            decode(&e.payload, &e.parts[..2])
                .unwrap_err()
                .to_string()
                .contains("2 of 3 parts")
        );
    }

    #[test]
    fn an_inline_body_as_parts_is_one_part() {
        let body = b"state".repeat(50);
        let (parts, d) = encode(&body).into_parts();
        assert_eq!((parts.len(), d.parts, d.inline.is_none()), (1, 1, true));
        assert_eq!(decode(&d, &parts).unwrap(), body);
    }

    #[test]
    fn a_damaged_or_oversized_answer_is_an_error() {
        let mut e = encode(b"hello");
        e.payload.size = 6;
        assert!(
            decode(&e.payload, &[])
                .unwrap_err()
                .to_string()
                .contains("announced")
        );
        e.payload.size = MAX_BODY + 1;
        assert!(
            decode(&e.payload, &[])
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
        e.payload.encoding = "zstd".into();
        assert!(decode(&e.payload, &[]).is_err());
    }
}
