//! Trace context on the wire: B3 (multi-header `x-b3-*` and the single `b3` header) and W3C
//! `traceparent`/`tracestate`. Everything here comes from a peer: malformed or hostile values
//! are ignored (a fresh trace starts), never trusted in part and never a panic.

use http::{HeaderMap, HeaderValue};

/// The trace context a request arrived with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// The trace id (64-bit ids have a zero high half).
    pub trace_id: u128,
    /// Whether the trace id was sent as 128 bits.
    pub trace_id_128: bool,
    /// The caller's span.
    pub span_id: u64,
    /// The caller's sampling decision, if it made one.
    pub sampled: Option<bool>,
}

/// What a request carries: a full context, or only a sampling decision (`x-b3-sampled` alone
/// or `b3: 0`), or nothing usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extracted {
    /// A parent span.
    Parent(Parent),
    /// Only a decision.
    Decision(bool),
    /// Nothing (absent or malformed).
    None,
}

const B3_TRACE: &str = "x-b3-traceid";
const B3_SPAN: &str = "x-b3-spanid";
const B3_PARENT: &str = "x-b3-parentspanid";
const B3_SAMPLED: &str = "x-b3-sampled";
const B3_FLAGS: &str = "x-b3-flags";
const B3_SINGLE: &str = "b3";
const TRACEPARENT: &str = "traceparent";

/// Every header of the formats (removed before injecting fresh ones).
pub const HEADERS: [&str; 7] = [
    B3_TRACE,
    B3_SPAN,
    B3_PARENT,
    B3_SAMPLED,
    B3_FLAGS,
    B3_SINGLE,
    TRACEPARENT,
];

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Lowercase or uppercase hex of exactly `len` digits, not all zero.
fn hex_id(s: &str, lens: &[usize]) -> Option<u128> {
    if !lens.contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(s, 16).ok().filter(|v| *v != 0)
}

fn span_id(s: &str) -> Option<u64> {
    hex_id(s, &[16]).and_then(|v| u64::try_from(v).ok())
}

