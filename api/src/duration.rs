//! The duration type of the spec: a string such as `"500ms"`, `"10s"`, `"5m"`, `"1h"`.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration written the human way (`"10s"`, `"1m30s"`, `"250ms"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    /// Whole milliseconds, saturating at `i64::MAX`.
    pub fn as_millis_i64(&self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub fn std(&self) -> std::time::Duration {
        self.0
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(Duration)
            .map_err(|_| format!("expected a duration like \"10s\", got {s:?}"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Compact (`1m30s`), so it parses back and matches the schema's pattern.
        let text = humantime::format_duration(self.0).to_string();
        f.write_str(&text.replace(' ', ""))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like \"10s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as \"500ms\", \"10s\", \"5m\" or \"1h\".",
            "pattern": "^([0-9]+(ns|us|ms|s|m|h|d))+$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!(Duration::parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(
            Duration::parse("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(Duration::parse("1m30s").unwrap(), Duration::from_secs(90));
        assert!(Duration::parse("ten").is_err());
        assert_eq!(Duration::from_secs(90).to_string(), "1m30s");
        assert_eq!(Duration::parse("1m30s").unwrap(), Duration::from_secs(90));
        let d: Duration = serde_yaml::from_str("\"5m\"").unwrap();
        assert_eq!(d, Duration::from_secs(300));
    }
}
