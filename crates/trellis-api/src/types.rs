//! Value types shared by several Istio kinds: durations, string matches, percentages, selectors.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use std::collections::BTreeMap;

/// Defines an Istio enum whose variants keep Istio's exact SCREAMING_CASE names on the wire.
macro_rules! istio_enum {
    ($(#[$meta:meta])* $name:ident { $($var:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(
                #[doc = concat!("Istio's `", $wire, "`.")]
                #[serde(rename = $wire)]
                $var,
            )+
        }

        impl $name {
            /// Istio's wire name of this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$var => $wire,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use istio_enum;

/// A protobuf/Go duration such as `1.5s`, `100ms`, `1m` or `1h30m`, as Istio YAML writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// The duration as a standard library value.
    pub fn as_std(self) -> std::time::Duration {
        self.0
    }

    /// Parses an Istio duration string, explaining what is wrong when it is not one.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let s = text.trim();
        let fail = |why: &str| Err(format!("invalid duration {text:?}: {why}"));
        if s.is_empty() {
            return fail("empty string");
        }
        if s.starts_with('-') {
            return fail("durations must not be negative");
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        if s == "0" {
            return Ok(Duration(std::time::Duration::ZERO));
        }
        let mut rest = s;
        let mut total_nanos: u128 = 0;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let (num, after) = rest.split_at(num_len);
            if num.is_empty() || num == "." || num.matches('.').count() > 1 {
                return fail(
                    "expected a number followed by a unit (ns, us, ms, s, m, h), e.g. \"1.5s\"",
                );
            }
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return fail("missing unit (ns, us, ms, s, m, h)"),
                other => {
                    return fail(&format!(
                        "unknown unit {other:?} (expected ns, us, ms, s, m or h)"
                    ));
                }
            };
            let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
            let int: u128 = if int_part.is_empty() {
                0
            } else {
                match int_part.parse() {
                    Ok(v) => v,
                    Err(_) => return fail("number is too large"),
                }
            };
            let mut nanos = int.saturating_mul(unit_nanos);
            let mut scale = unit_nanos;
            for digit in frac_part.chars().filter_map(|c| c.to_digit(10)) {
                scale /= 10;
                nanos = nanos.saturating_add(u128::from(digit) * scale);
            }
            total_nanos = total_nanos.saturating_add(nanos);
            rest = after;
        }
        let secs = u64::try_from(total_nanos / 1_000_000_000)
            .map_err(|_| format!("invalid duration {text:?}: too large"))?;
        // The remainder is below one second, so it fits in u32.
        let sub = (total_nanos % 1_000_000_000) as u32;
        Ok(Duration(std::time::Duration::new(secs, sub)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d.subsec_nanos().is_multiple_of(1_000_000) && d.as_secs() == 0 {
            write!(f, "{}ms", d.subsec_millis())
        } else {
            let frac = format!("{:09}", d.subsec_nanos());
            write!(f, "{}.{}s", d.as_secs(), frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"1.5s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Istio's `StringMatch`: at most one of `exact`, `prefix` or `regex` (RE2 syntax). An empty
/// match (`{}`) matches any value — Istio's way of saying "the header (or query parameter) is
/// present" — and is kept as an empty prefix, which the translation turns into a presence match.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "StringMatchFields")]
pub enum StringMatch {
    /// The value must equal this string.
    Exact(String),
    /// The value must start with this string.
    Prefix(String),
    /// The value must fully match this RE2 regular expression.
    Regex(String),
}

impl StringMatch {
    /// The regex, when this is a regex match (the only kind that needs compiling).
    pub fn regex(&self) -> Option<&str> {
        match self {
            StringMatch::Regex(r) => Some(r),
            _ => None,
        }
    }
}

impl fmt::Display for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StringMatch::Exact(v) => write!(f, "exact {v:?}"),
            StringMatch::Prefix(v) => write!(f, "prefix {v:?}"),
            StringMatch::Regex(v) => write!(f, "regex {v:?}"),
        }
    }
}

/// The wire form of [`StringMatch`], checked for "exactly one key" on conversion.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StringMatchFields {
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<String>,
}

impl TryFrom<StringMatchFields> for StringMatch {
    type Error = String;
    fn try_from(f: StringMatchFields) -> Result<Self, String> {
        match (f.exact, f.prefix, f.regex) {
            (Some(v), None, None) => Ok(StringMatch::Exact(v)),
            (None, Some(v), None) => Ok(StringMatch::Prefix(v)),
            (None, None, Some(v)) => Ok(StringMatch::Regex(v)),
            (None, None, None) => Ok(StringMatch::Prefix(String::new())),
            _ => Err("a string match takes only one of exact, prefix or regex".to_string()),
        }
    }
}

/// Istio's `Percent`: a double in 0..=100 wrapped in `{value: ...}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    /// The percentage, 0..=100.
    #[serde(default)]
    pub value: f64,
}

