//! IPv4 CIDR blocks as they appear in the config file (`10.0.0.0/16`).

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 network in CIDR notation, such as `10.0.0.0/16`.
///
/// The address must be the network address: host bits below the prefix must be
/// zero (`10.0.0.1/16` is rejected with a hint naming `10.0.0.0/16`), so the text
/// in the config file always names exactly the range that gets provisioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

/// Why a string is not an [`Ipv4Cidr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CidrParseError {
    message: String,
}

impl CidrParseError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl Ipv4Cidr {
    /// Builds a block from a network address and a prefix length.
    ///
    /// # Errors
    /// Fails when `prefix` is above 32 or `addr` has host bits set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrParseError> {
        if prefix > 32 {
            return Err(CidrParseError::new(format!(
                "prefix length /{prefix} is out of range, expected /0 to /32"
            )));
        }
        let cidr = Self { addr, prefix };
        if u32::from(addr) & !cidr.mask() != 0 {
            let network = Ipv4Addr::from(u32::from(addr) & cidr.mask());
            return Err(CidrParseError::new(format!(
                "`{addr}/{prefix}` has host bits set, expected the network address `{network}/{prefix}`"
            )));
        }
        Ok(cidr)
    }

    /// A built-in block whose validity is checked by this module's tests, not at run time.
    pub(crate) const fn known(octets: [u8; 4], prefix: u8) -> Self {
        Self {
            addr: Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]),
            prefix,
        }
    }

    /// The network address (`10.0.0.0` in `10.0.0.0/16`).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length (`16` in `10.0.0.0/16`).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The number of addresses in the block.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    fn last(&self) -> u32 {
        self.first() | !self.mask()
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        self.first() <= other.first() && other.last() <= self.last()
    }

    /// Whether the two blocks share at least one address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// The `index`-th sub-block of prefix length `prefix` inside `self`, if it exists.
    ///
    /// `10.0.0.0/16`.subnet(24, 3) is `10.0.3.0/24`.
    pub fn subnet(&self, prefix: u8, index: u32) -> Option<Ipv4Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let bits = u32::from(prefix - self.prefix);
        if bits < 32 && u64::from(index) >= (1u64 << bits) {
            return None;
        }
        let step = if prefix == 0 {
            0
        } else {
            1u64 << (32 - u32::from(prefix))
        };
        let start = u64::from(self.first()) + u64::from(index) * step;
        let addr = Ipv4Addr::from(u32::try_from(start).ok()?);
        Ipv4Cidr::new(addr, prefix).ok()
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected an IPv4 CIDR block such as `10.0.0.0/16`";
        let Some((addr, prefix)) = s.split_once('/') else {
            return Err(CidrParseError::new(format!(
                "`{s}` has no prefix length, {expected}"
            )));
        };
        let addr: Ipv4Addr = addr.parse().map_err(|_| {
            CidrParseError::new(format!("`{addr}` is not an IPv4 address, {expected}"))
        })?;
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= 2
            && prefix.bytes().all(|b| b.is_ascii_digit())
            && !(prefix.len() == 2 && prefix.starts_with('0'));
        let prefix: u8 = match prefix.parse() {
            Ok(p) if prefix_ok => p,
            _ => {
                return Err(CidrParseError::new(format!(
                    "`/{prefix}` is not a prefix length, {expected}"
                )));
            }
        };
        Ipv4Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Ipv4Cidr {
    fn schema_name() -> Cow<'static, str> {
        "Ipv4Cidr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "An IPv4 network in CIDR notation with host bits zero, such as `10.0.0.0/16`.",
            "pattern": r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}/(3[0-2]|[12]?[0-9])$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        assert_eq!(c("10.0.0.0/16").to_string(), "10.0.0.0/16");
        assert_eq!(c("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(c("10.1.2.3/32").size(), 1);
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "10.0.0.0",
            "10.0.0/16",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/016",
            "10.0.0.0/+1",
            "a.b.c.d/8",
            "300.0.0.0/8",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        let err = "10.0.0.1/16".parse::<Ipv4Cidr>().unwrap_err();
        assert!(err.to_string().contains("`10.0.0.0/16`"), "{err}");
    }

    #[test]
    fn containment_and_subnets() {
        let vpc = c("10.0.0.0/16");
        assert!(vpc.contains(&c("10.0.3.0/24")));
        assert!(!vpc.contains(&c("10.1.0.0/24")));
        assert!(vpc.overlaps(&c("10.0.0.0/8")));
        assert!(!vpc.overlaps(&c("10.1.0.0/16")));
        assert_eq!(vpc.subnet(24, 3), Some(c("10.0.3.0/24")));
        assert_eq!(vpc.subnet(24, 256), None);
        assert_eq!(vpc.subnet(8, 0), None);
        assert_eq!(c("0.0.0.0/0").subnet(1, 1), Some(c("128.0.0.0/1")));
    }
}