fn b3_sampled(s: &str) -> Option<bool> {
    match s {
        "1" | "d" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Reads the context: B3 multi-header first, then the single `b3` header, then W3C.
pub fn extract(headers: &HeaderMap) -> Extracted {
    let debug = header(headers, B3_FLAGS) == Some("1");
    if let (Some(t), Some(s)) = (header(headers, B3_TRACE), header(headers, B3_SPAN)) {
        if let (Some(trace_id), Some(span_id)) = (hex_id(t, &[16, 32]), span_id(s)) {
            let sampled = if debug {
                Some(true)
            } else {
                header(headers, B3_SAMPLED).and_then(b3_sampled)
            };
            return Extracted::Parent(Parent {
                trace_id,
                trace_id_128: t.len() == 32,
                span_id,
                sampled,
            });
        }
    } else if let Some(decision) = header(headers, B3_SAMPLED).and_then(b3_sampled) {
        return Extracted::Decision(decision || debug);
    }
    if let Some(b3) = header(headers, B3_SINGLE) {
        match single_b3(b3) {
            Extracted::None => {}
            found => return found,
        }
    }
    if let Some(tp) = header(headers, TRACEPARENT)
        && let Some(p) = traceparent(tp)
    {
        return Extracted::Parent(p);
    }
    Extracted::None
}

/// `b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]` or just `b3: 0|1|d`.
fn single_b3(s: &str) -> Extracted {
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [only] => b3_sampled(only).map_or(Extracted::None, Extracted::Decision),
        [t, sp, rest @ ..] if rest.len() <= 2 => {
            let (Some(trace_id), Some(span_id)) = (hex_id(t, &[16, 32]), span_id(sp)) else {
                return Extracted::None;
            };
            let sampled = match rest.first() {
                None => None,
                Some(state) => match b3_sampled(state) {
                    Some(v) => Some(v),
                    None => return Extracted::None,
                },
            };
            if let Some(p) = rest.get(1)
                && span_id_ok(p).is_none()
            {
                return Extracted::None;
            }
            Extracted::Parent(Parent {
                trace_id,
                trace_id_128: t.len() == 32,
                span_id,
                sampled,
            })
        }
        _ => Extracted::None,
    }
}

fn span_id_ok(s: &str) -> Option<u64> {
    span_id(s)
}

/// `traceparent: 00-<32 hex>-<16 hex>-<2 hex>` (a later version may append fields; `ff` is
/// invalid).
fn traceparent(s: &str) -> Option<Parent> {
    let mut parts = s.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    let more = parts.next();
    if version.len() != 2
        || !version.bytes().all(|b| b.is_ascii_hexdigit())
        || version.eq_ignore_ascii_case("ff")
        || (version == "00" && more.is_some())
        || flags.len() != 2
    {
        return None;
    }
    if trace.bytes().any(|b| b.is_ascii_uppercase())
        || parent.bytes().any(|b| b.is_ascii_uppercase())
    {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(Parent {
        trace_id: hex_id(trace, &[32])?,
        trace_id_128: true,
        span_id: span_id(parent)?,
        sampled: Some(flags & 1 == 1),
    })
}

/// A trace id as hex: 32 digits when 128-bit, else 16.
pub fn trace_id_hex(trace_id: u128, wide: bool) -> String {
    if wide {
        format!("{trace_id:032x}")
    } else {
        format!("{:016x}", trace_id as u64)
    }
}

/// Replaces the context headers with B3 (multi-header) and W3C ones for `span_id` as the
/// parent of the next hop. `tracestate` passes through untouched.
pub fn inject(
    headers: &mut HeaderMap,
    trace_id: u128,
    trace_id_128: bool,
    span_id: u64,
    parent_id: Option<u64>,
    sampled: bool,
) {
    for h in HEADERS {
        headers.remove(h);
    }
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set(B3_TRACE, trace_id_hex(trace_id, trace_id_128));
    set(B3_SPAN, format!("{span_id:016x}"));
    if let Some(p) = parent_id {
        set(B3_PARENT, format!("{p:016x}"));
    }
    set(B3_SAMPLED, if sampled { "1" } else { "0" }.to_string());
    set(
        TRACEPARENT,
        format!(
            "00-{trace_id:032x}-{span_id:016x}-{}",
            if sampled { "01" } else { "00" }
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_bytes(v.as_bytes()).expect("value"));
        }
        h
    }

    #[test]
    fn b3_multi_single_and_w3c() {
        let p = |e| match e {
            Extracted::Parent(p) => (p.trace_id, p.span_id, p.sampled, p.trace_id_128),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            p(extract(&headers(&[
                ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
                ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ("x-b3-sampled", "1"),
            ]))),
            (
                0x463ac35c9f6413ad48485a3953bb6124,
                0xa2fb4a1d1a96d312,
                Some(true),
                true
            )
        );
        assert_eq!(
            p(extract(&headers(&[(
                "b3",
                "80f198ee56343ba8-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90"
            )]))),
            (0x80f198ee56343ba8, 0xe457b5a2e4d86bd1, Some(false), false)
        );
        assert_eq!(
            p(extract(&headers(&[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            )]))),
            (
                0x4bf92f3577b34da6a3ce929d0e0e4736,
                0x00f067aa0ba902b7,
                Some(true),
                true
            )
        );
        assert_eq!(
            extract(&headers(&[("x-b3-sampled", "0")])),
            Extracted::Decision(false)
        );
        assert_eq!(extract(&headers(&[("b3", "1")])), Extracted::Decision(true));
    }

    #[test]
    fn hostile_headers_start_a_fresh_trace() {
        for bad in [
            vec![("x-b3-traceid", "zz"), ("x-b3-spanid", "a2fb4a1d1a96d312")],
            vec![
                ("x-b3-traceid", "0000000000000000"),
                ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ],
            vec![
                ("x-b3-traceid", "463ac35c9f6413ad"),
                ("x-b3-spanid", "a2fb4a1d1a96d3"),
            ],
            vec![
                ("x-b3-traceid", &"f".repeat(4096)),
                ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ],
            vec![("b3", "80f198ee56343ba8-e457b5a2e4d86bd1-x")],
            vec![("b3", "--------")],
            vec![("b3", "80f198ee56343ba8-e457b5a2e4d86bd1-1-2-3")],
            vec![(
                "traceparent",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
            vec![(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )],
            vec![(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            )],
            vec![(
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            )],
            vec![(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            )],
            vec![("traceparent", "00-4bf92f35-00f067aa0ba902b7-zz")],
            vec![("traceparent", "")],
            vec![("traceparent", "\u{e9}")],
        ] {
            let h = headers(&bad);
            assert_eq!(extract(&h), Extracted::None, "{bad:?}");
        }
    }

    #[test]
    fn inject_replaces_everything() {
        let mut h = headers(&[("b3", "1"), ("x-b3-flags", "1"), ("tracestate", "k=v")]);
        inject(&mut h, 0xabc, true, 0x12, Some(0x34), true);
        assert_eq!(h["x-b3-traceid"], "00000000000000000000000000000abc");
        assert_eq!(h["x-b3-spanid"], "0000000000000012");
        assert_eq!(h["x-b3-parentspanid"], "0000000000000034");
        assert_eq!(h["x-b3-sampled"], "1");
        assert_eq!(
            h["traceparent"],
            "00-00000000000000000000000000000abc-0000000000000012-01"
        );
        assert!(h.get("b3").is_none() && h.get("x-b3-flags").is_none());
        assert_eq!(h["tracestate"], "k=v");
    }
}
