//! DestinationRule rules (Istio's `validateDestinationRule` and traffic policy checks).

use std::collections::BTreeMap;

use super::Findings;
use super::common::{at_most_one, duration, host, percentage, port, required};
use crate::networking::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, DestinationRule,
    LoadBalancerSettings, OutlierDetection, TrafficPolicy,
};

pub(crate) fn validate(dr: &DestinationRule, p: &str, f: &mut Findings) {
    if dr.host.is_empty() {
        f.error(format!("{p}.host"), "host is required");
    } else {
        host(f, &format!("{p}.host"), &dr.host);
    }
    if let Some(tp) = &dr.traffic_policy {
        traffic_policy(tp, &format!("{p}.trafficPolicy"), f);
    }
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, subset) in dr.subsets.iter().enumerate() {
        let sp = format!("{p}.subsets[{i}]");
        if subset.name.is_empty() {
            f.error(format!("{sp}.name"), "name is required");
        } else if let Some(j) = first.get(subset.name.as_str()) {
            f.error(
                format!("{sp}.name"),
                format!(
                    "duplicate subset name {:?} (already defined at {p}.subsets[{j}])",
                    subset.name
                ),
            );
        } else {
            first.insert(&subset.name, i);
        }
        if let Some(tp) = &subset.traffic_policy {
            traffic_policy(tp, &format!("{sp}.trafficPolicy"), f);
        }
    }
}

/// Checks a traffic policy (also used for subsets).
pub(crate) fn traffic_policy(tp: &TrafficPolicy, p: &str, f: &mut Findings) {
    if let Some(lb) = &tp.load_balancer {
        load_balancer(lb, &format!("{p}.loadBalancer"), f);
    }
    if let Some(cp) = &tp.connection_pool {
        connection_pool(cp, &format!("{p}.connectionPool"), f);
    }
    if let Some(od) = &tp.outlier_detection {
        outlier_detection(od, &format!("{p}.outlierDetection"), f);
    }
    if let Some(tls) = &tp.tls {
        client_tls(tls, &format!("{p}.tls"), f);
    }
    let mut ports: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let pp = format!("{p}.portLevelSettings[{i}]");
        match pl.port.and_then(|s| s.number) {
            None => f.error(format!("{pp}.port"), "port number is required"),
            Some(n) => {
                port(f, &format!("{pp}.port.number"), n);
                if let Some(j) = ports.insert(n, i) {
                    f.error(
                        format!("{pp}.port.number"),
                        format!("port {n} already has settings at {p}.portLevelSettings[{j}]"),
                    );
                }
            }
        }
        if let Some(lb) = &pl.load_balancer {
            load_balancer(lb, &format!("{pp}.loadBalancer"), f);
        }
        if let Some(cp) = &pl.connection_pool {
            connection_pool(cp, &format!("{pp}.connectionPool"), f);
        }
        if let Some(od) = &pl.outlier_detection {
            outlier_detection(od, &format!("{pp}.outlierDetection"), f);
        }
        if let Some(tls) = &pl.tls {
            client_tls(tls, &format!("{pp}.tls"), f);
        }
    }
    if let Some(t) = &tp.tunnel {
        let tp_ = format!("{p}.tunnel");
        required(
            f,
            &format!("{tp_}.targetHost"),
            "targetHost",
            &t.target_host,
        );
        port(f, &format!("{tp_}.targetPort"), t.target_port);
        if let Some(proto) = &t.protocol
            && !matches!(proto.as_str(), "CONNECT" | "POST")
        {
            f.error(
                format!("{tp_}.protocol"),
                format!("tunnel protocol {proto:?} must be CONNECT or POST"),
            );
        }
    }
    if let Some(rb) = &tp.retry_budget {
        percentage(f, &format!("{p}.retryBudget.percent"), rb.percent);
        duration(
            f,
            &format!("{p}.retryBudget.budgetInterval"),
            rb.budget_interval.as_ref(),
        );
    }
}

