//! Lighter checks for Gateway, Sidecar, WorkloadGroup and the security and telemetry kinds.

use super::Findings;
use super::common::{at_most_one, duration, host, opt_port, percentage, port, required};
use super::destination_rule;
use super::workload_entry;
use crate::networking::{
    ConnectionPoolSettings, Gateway, ServerTlsMode, ServerTlsSettings, Sidecar, WorkloadGroup,
};
use crate::security::PeerAuthentication;
use crate::telemetry::Telemetry;
use crate::types::{LabelSelector, PolicyTargetReference};

pub(crate) fn gateway(gw: &Gateway, p: &str, f: &mut Findings) {
    if gw.servers.is_empty() {
        f.error(format!("{p}.servers"), "at least one server is required");
    }
    for (i, s) in gw.servers.iter().enumerate() {
        let sp = format!("{p}.servers[{i}]");
        match &s.port {
            None => f.error(format!("{sp}.port"), "port is required"),
            Some(pt) => {
                port(f, &format!("{sp}.port.number"), pt.number);
                required(f, &format!("{sp}.port.protocol"), "protocol", &pt.protocol);
                required(f, &format!("{sp}.port.name"), "name", &pt.name);
            }
        }
        if s.hosts.is_empty() {
            f.error(format!("{sp}.hosts"), "at least one host is required");
        }
        for (j, h) in s.hosts.iter().enumerate() {
            // Gateway hosts may carry a `namespace/` prefix.
            let name = h.split_once('/').map_or(h.as_str(), |(_, n)| n);
            host(f, &format!("{sp}.hosts[{j}]"), name);
        }
        let protocol = s
            .port
            .as_ref()
            .map(|p| p.protocol.to_ascii_uppercase())
            .unwrap_or_default();
        if let Some(tls) = &s.tls {
            let tp = format!("{sp}.tls");
            at_most_one(
                f,
                &tp,
                &[
                    ("credentialName", tls.credential_name.is_some()),
                    ("credentialNames", !tls.credential_names.is_empty()),
                    ("tlsCertificates", !tls.tls_certificates.is_empty()),
                ],
            );
            server_tls(tls, &protocol, &tp, f);
        } else if protocol == "HTTPS" || protocol == "TLS" {
            f.error(
                format!("{sp}.tls"),
                format!("a server with protocol {protocol} needs tls settings"),
            );
        }
    }
}

/// Istio's checks of a gateway server's TLS: terminating modes need a certificate (a
/// credential, or both file paths), `MUTUAL` with files needs CA certificates, and
/// `ISTIO_MUTUAL` takes its certificate from the workload, not from credentials.
fn server_tls(tls: &ServerTlsSettings, protocol: &str, p: &str, f: &mut Findings) {
    let credential = tls.credential_name.is_some()
        || !tls.credential_names.is_empty()
        || !tls.tls_certificates.is_empty();
    let files = tls.server_certificate.is_some() || tls.private_key.is_some();
    if tls.server_certificate.is_some() != tls.private_key.is_some() {
        f.error(
            format!("{p}.privateKey"),
            "serverCertificate and privateKey go together",
        );
    }
    match tls.mode.unwrap_or(ServerTlsMode::Simple) {
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
            if (protocol == "HTTPS" || protocol == "TLS") && !credential && !files =>
        {
            f.error(
                format!("{p}.credentialName"),
                format!(
                    "tls.mode {} needs credentialName, or serverCertificate and privateKey",
                    tls.mode.unwrap_or(ServerTlsMode::Simple).as_str()
                ),
            );
        }
        ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
            if files && !credential && tls.ca_certificates.is_none() =>
        {
            f.error(
                format!("{p}.caCertificates"),
                "MUTUAL needs caCertificates to verify client certificates",
            );
        }
        ServerTlsMode::IstioMutual if credential || files => {
            f.error(
                format!("{p}.mode"),
                "ISTIO_MUTUAL uses the gateway's workload certificate; remove credentialName and certificate files",
            );
        }
        _ => {}
    }
}

