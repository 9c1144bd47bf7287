//! VirtualService rules (Istio's `validateVirtualService` and friends).

use super::Findings;
use super::common::{
    at_most_one, cidr, duration, host, opt_port, percent, regex, required, string_match,
};
use crate::networking::{
    Destination, HttpMatchRequest, HttpRoute, RouteDestination, VirtualService,
};

/// Retry conditions Envoy understands for `retryOn` (status codes are accepted too).
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

pub(crate) fn validate(vs: &VirtualService, p: &str, f: &mut Findings) {
    // A VirtualService without hosts is a delegate, only usable through another one's `delegate`.
    let delegate = vs.hosts.is_empty();
    if delegate {
        if !vs.gateways.is_empty() {
            f.error(
                format!("{p}.gateways"),
                "a delegate VirtualService (no hosts) must not set gateways",
            );
        }
        if !vs.tcp.is_empty() {
            f.error(
                format!("{p}.tcp"),
                "a delegate VirtualService (no hosts) must not have tcp routes",
            );
        }
        if !vs.tls.is_empty() {
            f.error(
                format!("{p}.tls"),
                "a delegate VirtualService (no hosts) must not have tls routes",
            );
        }
        if vs.http.is_empty() {
            f.error(format!("{p}.hosts"), "at least one host is required");
        }
    }
    let applies_to_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
    for (i, h) in vs.hosts.iter().enumerate() {
        let path = format!("{p}.hosts[{i}]");
        host(f, &path, h);
        if h == "*" && applies_to_mesh {
            f.error(
                path,
                "wildcard host * is not allowed for virtual services bound to the mesh gateway",
            );
        }
    }
    for (i, g) in vs.gateways.iter().enumerate() {
        required(f, &format!("{p}.gateways[{i}]"), "gateway name", g);
    }
    if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() {
        f.error(
            p.to_string(),
            "at least one http, tcp or tls route is required",
        );
    }
    for (i, route) in vs.http.iter().enumerate() {
        http_route(route, &format!("{p}.http[{i}]"), delegate, f);
    }
    for (i, tcp) in vs.tcp.iter().enumerate() {
        let rp = format!("{p}.tcp[{i}]");
        for (j, m) in tcp.match_.iter().enumerate() {
            let mp = format!("{rp}.match[{j}]");
            opt_port(f, &format!("{mp}.port"), m.port);
            for (k, s) in m.destination_subnets.iter().enumerate() {
                cidr(f, &format!("{mp}.destinationSubnets[{k}]"), s);
            }
            if let Some(s) = &m.source_subnet {
                cidr(f, &format!("{mp}.sourceSubnet"), s);
            }
        }
        route_destinations(&tcp.route, &format!("{rp}.route"), f);
    }
    for (i, tls) in vs.tls.iter().enumerate() {
        let rp = format!("{p}.tls[{i}]");
        if tls.match_.is_empty() {
            f.error(
                format!("{rp}.match"),
                "a TLS route needs at least one match",
            );
        }
        for (j, m) in tls.match_.iter().enumerate() {
            let mp = format!("{rp}.match[{j}]");
            if m.sni_hosts.is_empty() {
                f.error(
                    format!("{mp}.sniHosts"),
                    "at least one SNI host is required",
                );
            }
            for (k, h) in m.sni_hosts.iter().enumerate() {
                host(f, &format!("{mp}.sniHosts[{k}]"), h);
            }
            opt_port(f, &format!("{mp}.port"), m.port);
            for (k, s) in m.destination_subnets.iter().enumerate() {
                cidr(f, &format!("{mp}.destinationSubnets[{k}]"), s);
            }
        }
        route_destinations(&tls.route, &format!("{rp}.route"), f);
    }
}

