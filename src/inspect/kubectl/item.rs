//! One item of a kubectl List, decoded in a single pass: its `apiVersion`
//! and `kind` (which kubectl writes first) are read, then the rest of the
//! same map goes straight into the type they name, with the two fields
//! replayed in front. A separate pass to learn the kind first cost a tenth
//! of the load of a 150,000-pod cluster.

use std::fmt;

use serde::de::value::{MapAccessDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::Decoded;
use crate::model::compact::Compact;
use crate::model::convert;

/// What an item turned out to be.
pub(super) enum Outcome {
    /// Decoded into `out` (or a kind knetdoctor does not read, skipped).
    Done,
    /// Neither the item nor its list says what it is.
    NoKind,
    /// Its keys come in an order the single pass cannot follow (a field
    /// before `kind`, in a list that names no kind): decode it in two.
    Reorder,
}

/// Decodes one item into `out`. `list_kind` is the list's own kind less
/// `List` (empty for a mixed `List`).
pub(super) fn decode(
    body: &str,
    list_kind: &str,
    out: &mut Decoded,
) -> serde_json::Result<Outcome> {
    let mut de = serde_json::Deserializer::from_str(body);
    let outcome = de.deserialize_map(ItemVisitor { list_kind, out })?;
    de.end()?;
    Ok(outcome)
}

/// Decodes an item whose `kind` is known (the two-pass way).
pub(super) fn decode_as(
    body: &str,
    kind: &str,
    api_version: &str,
    out: &mut Decoded,
) -> serde_json::Result<()> {
    let de = &mut serde_json::Deserializer::from_str(body);
    store(kind, api_version, de, out)
}

struct ItemVisitor<'a> {
    list_kind: &'a str,
    out: &'a mut Decoded,
}

impl<'de> Visitor<'de> for ItemVisitor<'_> {
    type Value = Outcome;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outcome, A::Error> {
        let (mut api_version, mut kind): (Option<String>, Option<String>) = (None, None);
        let mut pending: Option<String> = None;
        while api_version.is_none() || kind.is_none() {
            let Some(key) = map.next_key::<String>()? else {
                break;
            };
            match key.as_str() {
                "apiVersion" => api_version = Some(map.next_value()?),
                "kind" => kind = Some(map.next_value()?),
                _ => {
                    pending = Some(key);
                    break;
                }
            }
        }
        let own_kind = kind.as_deref().is_some_and(|k| !k.is_empty());
        let kind_now = match kind.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => k.to_string(),
            // A field came before `kind`: the list's kind holds only if
            // the item has none of its own, which cannot be known yet.
            None if pending.is_some() && self.list_kind.is_empty() => {
                return drain(map, Outcome::Reorder);
            }
            None if self.list_kind.is_empty() => return Ok(Outcome::NoKind),
            None => self.list_kind.to_string(),
        };
        // Which Ingress schema it is, the apiVersion says.
        if kind_now == "Ingress" && api_version.is_none() && pending.is_some() {
            return drain(map, Outcome::Reorder);
        }
        let version = api_version.clone().unwrap_or_default();
        // Only what was read is replayed: the rest is still in the map.
        let mut head = Vec::with_capacity(2);
        if let Some(v) = api_version {
            head.push(("apiVersion", v));
        }
        if own_kind {
            head.push(("kind", kind_now.clone()));
        }
        let replay = Replay { head, pending, map };
        let kind = kind_now;
        let api_version = version;
        store(
            &kind,
            &api_version,
            MapAccessDeserializer::new(replay),
            self.out,
        )?;
        Ok(Outcome::Done)
    }
}

/// Reads the rest of an item left to the two-pass way (kubectl sorts keys,
/// so a ConfigMap's `data` and an EndpointSlice's `addressType` come
/// before its `kind`).
fn drain<'de, A: MapAccess<'de>>(mut map: A, outcome: Outcome) -> Result<Outcome, A::Error> {
    // The value of the key read last is still there.
    map.next_value::<de::IgnoredAny>()?;
    while map
        .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
        .is_some()
    {}
    Ok(outcome)
}

/// Decodes `de` as `kind` into `out`; kinds knetdoctor does not read (and
/// Secrets, never decoded) are skipped.
fn store<'de, D: Deserializer<'de>>(
    kind: &str,
    api_version: &str,
    de: D,
    out: &mut Decoded,
) -> Result<(), D::Error> {
    let c = &mut out.cluster;
    match kind {
        "Node" => c.nodes.push(compacted(de)?),
        "Pod" => c.pods.push(compacted(de)?),
        "Service" => c.services.push(compacted(de)?),
        "EndpointSlice" => c.endpoint_slices.push(compacted(de)?),
        "Endpoints" => out.endpoints.push(Deserialize::deserialize(de)?),
        "Ingress" if api_version.ends_with("v1beta1") => {
            let value = Value::deserialize(de)?;
            c.ingresses.extend(convert::ingress_v1beta1(&value));
        }
        "Ingress" => c.ingresses.push(Deserialize::deserialize(de)?),
        "IngressClass" => c.ingress_classes.push(Deserialize::deserialize(de)?),
        "ConfigMap" => c.config_maps.push(Deserialize::deserialize(de)?),
        "NetworkPolicy" => c.network_policies.push(Deserialize::deserialize(de)?),
        _ => {
            de::IgnoredAny::deserialize(de)?;
        }
    }
    Ok(())
}

/// An object of the kinds a large cluster has many of, decoded and its
/// lists cut to their length ([`Compact`]).
fn compacted<'de, T: Deserialize<'de> + Compact, D: Deserializer<'de>>(
    de: D,
) -> Result<T, D::Error> {
    let mut o = T::deserialize(de)?;
    o.compact();
    Ok(o)
}

/// The item's map with the fields already read put back in front.
struct Replay<A> {
    head: Vec<(&'static str, String)>,
    /// A key read while looking for the head, whose value is still unread.
    pending: Option<String>,
    map: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Replay<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if let Some((key, _)) = self.head.first() {
            let key: StrDeserializer<A::Error> = key.into_deserializer();
            return seed.deserialize(key).map(Some);
        }
        if let Some(key) = &self.pending {
            return seed.deserialize(key.as_str().into_deserializer()).map(Some);
        }
        self.map.next_key_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        if !self.head.is_empty() {
            let (_, value) = self.head.remove(0);
            return seed.deserialize(value.into_deserializer());
        }
        if self.pending.take().is_some() {
            return self.map.next_value_seed(seed);
        }
        self.map.next_value_seed(seed)
    }
}