pub(crate) fn sidecar(sc: &Sidecar, p: &str, f: &mut Findings) {
    for (i, ing) in sc.ingress.iter().enumerate() {
        let ip = format!("{p}.ingress[{i}]");
        match &ing.port {
            None => f.error(format!("{ip}.port"), "port is required"),
            Some(pt) => port(f, &format!("{ip}.port.number"), pt.number),
        }
        if let Some(cp) = &ing.connection_pool {
            pool(cp, &format!("{ip}.connectionPool"), f);
        }
    }
    for (i, eg) in sc.egress.iter().enumerate() {
        let ep = format!("{p}.egress[{i}]");
        if eg.hosts.is_empty() {
            f.error(format!("{ep}.hosts"), "at least one host is required");
        }
        for (j, h) in eg.hosts.iter().enumerate() {
            match h.split_once('/') {
                Some((ns, name)) if !ns.is_empty() => host(f, &format!("{ep}.hosts[{j}]"), name),
                _ => f.error(
                    format!("{ep}.hosts[{j}]"),
                    format!("host {h:?} must have the form namespace/dnsName"),
                ),
            }
        }
        if let Some(pt) = &eg.port {
            port(f, &format!("{ep}.port.number"), pt.number);
        }
    }
    if let Some(cp) = &sc.inbound_connection_pool {
        pool(cp, &format!("{p}.inboundConnectionPool"), f);
    }
    if let Some(proxy) = sc
        .outbound_traffic_policy
        .as_ref()
        .and_then(|o| o.egress_proxy.as_ref())
    {
        required(
            f,
            &format!("{p}.outboundTrafficPolicy.egressProxy.host"),
            "host",
            &proxy.host,
        );
    }
}

fn pool(cp: &ConnectionPoolSettings, p: &str, f: &mut Findings) {
    destination_rule::connection_pool(cp, p, f);
}

pub(crate) fn workload_group(wg: &WorkloadGroup, p: &str, f: &mut Findings) {
    match &wg.template {
        None => f.error(format!("{p}.template"), "template is required"),
        Some(t) => {
            // The address of a group template is filled in at registration, so it may be absent.
            if t.address.is_some() {
                workload_entry::validate(t, &format!("{p}.template"), f);
            }
        }
    }
    if let Some(probe) = &wg.probe {
        let pp = format!("{p}.probe");
        at_most_one(
            f,
            &pp,
            &[
                ("httpGet", probe.http_get.is_some()),
                ("tcpSocket", probe.tcp_socket.is_some()),
                ("exec", probe.exec.is_some()),
                ("grpc", probe.grpc.is_some()),
            ],
        );
        if let Some(h) = &probe.http_get {
            port(f, &format!("{pp}.httpGet.port"), h.port);
        }
        if let Some(t) = &probe.tcp_socket {
            port(f, &format!("{pp}.tcpSocket.port"), t.port);
        }
        if let Some(e) = &probe.exec
            && e.command.is_empty()
        {
            f.error(format!("{pp}.exec.command"), "command is required");
        }
        if let Some(g) = &probe.grpc {
            opt_port(f, &format!("{pp}.grpc.port"), g.port);
        }
    }
}

pub(crate) fn selector_and_targets(
    selector: Option<&LabelSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
    p: &str,
    f: &mut Findings,
) {
    at_most_one(
        f,
        p,
        &[
            ("selector", selector.is_some()),
            ("targetRef", target_ref.is_some()),
            ("targetRefs", !target_refs.is_empty()),
        ],
    );
    let refs = target_ref
        .map(|r| (format!("{p}.targetRef"), r))
        .into_iter()
        .chain(
            target_refs
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("{p}.targetRefs[{i}]"), r)),
        );
    for (rp, r) in refs {
        required(f, &format!("{rp}.kind"), "kind", &r.kind);
        required(f, &format!("{rp}.name"), "name", &r.name);
        if r.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
            f.error(
                format!("{rp}.namespace"),
                "cross-namespace target references are not allowed",
            );
        }
    }
}