fn http_route(r: &HttpRoute, p: &str, in_delegate: bool, f: &mut Findings) {
    let has_route = !r.route.is_empty();
    if !has_route && r.redirect.is_none() && r.direct_response.is_none() && r.delegate.is_none() {
        f.error(
            p.to_string(),
            "one of route, redirect, directResponse or delegate is required",
        );
    }
    at_most_one(
        f,
        p,
        &[
            ("route", has_route),
            ("redirect", r.redirect.is_some()),
            ("directResponse", r.direct_response.is_some()),
            ("delegate", r.delegate.is_some()),
        ],
    );
    if r.rewrite.is_some() && r.redirect.is_some() {
        f.error(
            format!("{p}.rewrite"),
            "rewrite and redirect cannot both be set",
        );
    }
    for (j, m) in r.match_.iter().enumerate() {
        http_match(m, &format!("{p}.match[{j}]"), f);
    }
    // Weights: each in 0..=100, and with several destinations they must add up to 100.
    let mut total: i64 = 0;
    for (k, rd) in r.route.iter().enumerate() {
        let dp = format!("{p}.route[{k}]");
        destination(&rd.destination, &format!("{dp}.destination"), f);
        if let Some(w) = rd.weight {
            weight(f, &format!("{dp}.weight"), w);
            total += i64::from(w);
        }
    }
    if r.route.len() > 1 && total != 100 {
        f.error(
            format!("{p}.route"),
            format!("total destination weight {total} != 100"),
        );
    }
    if let Some(redirect) = &r.redirect {
        let rp = format!("{p}.redirect");
        at_most_one(
            f,
            &rp,
            &[
                ("port", redirect.port.is_some()),
                ("derivePort", redirect.derive_port.is_some()),
            ],
        );
        opt_port(f, &format!("{rp}.port"), redirect.port);
        if let Some(code) = redirect.redirect_code
            && ![301, 302, 303, 307, 308].contains(&code)
        {
            f.error(
                format!("{rp}.redirectCode"),
                format!("redirect code {code} is not one of 301, 302, 303, 307, 308"),
            );
        }
    }
    if let Some(dr) = &r.direct_response {
        let dp = format!("{p}.directResponse");
        if !(200..=599).contains(&dr.status) {
            f.error(
                format!("{dp}.status"),
                format!("status {} is out of range 200..=599", dr.status),
            );
        }
        if let Some(body) = &dr.body {
            at_most_one(
                f,
                &format!("{dp}.body"),
                &[
                    ("string", body.string.is_some()),
                    ("bytes", body.bytes.is_some()),
                ],
            );
        }
    }
    if let Some(d) = &r.delegate {
        if in_delegate {
            f.error(
                format!("{p}.delegate"),
                "a delegate VirtualService cannot delegate again",
            );
        }
        required(f, &format!("{p}.delegate.name"), "name", &d.name);
    }
    if let Some(rw) = &r.rewrite {
        let rp = format!("{p}.rewrite");
        at_most_one(
            f,
            &rp,
            &[
                ("uri", rw.uri.is_some()),
                ("uriRegexRewrite", rw.uri_regex_rewrite.is_some()),
            ],
        );
        if let Some(rr) = &rw.uri_regex_rewrite {
            regex(f, &format!("{rp}.uriRegexRewrite.match"), &rr.match_);
        }
    }
    duration(f, &format!("{p}.timeout"), r.timeout.as_ref());
    if let Some(retries) = &r.retries {
        let rp = format!("{p}.retries");
        if let Some(a) = retries.attempts
            && a < 0
        {
            f.error(
                format!("{rp}.attempts"),
                format!("attempts {a} must not be negative"),
            );
        }
        duration(
            f,
            &format!("{rp}.perTryTimeout"),
            retries.per_try_timeout.as_ref(),
        );
        duration(f, &format!("{rp}.backoff"), retries.backoff.as_ref());
        if let Some(on) = &retries.retry_on {
            for policy in on.split(',').map(str::trim) {
                let known = RETRY_ON.contains(&policy)
                    || policy
                        .parse::<u16>()
                        .is_ok_and(|c| (100..=599).contains(&c));
                if !known {
                    f.error(
                        format!("{rp}.retryOn"),
                        format!("unknown retry condition {policy:?}"),
                    );
                }
            }
        }
    }
    if let Some(fault) = &r.fault {
        let fp = format!("{p}.fault");
        if fault.delay.is_none() && fault.abort.is_none() {
            f.error(fp.clone(), "fault needs a delay or an abort");
        }
        if let Some(d) = &fault.delay {
            let dp = format!("{fp}.delay");
            at_most_one(
                f,
                &dp,
                &[
                    ("fixedDelay", d.fixed_delay.is_some()),
                    ("exponentialDelay", d.exponential_delay.is_some()),
                ],
            );
            if d.fixed_delay.is_none() && d.exponential_delay.is_none() {
                f.error(dp.clone(), "a delay needs fixedDelay or exponentialDelay");
            }
            duration(f, &format!("{dp}.fixedDelay"), d.fixed_delay.as_ref());
            duration(
                f,
                &format!("{dp}.exponentialDelay"),
                d.exponential_delay.as_ref(),
            );
            percent(f, &format!("{dp}.percentage"), d.percentage.as_ref());
            if let Some(v) = d.percent
                && !(0..=100).contains(&v)
            {
                f.error(
                    format!("{dp}.percent"),
                    format!("percentage {v} is out of range 0..=100"),
                );
            }
        }
        if let Some(a) = &fault.abort {
            let ap = format!("{fp}.abort");
            at_most_one(
                f,
                &ap,
                &[
                    ("httpStatus", a.http_status.is_some()),
                    ("grpcStatus", a.grpc_status.is_some()),
                    ("http2Error", a.http2_error.is_some()),
                ],
            );
            if let Some(s) = a.http_status
                && !(200..=599).contains(&s)
            {
                f.error(
                    format!("{ap}.httpStatus"),
                    format!("status {s} is out of range 200..=599"),
                );
            }
            percent(f, &format!("{ap}.percentage"), a.percentage.as_ref());
        }
    }
    if r.mirror.is_some() && !r.mirrors.is_empty() {
        f.error(
            format!("{p}.mirrors"),
            "mirror and mirrors cannot both be set",
        );
    }
    if let Some(m) = &r.mirror {
        destination(m, &format!("{p}.mirror"), f);
    }
    percent(
        f,
        &format!("{p}.mirrorPercentage"),
        r.mirror_percentage.as_ref(),
    );
    for (field, value) in [
        ("mirrorPercent", r.mirror_percent),
        ("mirror_percent", r.mirror_percent_legacy),
    ] {
        if let Some(v) = value
            && v > 100
        {
            f.error(
                format!("{p}.{field}"),
                format!("percentage {v} is out of range 0..=100"),
            );
        }
    }
    for (k, m) in r.mirrors.iter().enumerate() {
        destination(&m.destination, &format!("{p}.mirrors[{k}].destination"), f);
        percent(
            f,
            &format!("{p}.mirrors[{k}].percentage"),
            m.percentage.as_ref(),
        );
    }
    if let Some(cors) = &r.cors_policy {
        let cp = format!("{p}.corsPolicy");
        for (k, o) in cors.allow_origins.iter().enumerate() {
            string_match(f, &format!("{cp}.allowOrigins[{k}]"), Some(o));
        }
        duration(f, &format!("{cp}.maxAge"), cors.max_age.as_ref());
    }
}