/// A Kubernetes int-or-string value (`x-kubernetes-int-or-string`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// The integer form.
    Int(i64),
    /// The string form.
    String(String),
}

/// Istio's `PortSelector`: a port by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    /// The port number.
    pub number: Option<u32>,
}

/// Istio's `WorkloadSelector` (`labels`), used by ServiceEntry and Sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels a workload must carry to be selected.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Istio's type `WorkloadSelector` with `matchLabels`, used by DestinationRule and security kinds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels a workload must carry to be selected.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// Istio's `PolicyTargetReference`: a Gateway API style reference to what a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    /// API group of the target.
    pub group: Option<String>,
    /// Kind of the target (required).
    #[serde(default)]
    pub kind: String,
    /// Name of the target (required).
    #[serde(default)]
    pub name: String,
    /// Namespace of the target (must be empty: same namespace as the policy).
    pub namespace: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> std::time::Duration {
        Duration::parse(s).unwrap().as_std()
    }

    #[test]
    fn parses_istio_durations() {
        assert_eq!(d("1.5s"), std::time::Duration::from_millis(1500));
        assert_eq!(d("100ms"), std::time::Duration::from_millis(100));
        assert_eq!(d("1m"), std::time::Duration::from_secs(60));
        assert_eq!(d("1h"), std::time::Duration::from_secs(3600));
        assert_eq!(d("1h30m"), std::time::Duration::from_secs(5400));
        assert_eq!(d("250us"), std::time::Duration::from_micros(250));
        assert_eq!(d("0"), std::time::Duration::ZERO);
        assert_eq!(d(".5s"), std::time::Duration::from_millis(500));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert_eq!(
            Duration::parse("abc").unwrap_err(),
            "invalid duration \"abc\": expected a number followed by a unit (ns, us, ms, s, m, h), e.g. \"1.5s\""
        );
        assert_eq!(
            Duration::parse("10").unwrap_err(),
            "invalid duration \"10\": missing unit (ns, us, ms, s, m, h)"
        );
        assert_eq!(
            Duration::parse("-1s").unwrap_err(),
            "invalid duration \"-1s\": durations must not be negative"
        );
        assert_eq!(
            Duration::parse("5d").unwrap_err(),
            "invalid duration \"5d\": unknown unit \"d\" (expected ns, us, ms, s, m or h)"
        );
        assert!(Duration::parse("").is_err());
        assert!(Duration::parse("1..5s").is_err());
    }

    #[test]
    fn displays_like_protobuf() {
        assert_eq!(Duration::parse("1.5s").unwrap().to_string(), "1.5s");
        assert_eq!(Duration::parse("100ms").unwrap().to_string(), "100ms");
        assert_eq!(Duration::parse("1m").unwrap().to_string(), "60s");
    }

    #[test]
    fn duration_rejects_numbers() {
        let err = serde_yaml::from_value::<Duration>(serde_yaml::Value::from(5))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid type: integer `5`, expected a duration string such as \"1.5s\""
        );
    }

    #[test]
    fn string_match_forms() {
        let m: StringMatch = serde_yaml::from_str("prefix: /api").unwrap();
        assert_eq!(m, StringMatch::Prefix("/api".into()));
        let any: StringMatch = serde_yaml::from_str("{}").unwrap();
        assert_eq!(
            any,
            StringMatch::Prefix(String::new()),
            "{{}} means present / any value"
        );
        let err = serde_yaml::from_str::<StringMatch>("suffix: x")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown field `suffix`"), "{err}");
    }

    #[test]
    fn int_or_string_accepts_both() {
        assert_eq!(
            serde_yaml::from_str::<IntOrString>("8080").unwrap(),
            IntOrString::Int(8080)
        );
        assert_eq!(
            serde_yaml::from_str::<IntOrString>("http").unwrap(),
            IntOrString::String("http".into())
        );
    }
}
