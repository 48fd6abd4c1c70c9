//! Values parsed once, when the configuration is loaded: Kubernetes quantities, durations, CIDRs
//! and path globs. Each keeps the text it was written as (what Previewd renders and shows) next
//! to the parsed value (what it computes with), so nothing downstream parses again.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A quantity as YAML may spell it: `"250m"`, `"1Gi"`, or a bare number (`2`, `0.5`).
#[derive(Deserialize)]
#[serde(untagged)]
enum QuantityText {
    Text(String),
    Number(f64),
}

impl QuantityText {
    fn into_text(self) -> String {
        match self {
            QuantityText::Text(text) => text.trim().to_owned(),
            QuantityText::Number(n) => n.to_string(),
        }
    }
}

fn number(digits: &str, whole: &str) -> Result<f64, String> {
    let valid = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    match digits.parse::<f64>() {
        Ok(v) if valid && v.is_finite() => Ok(v),
        _ => Err(format!("{whole:?} is not a Kubernetes quantity (e.g. 250m, 2, 512Mi, 1Gi)")),
    }
}

/// CPU: `250m` is a quarter of a core.
#[derive(Debug, Clone, PartialEq)]
pub struct Cpu {
    text: String,
    cores: f64,
}

impl Cpu {
    /// A quantity whose value is known (the built-in defaults; a test checks they agree).
    pub(crate) fn known(text: &str, cores: f64) -> Cpu {
        Cpu { text: text.to_owned(), cores }
    }

    pub fn parse(text: &str) -> Result<Cpu, String> {
        let text = text.trim();
        let cores = match text.strip_suffix('m') {
            Some(milli) => number(milli, text)? / 1000.0,
            None => number(text, text)?,
        };
        Ok(Cpu { text: text.to_owned(), cores })
    }

    pub fn cores(&self) -> f64 {
        self.cores
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Bytes: binary (`Ki`, `Mi`, `Gi`, `Ti`) and decimal (`k`, `M`, `G`, `T`) suffixes.
#[derive(Debug, Clone, PartialEq)]
pub struct Bytes {
    text: String,
    bytes: f64,
}

/// Bytes in a mebibyte and a gibibyte.
pub const MIB: f64 = 1024.0 * 1024.0;
pub const GIB: f64 = 1024.0 * MIB;

impl Bytes {
    /// A quantity whose value is known (the built-in defaults; a test checks they agree).
    pub(crate) fn known(text: &str, bytes: f64) -> Bytes {
        Bytes { text: text.to_owned(), bytes }
    }

    pub fn parse(text: &str) -> Result<Bytes, String> {
        const UNITS: [(&str, f64); 8] = [
            ("Ki", 1024.0),
            ("Mi", 1024.0 * 1024.0),
            ("Gi", 1024.0 * 1024.0 * 1024.0),
            ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
            ("k", 1e3),
            ("M", 1e6),
            ("G", 1e9),
            ("T", 1e12),
        ];
        let text = text.trim();
        let bytes = match UNITS.iter().find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor))) {
            Some((digits, factor)) => number(digits, text)? * factor,
            None => number(text, text)?,
        };
        Ok(Bytes { text: text.to_owned(), bytes })
    }

    pub fn bytes(&self) -> f64 {
        self.bytes
    }

    pub fn gib(&self) -> f64 {
        self.bytes / GIB
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

macro_rules! quantity_serde {
    ($type:ty, $name:literal, $pattern:literal) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = QuantityText::deserialize(d)?.into_text();
                <$type>::parse(&text).map_err(D::Error::custom)
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.text)
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }

        impl JsonSchema for $type {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "description": "A Kubernetes quantity",
                    "anyOf": [{"type": "string", "pattern": $pattern}, {"type": "number", "minimum": 0}]
                })
            }
        }
    };
}

quantity_serde!(Cpu, "Cpu", r"^\s*[0-9]+(\.[0-9]+)?m?\s*$");
quantity_serde!(Bytes, "Bytes", r"^\s*[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?\s*$");

