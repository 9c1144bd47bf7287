//! Checks shared by several kinds: ports, durations, percentages, regexes, hosts, subnets.

use std::net::IpAddr;

use super::Findings;
use crate::types::{Duration, Percent, StringMatch};

/// Port numbers must be 1..=65535.
pub(crate) fn port(f: &mut Findings, path: &str, number: u32) {
    if !(1..=65535).contains(&number) {
        f.error(path, format!("port {number} is out of range 1..=65535"));
    }
}

/// Optional port: checked when present.
pub(crate) fn opt_port(f: &mut Findings, path: &str, number: Option<u32>) {
    if let Some(n) = number {
        port(f, path, n);
    }
}

/// Istio requires most durations to be at least 1ms.
pub(crate) fn duration(f: &mut Findings, path: &str, d: Option<&Duration>) {
    if let Some(d) = d
        && d.0 < std::time::Duration::from_millis(1)
    {
        f.error(path, format!("duration {d} must be at least 1ms"));
    }
}

/// Percentages must be in 0..=100.
pub(crate) fn percentage(f: &mut Findings, path: &str, value: Option<f64>) {
    if let Some(v) = value
        && !(0.0..=100.0).contains(&v)
    {
        f.error(path, format!("percentage {v} is out of range 0..=100"));
    }
}

/// An Istio `Percent` (`{value: ...}`) must be in 0..=100.
pub(crate) fn percent(f: &mut Findings, path: &str, p: Option<&Percent>) {
    percentage(f, &format!("{path}.value"), p.map(|p| p.value));
}

/// Regexes must compile (RE2 syntax, as Envoy uses).
pub(crate) fn regex(f: &mut Findings, path: &str, re: &str) {
    if let Err(e) = regex::Regex::new(re) {
        f.error(path, format!("invalid regex {re:?}: {}", regex_message(&e)));
    }
}

/// The regex compiler's message, on one line.
fn regex_message(e: &regex::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once("error: ") {
        Some((_, msg)) => msg.trim().to_string(),
        None => text.lines().map(str::trim).collect::<Vec<_>>().join(" "),
    }
}

/// A string match's regex must compile.
pub(crate) fn string_match(f: &mut Findings, path: &str, m: Option<&StringMatch>) {
    if let Some(re) = m.and_then(StringMatch::regex) {
        regex(f, &format!("{path}.regex"), re);
    }
}

/// A required string must not be empty.
pub(crate) fn required(f: &mut Findings, path: &str, field: &str, value: &str) {
    if value.is_empty() {
        f.error(path, format!("{field} is required"));
    }
}

/// At most one of the named fields may be set.
pub(crate) fn at_most_one(f: &mut Findings, path: &str, fields: &[(&str, bool)]) {
    let set: Vec<&str> = fields.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
    if set.len() > 1 {
        let all: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        f.error(
            path,
            format!(
                "only one of {} may be set (found {})",
                all.join(", "),
                set.join(" and ")
            ),
        );
    }
}

/// A host name, possibly with a leading `*` wildcard label.
pub(crate) fn host(f: &mut Findings, path: &str, host: &str) {
    if host.is_empty() {
        f.error(path, "host must not be empty");
        return;
    }
    if host == "*" {
        return;
    }
    let rest = host.strip_prefix("*.").unwrap_or(host);
    if rest.contains('*') {
        f.error(
            path,
            format!(
                "host {host:?} is invalid: a wildcard is only allowed as the whole first label"
            ),
        );
        return;
    }
    if host.contains('/') || host.contains(' ') {
        f.error(path, format!("host {host:?} is invalid: not a DNS name"));
    }
}

/// An IP address or CIDR block.
pub(crate) fn cidr(f: &mut Findings, path: &str, value: &str) {
    let (ip, prefix) = value
        .split_once('/')
        .map_or((value, None), |(ip, p)| (ip, Some(p)));
    let Ok(addr) = ip.parse::<IpAddr>() else {
        f.error(
            path,
            format!("{value:?} is not an IP address or CIDR block"),
        );
        return;
    };
    if let Some(prefix) = prefix {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if !prefix.parse::<u8>().is_ok_and(|p| p <= max) {
            f.error(
                path,
                format!("{value:?} has an invalid prefix length (0..={max})"),
            );
        }
    }
}
