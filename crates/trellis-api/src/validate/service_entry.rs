//! ServiceEntry rules (Istio's `validateServiceEntry` and the CRD's CEL rules).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Findings;
use super::common::{cidr, host, opt_port, port, required};
use super::workload_entry;
use crate::networking::{Resolution, ServiceEntry};

/// Protocol names Istio recognises on ports (case-insensitive).
pub(crate) const PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP", "TLS", "UDP",
    "HBONE",
];

/// Kubernetes' standard application protocols (Istio maps them: h2c is HTTP2, ws HTTP, wss TLS).
pub(crate) const KUBERNETES_APP_PROTOCOLS: &[&str] =
    &["kubernetes.io/h2c", "kubernetes.io/ws", "kubernetes.io/wss"];

/// Warns about an `appProtocol` that selects nothing (it is read like a port name: up to the
/// first `-`) or that `protocol` overrides.
fn app_protocol(app: &str, protocol: Option<&str>, path: &str, f: &mut Findings) {
    let prefix = app.split('-').next().unwrap_or(app);
    let known = KUBERNETES_APP_PROTOCOLS.contains(&app)
        || PROTOCOLS.iter().any(|k| k.eq_ignore_ascii_case(prefix));
    if !known {
        f.warn(
            path,
            format!("unknown application protocol {app:?}; the protocol is detected"),
        );
    }
    if let Some(proto) = protocol {
        f.warn(
            path,
            format!("appProtocol {app:?} is ignored: the port's protocol {proto:?} is set"),
        );
    }
}

pub(crate) fn validate(se: &ServiceEntry, p: &str, f: &mut Findings) {
    let resolution = se.resolution_or_default();
    if se.hosts.is_empty() {
        f.error(format!("{p}.hosts"), "at least one host is required");
    }
    for (i, h) in se.hosts.iter().enumerate() {
        let hp = format!("{p}.hosts[{i}]");
        if h == "*" {
            f.error(hp, "wildcard host * is not allowed in a ServiceEntry");
            continue;
        }
        host(f, &hp, h);
        if h.starts_with('*')
            && matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin)
            && se.endpoints.is_empty()
        {
            f.error(hp, format!("wildcard host {h:?} cannot be resolved with resolution {resolution} unless endpoints are given"));
        }
    }
    for (i, a) in se.addresses.iter().enumerate() {
        let ap = format!("{p}.addresses[{i}]");
        cidr(f, &ap, a);
        if a.contains('/') && !matches!(resolution, Resolution::None | Resolution::Static) {
            f.error(
                ap,
                format!("CIDR address {a:?} requires resolution NONE or STATIC, not {resolution}"),
            );
        }
    }
    let mut numbers: BTreeMap<u32, usize> = BTreeMap::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, sp) in se.ports.iter().enumerate() {
        let pp = format!("{p}.ports[{i}]");
        port(f, &format!("{pp}.number"), sp.number);
        opt_port(f, &format!("{pp}.targetPort"), sp.target_port);
        required(f, &format!("{pp}.name"), "name", &sp.name);
        if let Some(j) = numbers.insert(sp.number, i) {
            f.error(
                format!("{pp}.number"),
                format!(
                    "port number {} is already used by {p}.ports[{j}]",
                    sp.number
                ),
            );
        }
        if !sp.name.is_empty()
            && let Some(j) = names.insert(&sp.name, i)
        {
            f.error(
                format!("{pp}.name"),
                format!("port name {:?} is already used by {p}.ports[{j}]", sp.name),
            );
        }
        if let Some(proto) = &sp.protocol
            && !PROTOCOLS.iter().any(|k| k.eq_ignore_ascii_case(proto))
        {
            f.warn(
                format!("{pp}.protocol"),
                format!("unknown protocol {proto:?}; treated as TCP"),
            );
        }
        if let Some(app) = &sp.app_protocol {
            app_protocol(app, sp.protocol.as_deref(), &format!("{pp}.appProtocol"), f);
        }
    }
    if se.workload_selector.is_some() && !se.endpoints.is_empty() {
        f.error(
            format!("{p}.workloadSelector"),
            "workloadSelector and endpoints cannot both be set",
        );
    }
    if resolution == Resolution::None && !se.endpoints.is_empty() {
        f.error(
            format!("{p}.endpoints"),
            "endpoints are not allowed with resolution NONE",
        );
    }
    if resolution == Resolution::DnsRoundRobin && se.endpoints.len() > 1 {
        f.error(
            format!("{p}.endpoints"),
            "resolution DNS_ROUND_ROBIN allows at most one endpoint",
        );
    }
    if resolution == Resolution::Static && se.endpoints.is_empty() && se.workload_selector.is_none()
    {
        f.warn(
            format!("{p}.endpoints"),
            "resolution STATIC without endpoints or workloadSelector has no endpoints",
        );
    }
    for (i, ep) in se.endpoints.iter().enumerate() {
        let ep_path = format!("{p}.endpoints[{i}]");
        workload_entry::validate(ep, &ep_path, f);
        if resolution == Resolution::Static {
            match &ep.address {
                None => {} // reported by the workload entry check when network is unset too
                Some(a) if a.starts_with("unix://") || a.parse::<IpAddr>().is_ok() => {}
                Some(a) => f.error(
                    format!("{ep_path}.address"),
                    format!("endpoint address {a:?} must be an IP address or unix socket with resolution STATIC"),
                ),
            }
        }
        for name in ep.ports.keys() {
            if !se.ports.iter().any(|sp| &sp.name == name) {
                f.error(
                    format!("{ep_path}.ports.{name}"),
                    format!("port name {name:?} is not defined in {p}.ports"),
                );
            }
        }
    }
}