fn http_match(m: &HttpMatchRequest, p: &str, f: &mut Findings) {
    string_match(f, &format!("{p}.uri"), m.uri.as_ref());
    string_match(f, &format!("{p}.scheme"), m.scheme.as_ref());
    string_match(f, &format!("{p}.method"), m.method.as_ref());
    string_match(f, &format!("{p}.authority"), m.authority.as_ref());
    for (field, map) in [
        ("headers", &m.headers),
        ("queryParams", &m.query_params),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, sm) in map {
            if name.is_empty() {
                f.error(format!("{p}.{field}"), "names must not be empty");
            }
            string_match(f, &format!("{p}.{field}.{name}"), Some(sm));
        }
    }
    opt_port(f, &format!("{p}.port"), m.port);
}

fn route_destinations(routes: &[RouteDestination], p: &str, f: &mut Findings) {
    if routes.is_empty() {
        f.error(p.to_string(), "at least one route destination is required");
    }
    let mut total: i64 = 0;
    for (k, rd) in routes.iter().enumerate() {
        destination(&rd.destination, &format!("{p}[{k}].destination"), f);
        if let Some(w) = rd.weight {
            weight(f, &format!("{p}[{k}].weight"), w);
            total += i64::from(w);
        }
    }
    if routes.len() > 1 && total != 100 {
        f.error(
            p.to_string(),
            format!("total destination weight {total} != 100"),
        );
    }
}

fn weight(f: &mut Findings, path: &str, w: i32) {
    if !(0..=100).contains(&w) {
        f.error(path, format!("weight {w} is out of range 0..=100"));
    }
}

fn destination(d: &Destination, p: &str, f: &mut Findings) {
    if d.host.is_empty() {
        f.error(format!("{p}.host"), "host is required");
    } else {
        host(f, &format!("{p}.host"), &d.host);
        if d.host.contains('*') {
            f.error(
                format!("{p}.host"),
                format!("destination host {:?} must not contain a wildcard", d.host),
            );
        }
    }
    if let Some(port) = d.port.and_then(|p| p.number) {
        super::common::port(f, &format!("{p}.port.number"), port);
    }
    if let Some(s) = &d.subset {
        required(f, &format!("{p}.subset"), "subset name", s);
    }
}
