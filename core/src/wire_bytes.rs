//! Bytes in JSON as base64 (`#[serde(with = "knetdoctor_core::wire_bytes")]`):
//! captured frames and dropped packets' headers travel between an agent and
//! its client, and a JSON array of numbers would be four times the size.

use data_encoding::BASE64;
use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&BASE64.encode(b))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    BASE64
        .decode(text.as_bytes())
        .map_err(serde::de::Error::custom)
}
