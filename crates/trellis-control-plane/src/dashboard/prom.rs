//! A tolerant parser for the Prometheus text exposition format: the dashboard reads what
//! proxies serve on `/stats/prometheus`, and a malformed line from a peer must cost only that
//! line, never a panic.

use std::collections::BTreeMap;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name (with its `_bucket`/`_total` suffix as served).
    pub name: String,
    /// Label name → unescaped value.
    pub labels: BTreeMap<String, String>,
    /// The sample value (`+Inf`, `-Inf` and `NaN` allowed).
    pub value: f64,
}

impl Sample {
    /// A label's value, empty when absent (as PromQL treats it).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

/// What a scrape body held: the samples that parsed and how many lines did not.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// Samples in body order.
    pub samples: Vec<Sample>,
    /// Lines that were neither comments, blank, nor valid samples.
    pub malformed: usize,
}

/// Parses a whole exposition body, keeping only samples whose name `keep` accepts (so the
/// dashboard does not allocate for the metrics it ignores).
pub fn parse(body: &str, keep: impl Fn(&str) -> bool) -> Parsed {
    let mut parsed = Parsed::default();
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        if !keep(&line[..name_end]) {
            continue;
        }
        match parse_line(line) {
            Some(sample) => parsed.samples.push(sample),
            None => parsed.malformed += 1,
        }
    }
    parsed
}

/// Parses one sample line; `None` when it is malformed.
pub fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    // An optional timestamp, then nothing.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` and returns what follows the closing brace.
fn parse_labels<'a>(mut s: &'a str, labels: &mut BTreeMap<String, String>) -> Option<&'a str> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some(after);
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let after_eq = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after_eq.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        s = after_eq[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

/// Parses a sample value as Prometheus writes it.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_escapes_and_special_values() {
        let body = "# HELP x y\n# TYPE x counter\n\
            x{a=\"1\",b=\"q\\\"uo\\\\te\\n\"} 3\n\
            y 4.5 1700000000000\n\
            h_bucket{le=\"+Inf\"} +Inf\n\
            z{a=\"1\",} NaN\n";
        let parsed = parse(body, |_| true);
        assert_eq!(parsed.malformed, 0);
        assert_eq!(parsed.samples.len(), 4);
        assert_eq!(parsed.samples[0].label("b"), "q\"uo\\te\n");
        assert_eq!(parsed.samples[0].value, 3.0);
        assert_eq!(parsed.samples[1].value, 4.5);
        assert!(parsed.samples[1].labels.is_empty());
        assert_eq!(parsed.samples[2].label("le"), "+Inf");
        assert!(parsed.samples[2].value.is_infinite());
        assert!(parsed.samples[3].value.is_nan());
        assert_eq!(parsed.samples[0].label("missing"), "");
    }

    #[test]
    fn filters_by_name() {
        let parsed = parse("a 1\nb 2\nbogus{{{\n", |n| n == "b");
        assert_eq!(parsed.samples.len(), 1);
        assert_eq!(parsed.malformed, 0);
    }

    #[test]
    fn hostile_input_never_panics() {
        let hostile = [
            "x{",
            "x{a",
            "x{a=",
            "x{a=\"",
            "x{a=\"\\",
            "x{a=\"v\"",
            "x{a=\"v\" b=\"w\"} 1",
            "x{=\"v\"} 1",
            "x{a=v} 1",
            "x{a=\"v\"}",
            "x 1 2 3",
            "x 1 notatimestamp",
            "x abc",
            "{a=\"b\"} 1",
            "x{a=\"é\\\u{1F600}\"} 1",
            "x{a=\"\u{0}\"}} 1",
            "é 1",
            "x}",
            "\u{FEFF}x 1",
        ];
        for line in hostile {
            let parsed = parse(line, |_| true);
            assert!(parsed.samples.len() + parsed.malformed <= 1, "{line:?}");
        }
        assert_eq!(parse("x{a=\"v\"}", |_| true).malformed, 1);
        assert_eq!(parse("x 1 notatimestamp", |_| true).malformed, 1);
        // Arbitrary bytes through lossy UTF-8: must not panic.
        let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let _ = parse(&String::from_utf8_lossy(&bytes), |_| true);
    }
}