/// The schema of a duration field (`#[schemars(with = "HumanDuration")]`): humantime's words,
/// `90m`, `4h`, `7d`, `1h 30m`. The fields themselves are `std::time::Duration`, parsed at load
/// by `humantime_serde`.
#[derive(Debug)]
pub struct HumanDuration;

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Duration")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a number and a unit, repeated (90m, 4h, 7d, 1h 30m)",
            "type": "string",
            "pattern": r"^\s*([0-9]+\s*(nsec|ns|usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)\s*)+$"
        })
    }
}

/// A CIDR (`10.0.0.0/8`, `fd00::/8`), kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    text: String,
    net: ipnet::IpNet,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let net = text
            .trim()
            .parse::<ipnet::IpNet>()
            .map_err(|_| format!("{text:?} is not a CIDR (e.g. 10.20.0.0/16 or fd00::/8)"))?;
        Ok(Cidr { text: text.trim().to_owned(), net })
    }

    /// The network, host bits cleared.
    pub fn net(&self) -> ipnet::IpNet {
        self.net.trunc()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Cidr::parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl JsonSchema for Cidr {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Cidr")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"description": "A CIDR, e.g. 10.20.0.0/16 or fd00::/8", "type": "string", "pattern": r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"})
    }
}

/// Path globs (`web/**`), compiled once.
#[derive(Debug, Clone, Default)]
pub struct Globs {
    patterns: Vec<String>,
    set: globset::GlobSet,
}

impl PartialEq for Globs {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Globs {
    pub fn new(patterns: &[String]) -> Result<Globs, String> {
        let mut builder = globset::GlobSetBuilder::new();
        for (i, pattern) in patterns.iter().enumerate() {
            let glob = globset::Glob::new(pattern).map_err(|e| format!("[{i}] {pattern:?}: {e}"))?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| e.to_string())?;
        Ok(Globs { patterns: patterns.to_vec(), set })
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.set.is_match(path)
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

impl<'de> Deserialize<'de> for Globs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Globs::new(&Vec::<String>::deserialize(d)?).map_err(D::Error::custom)
    }
}

impl Serialize for Globs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.patterns.serialize(s)
    }
}

impl JsonSchema for Globs {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Globs")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"description": "Path globs, e.g. web/** or **/*.proto", "type": "array", "items": {"type": "string", "minLength": 1}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_once_and_keep_their_text() {
        assert_eq!(Cpu::parse("250m").map(|c| c.cores()), Ok(0.25));
        assert_eq!(Cpu::parse("1.5").map(|c| c.cores()), Ok(1.5));
        assert_eq!(Bytes::parse("1Gi").map(|b| b.gib()), Ok(1.0));
        assert_eq!(Bytes::parse("512Mi").map(|b| b.as_str().to_owned()), Ok("512Mi".to_owned()));
        assert_eq!(Bytes::parse("2G").map(|b| b.bytes()), Ok(2e9));
        for bad in ["", "m", "1e3", "-1", "lots", "1Xi", "0x10", "1Gb"] {
            assert!(Cpu::parse(bad).is_err(), "{bad}");
            assert!(Bytes::parse(bad).is_err(), "{bad}");
        }
        let from_yaml: Cpu = serde_norway::from_str("2").unwrap();
        assert_eq!((from_yaml.cores(), from_yaml.as_str()), (2.0, "2"));
    }

    #[test]
    fn cidrs_and_globs_parse_once() {
        assert!(Cidr::parse("10.0.0.1/8").is_ok_and(|c| c.net().to_string() == "10.0.0.0/8"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        let globs = Globs::new(&["web/**".to_owned()]).unwrap();
        assert!(globs.is_match("web/a/b.ts") && !globs.is_match("api/x.go"));
        assert!(Globs::new(&["web/[".to_owned()]).is_err());
    }
}