pub(crate) fn peer_authentication(pa: &PeerAuthentication, p: &str, f: &mut Findings) {
    for key in pa.port_level_mtls.keys() {
        if !key.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)) {
            f.error(
                format!("{p}.portLevelMtls.{key}"),
                format!("port {key:?} is out of range 1..=65535"),
            );
        }
    }
    let has_selector = pa
        .selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty());
    if !pa.port_level_mtls.is_empty() && !has_selector {
        f.error(
            format!("{p}.portLevelMtls"),
            "portLevelMtls requires a selector with matchLabels",
        );
    }
}

pub(crate) fn telemetry(t: &Telemetry, p: &str, f: &mut Findings) {
    selector_and_targets(
        t.selector.as_ref(),
        t.target_ref.as_ref(),
        &t.target_refs,
        p,
        f,
    );
    for (i, tr) in t.tracing.iter().enumerate() {
        percentage(
            f,
            &format!("{p}.tracing[{i}].randomSamplingPercentage"),
            tr.random_sampling_percentage,
        );
        if tr.disable_context_propagation == Some(true) {
            f.error(
                format!("{p}.tracing[{i}].disableContextPropagation"),
                "unsupported: trace context is always propagated",
            );
        }
        for (name, tag) in &tr.custom_tags {
            if tag.formatter.is_some() {
                f.error(
                    format!("{p}.tracing[{i}].customTags.{name}.formatter"),
                    "unsupported: use literal, environment or header",
                );
            }
            at_most_one(
                f,
                &format!("{p}.tracing[{i}].customTags.{name}"),
                &[
                    ("literal", tag.literal.is_some()),
                    ("environment", tag.environment.is_some()),
                    ("header", tag.header.is_some()),
                    ("formatter", tag.formatter.is_some()),
                ],
            );
        }
    }
    for (i, l) in t.access_logging.iter().enumerate() {
        if let Some(e) = l.filter.as_ref().and_then(|x| x.expression.as_deref())
            && let Err(reason) = crate::telemetry::CodeFilter::parse(e)
        {
            f.error(format!("{p}.accessLogging[{i}].filter.expression"), reason);
        }
    }
    for (i, m) in t.metrics.iter().enumerate() {
        duration(
            f,
            &format!("{p}.metrics[{i}].reportingInterval"),
            m.reporting_interval.as_ref(),
        );
        for (j, o) in m.overrides.iter().enumerate() {
            if let Some(sel) = &o.match_ {
                at_most_one(
                    f,
                    &format!("{p}.metrics[{i}].overrides[{j}].match"),
                    &[
                        ("metric", sel.metric.is_some()),
                        ("customMetric", sel.custom_metric.is_some()),
                    ],
                );
                if let Some(name) = &sel.custom_metric
                    && trellis_xds::stats::metric_name(name).is_none()
                {
                    f.error(
                        format!("{p}.metrics[{i}].overrides[{j}].match.customMetric"),
                        format!("unsupported custom metric {name:?}: only Istio's standard metrics can be selected (e.g. requests_total)"),
                    );
                }
            }
            for (tag, o) in &o.tag_overrides {
                let path = format!("{p}.metrics[{i}].overrides[{j}].tagOverrides.{tag}");
                metric_tag(f, &path, tag, o);
            }
        }
    }
}

/// One `tagOverrides` entry: a Prometheus label name; `UPSERT` (the default) needs a value in
/// the supported expression subset; `REMOVE` takes none.
fn metric_tag(f: &mut Findings, path: &str, tag: &str, o: &crate::telemetry::TagOverride) {
    use crate::telemetry::TagOperation;
    if !trellis_xds::stats::is_label_name(tag) {
        f.error(path, "not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)");
    }
    match (
        o.operation.unwrap_or(TagOperation::Upsert),
        o.value.as_deref(),
    ) {
        (TagOperation::Upsert, None) => f.error(format!("{path}.value"), "required for UPSERT"),
        (TagOperation::Upsert, Some(v)) => {
            if let Err(reason) = trellis_xds::stats::ValueExpr::parse(v) {
                f.error(format!("{path}.value"), reason);
            }
        }
        (TagOperation::Remove, Some(_)) => f.warn(format!("{path}.value"), "ignored for REMOVE"),
        (TagOperation::Remove, None) => {}
    }
}
