//! Addresses as typed values, spelled as the kernel's tools spell them only
//! when printed or serialized: an Ethernet address, and a route's
//! destination (`default` or a prefix). A repair, a finding and a node
//! state carry these, so nothing formats an address and parses it back.

use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An Ethernet (MAC) address; read in either case, printed lower-case
/// with colons, as iproute2 and flannel's VtepMAC print it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Mac, String> {
        let bytes: Option<Vec<u8>> = s
            .split(':')
            .map(|b| {
                (b.len() == 2)
                    .then(|| u8::from_str_radix(b, 16).ok())
                    .flatten()
            })
            .collect();
        bytes
            .and_then(|b| <[u8; 6]>::try_from(b).ok())
            .map(Mac)
            .ok_or_else(|| format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))
    }
}

impl Mac {
    /// `aa:bb:cc:dd:ee:ff` on the stack: a node's check prints one in each
    /// of its 5,000 peers' findings and a repair's journal one in each of
    /// 10,000 entries, where the formatting machinery cost more than the
    /// rest of the entry.
    fn text(&self) -> [u8; 17] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b':'; 17];
        for (i, b) in self.0.iter().enumerate() {
            out[3 * i] = HEX[usize::from(b >> 4)];
            out[3 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        out
    }
}

/// Both print through `Formatter::pad`, so column widths (`{:<18}`) apply.
impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        f.pad(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?)
    }
}

/// Its text, written straight from the stack buffer.
impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.text();
        s.serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?)
    }
}

impl std::fmt::Debug for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Where a route leads: `default` (no destination attribute, prefix
/// length 0) or a prefix, a host route keeping its `/32`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RouteDst {
    Default,
    Net(IpNet),
}

impl RouteDst {
    /// The IPv4 prefix it covers: `default` is 0.0.0.0/0 (a route dump
    /// names both families' default `default`; the lookups here are IPv4).
    pub fn v4(self) -> Option<Ipv4Net> {
        match self {
            RouteDst::Default => Some(Ipv4Net::default()),
            RouteDst::Net(IpNet::V4(n)) => Some(n),
            RouteDst::Net(IpNet::V6(_)) => None,
        }
    }
}

impl From<Ipv4Net> for RouteDst {
    fn from(n: Ipv4Net) -> RouteDst {
        RouteDst::Net(IpNet::V4(n))
    }
}

impl FromStr for RouteDst {
    type Err = String;
    fn from_str(s: &str) -> Result<RouteDst, String> {
        if s == "default" {
            return Ok(RouteDst::Default);
        }
        s.parse::<IpNet>()
            .map(RouteDst::Net)
            .map_err(|_| format!("{s:?} is not a route destination (default or a.b.c.d/len)"))
    }
}

impl std::fmt::Display for RouteDst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteDst::Default => f.pad("default"),
            RouteDst::Net(n) => f.pad(&n.to_string()),
        }
    }
}

/// Its text (`Display`).
impl Serialize for RouteDst {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read back through `FromStr` from the text they are serialized as:
/// JSON, journals and bundles carry what iproute2 prints.
macro_rules! from_text {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    )*};
}

from_text!(Mac, RouteDst);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_any_case_and_print_as_iproute2_does() {
        let m: Mac = "5E:26:F3:c1:d0:E5".parse().unwrap();
        assert_eq!(m.to_string(), "5e:26:f3:c1:d0:e5");
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"5e:26:f3:c1:d0:e5\"");
        for bad in [
            "5e:26:f3:c1:d0",
            "5e:26:f3:c1:d0:e5:00",
            "5e:26:f3:c1:d0:zz",
            "5e26f3c1d0e5",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        for text in ["default", "10.2.0.0/24", "10.2.2.7/32", "fe80::/64"] {
            let d: RouteDst = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<RouteDst>(&json).unwrap(), d);
        }
        assert_eq!(RouteDst::Default.v4(), Some(Ipv4Net::default()));
        // Column widths apply, as they did to the text these replace.
        let d: RouteDst = "10.2.0.0/24".parse().unwrap();
        assert_eq!(
            format!("{d:<15}|{:>9}|{m:<18}|", RouteDst::Default),
            "10.2.0.0/24    |  default|5e:26:f3:c1:d0:e5 |"
        );
        assert!("10.2.0.0".parse::<RouteDst>().is_err());
    }
}