fn load_balancer(lb: &LoadBalancerSettings, p: &str, f: &mut Findings) {
    at_most_one(
        f,
        p,
        &[
            ("simple", lb.simple.is_some()),
            ("consistentHash", lb.consistent_hash.is_some()),
            ("backendUtilization", lb.backend_utilization.is_some()),
        ],
    );
    if let Some(ch) = &lb.consistent_hash {
        let cp = format!("{p}.consistentHash");
        at_most_one(
            f,
            &cp,
            &[
                ("httpHeaderName", ch.http_header_name.is_some()),
                ("httpCookie", ch.http_cookie.is_some()),
                ("useSourceIp", ch.use_source_ip.is_some()),
                (
                    "httpQueryParameterName",
                    ch.http_query_parameter_name.is_some(),
                ),
            ],
        );
        at_most_one(
            f,
            &cp,
            &[
                ("ringHash", ch.ring_hash.is_some()),
                ("maglev", ch.maglev.is_some()),
            ],
        );
        if let Some(cookie) = &ch.http_cookie {
            required(f, &format!("{cp}.httpCookie.name"), "name", &cookie.name);
        }
    }
    if let Some(loc) = &lb.locality_lb_setting {
        let lp = format!("{p}.localityLbSetting");
        if !loc.distribute.is_empty() && !loc.failover.is_empty() {
            f.error(lp.clone(), "distribute and failover cannot both be set");
        }
        for (i, d) in loc.distribute.iter().enumerate() {
            let total: u64 = d.to.values().map(|w| u64::from(*w)).sum();
            if total != 100 {
                f.error(
                    format!("{lp}.distribute[{i}].to"),
                    format!("total weight {total} != 100"),
                );
            }
        }
    }
    duration(
        f,
        &format!("{p}.warmupDurationSecs"),
        lb.warmup_duration_secs.as_ref(),
    );
    if let Some(w) = &lb.warmup {
        let wp = format!("{p}.warmup");
        match &w.duration {
            None => f.error(format!("{wp}.duration"), "duration is required"),
            Some(d) => duration(f, &format!("{wp}.duration"), Some(d)),
        }
        percentage(f, &format!("{wp}.minimumPercent"), w.minimum_percent);
        if let Some(a) = w.aggression
            && a < 1.0
        {
            f.error(
                format!("{wp}.aggression"),
                format!("aggression {a} must be at least 1"),
            );
        }
    }
}

/// Checks connection pool limits (also used by Sidecar).
pub(crate) fn connection_pool(cp: &ConnectionPoolSettings, p: &str, f: &mut Findings) {
    if let Some(tcp) = &cp.tcp {
        let tp = format!("{p}.tcp");
        non_negative(f, &format!("{tp}.maxConnections"), tcp.max_connections);
        duration(
            f,
            &format!("{tp}.connectTimeout"),
            tcp.connect_timeout.as_ref(),
        );
        duration(
            f,
            &format!("{tp}.maxConnectionDuration"),
            tcp.max_connection_duration.as_ref(),
        );
        if let Some(ka) = &tcp.tcp_keepalive {
            duration(f, &format!("{tp}.tcpKeepalive.time"), ka.time.as_ref());
            duration(
                f,
                &format!("{tp}.tcpKeepalive.interval"),
                ka.interval.as_ref(),
            );
        }
    }
    if let Some(http) = &cp.http {
        let hp = format!("{p}.http");
        non_negative(
            f,
            &format!("{hp}.http1MaxPendingRequests"),
            http.http1_max_pending_requests,
        );
        non_negative(
            f,
            &format!("{hp}.http2MaxRequests"),
            http.http2_max_requests,
        );
        non_negative(
            f,
            &format!("{hp}.maxRequestsPerConnection"),
            http.max_requests_per_connection,
        );
        non_negative(f, &format!("{hp}.maxRetries"), http.max_retries);
        non_negative(
            f,
            &format!("{hp}.maxConcurrentStreams"),
            http.max_concurrent_streams,
        );
        duration(f, &format!("{hp}.idleTimeout"), http.idle_timeout.as_ref());
        if let Some(ka) = &http.http2_keep_alive {
            duration(
                f,
                &format!("{hp}.http2KeepAlive.interval"),
                ka.interval.as_ref(),
            );
            duration(
                f,
                &format!("{hp}.http2KeepAlive.timeout"),
                ka.timeout.as_ref(),
            );
        }
    }
}

fn outlier_detection(od: &OutlierDetection, p: &str, f: &mut Findings) {
    non_negative(f, &format!("{p}.consecutiveErrors"), od.consecutive_errors);
    duration(f, &format!("{p}.interval"), od.interval.as_ref());
    duration(
        f,
        &format!("{p}.baseEjectionTime"),
        od.base_ejection_time.as_ref(),
    );
    for (field, v) in [
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ] {
        if let Some(v) = v
            && !(0..=100).contains(&v)
        {
            f.error(
                format!("{p}.{field}"),
                format!("percentage {v} is out of range 0..=100"),
            );
        }
    }
    for (i, code) in od.outlier_detection_http_error_codes.iter().enumerate() {
        if !(100..=599).contains(code) {
            f.error(
                format!("{p}.outlierDetectionHttpErrorCodes[{i}]"),
                format!("status {code} is out of range 100..=599"),
            );
        }
    }
}

fn client_tls(tls: &ClientTlsSettings, p: &str, f: &mut Findings) {
    if tls.mode == Some(ClientTlsMode::Mutual) && tls.credential_name.is_none() {
        if tls.client_certificate.is_none() {
            f.error(
                format!("{p}.clientCertificate"),
                "client certificate required for mutual tls",
            );
        }
        if tls.private_key.is_none() {
            f.error(
                format!("{p}.privateKey"),
                "private key required for mutual tls",
            );
        }
    }
}

fn non_negative(f: &mut Findings, path: &str, v: Option<i32>) {
    if let Some(v) = v
        && v < 0
    {
        f.error(path, format!("{v} must not be negative"));
    }
}
