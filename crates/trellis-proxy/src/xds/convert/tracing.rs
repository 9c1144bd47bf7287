//! The HCM's `tracing` → [`TracingConfig`]: Envoy's Zipkin tracer (HTTP JSON to a collector
//! cluster) or OpenTelemetry tracer (OTLP over gRPC or HTTP), sampling percentages, custom tags
//! and `spawn_upstream_span`.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{
    GrpcService, HeaderValue, HeaderValueOption, HttpService, HttpUri, grpc_service, http_uri,
};
use envoy_types::pb::envoy::config::trace::v3::{
    OpenTelemetryConfig, ZipkinConfig, tracing, zipkin_config,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing;
use envoy_types::pb::envoy::r#type::tracing::v3::{CustomTag as ProtoTag, custom_tag};
use envoy_types::pb::envoy::r#type::v3::Percent;
use trellis_xds::telemetry as names;

use super::{ConvertError, Cx, decode_any, duration, join, reject_unsupported};
use crate::trace::{
    Collector, CustomTag, DEFAULT_MAX_PATH_TAG_LENGTH, EXPORT_TIMEOUT, ExportProtocol, TagSource,
    TracingConfig,
};

/// Converts the HCM's tracing settings.
pub(crate) fn tracing(
    cx: &Cx,
    path: &str,
    t: &Tracing,
) -> Result<Arc<TracingConfig>, ConvertError> {
    reject_unsupported!(cx, path, t, Tracing { client_sampling, random_sampling, overall_sampling, max_path_tag_length, custom_tags, provider, spawn_upstream_span }
        unsupported { verbose, operation, upstream_operation, no_context_propagation });
    let percent = |field: &str, p: &Option<Percent>| -> Result<f64, ConvertError> {
        let v = p.as_ref().map_or(100.0, |p| p.value);
        if !(0.0..=100.0).contains(&v) {
            return Err(cx.err(
                &join(path, field),
                format_args!("{v} is out of range 0..=100"),
            ));
        }
        Ok(v)
    };
    // Trellis samples with random_sampling only: client and overall sampling must be 100 %.
    for (field, p) in [
        ("client_sampling", &t.client_sampling),
        ("overall_sampling", &t.overall_sampling),
    ] {
        if percent(field, p)? != 100.0 {
            return Err(cx.err(&join(path, field), "only 100 is supported"));
        }
    }
    let random_sampling = percent("random_sampling", &t.random_sampling)?;
    let ppath = join(path, "provider");
    let provider = t.provider.as_ref().ok_or_else(|| cx.missing(&ppath))?;
    reject_unsupported!(cx, &ppath, provider, tracing::Http { name, config_type } unsupported {});
    let tpath = join(&ppath, "typed_config");
    let Some(tracing::http::ConfigType::TypedConfig(any)) = &provider.config_type else {
        return Err(cx.missing(&tpath));
    };
    let (collector, trace_id_128bit) = match provider.name.as_str() {
        names::ZIPKIN => zipkin(
            cx,
            &tpath,
            &decode_any(cx, &tpath, any, names::ZIPKIN_TYPE)?,
        )?,
        names::OPENTELEMETRY => (
            opentelemetry(
                cx,
                &tpath,
                &decode_any(cx, &tpath, any, names::OPENTELEMETRY_TYPE)?,
            )?,
            true,
        ),
        other => return Err(cx.unsupported_value(&join(&ppath, "name"), other)),
    };
    let custom_tags = t
        .custom_tags
        .iter()
        .enumerate()
        .map(|(i, tag)| custom(cx, &join(path, &format!("custom_tags[{i}]")), tag))
        .collect::<Result<_, _>>()?;
    Ok(Arc::new(TracingConfig {
        collector,
        trace_id_128bit,
        random_sampling,
        custom_tags,
        max_path_tag_length: t
            .max_path_tag_length
            .as_ref()
            .map_or(DEFAULT_MAX_PATH_TAG_LENGTH, |v| v.value as usize),
        spawn_upstream_span: t.spawn_upstream_span.as_ref().is_some_and(|b| b.value),
    }))
}

/// Envoy's Zipkin tracer: v2 JSON over HTTP, one span per hop side; and whether new trace ids
/// are 128-bit.
fn zipkin(cx: &Cx, tpath: &str, z: &ZipkinConfig) -> Result<(Collector, bool), ConvertError> {
    reject_unsupported!(cx, tpath, z, ZipkinConfig { collector_cluster, collector_endpoint, trace_id_128bit, shared_span_context, collector_endpoint_version, collector_hostname }
        unsupported { split_spans_for_request, trace_context_option, collector_service, timestamp_trace_ids });
    if z.collector_cluster.is_empty() {
        return Err(cx.missing(&join(tpath, "collector_cluster")));
    }
    if !z.collector_endpoint.starts_with('/') {
        return Err(cx.err(
            &join(tpath, "collector_endpoint"),
            "must be a path starting with '/'",
        ));
    }
    if z.collector_endpoint_version != zipkin_config::CollectorEndpointVersion::HttpJson as i32 {
        return Err(cx.unsupported_value(
            &join(tpath, "collector_endpoint_version"),
            z.collector_endpoint_version,
        ));
    }
    if z.shared_span_context.as_ref().is_none_or(|b| b.value) {
        return Err(cx.err(
            &join(tpath, "shared_span_context"),
            "only false is supported (every hop records its own span)",
        ));
    }
    let collector = Collector {
        hostname: if z.collector_hostname.is_empty() {
            z.collector_cluster.clone()
        } else {
            z.collector_hostname.clone()
        },
        cluster: z.collector_cluster.clone(),
        path: z.collector_endpoint.clone(),
        protocol: ExportProtocol::ZipkinJson,
        headers: Vec::new(),
        timeout: EXPORT_TIMEOUT,
    };
    Ok((collector, z.trace_id_128bit))
}

/// Envoy's OpenTelemetry tracer: OTLP over gRPC (`grpc_service` with an Envoy gRPC cluster) or
/// HTTP (`http_service`), exactly one of them.
fn opentelemetry(cx: &Cx, tpath: &str, o: &OpenTelemetryConfig) -> Result<Collector, ConvertError> {
    reject_unsupported!(cx, tpath, o, OpenTelemetryConfig { grpc_service, http_service, service_name }
        unsupported { exporter, resource_detectors, sampler, max_cache_size, set_telemetry_sdk_resource_attributes, set_service_name_resource_attribute, set_instrumentation_scope });
    let headers = |path: &str, hs: &[HeaderValue]| -> Result<Vec<(String, String)>, ConvertError> {
        hs.iter()
            .enumerate()
            .map(|(i, h)| {
                let hpath = format!("{path}[{i}]");
                reject_unsupported!(cx, &hpath, h, HeaderValue { key, value } unsupported { raw_value });
                if http::HeaderName::from_bytes(h.key.as_bytes()).is_err()
                    || http::HeaderValue::from_str(&h.value).is_err()
                {
                    return Err(cx.err(&hpath, "not a valid HTTP header"));
                }
                Ok((h.key.to_ascii_lowercase(), h.value.clone()))
            })
            .collect()
    };
    match (&o.grpc_service, &o.http_service) {
        (Some(g), None) => {
            let gpath = join(tpath, "grpc_service");
            reject_unsupported!(cx, &gpath, g, GrpcService { target_specifier, timeout, initial_metadata }
                unsupported { retry_policy });
            let Some(grpc_service::TargetSpecifier::EnvoyGrpc(e)) = &g.target_specifier else {
                return Err(cx.err(&join(&gpath, "envoy_grpc"), "only envoy_grpc is supported"));
            };
            let epath = join(&gpath, "envoy_grpc");
            reject_unsupported!(cx, &epath, e, grpc_service::EnvoyGrpc { cluster_name, authority }
                unsupported { retry_policy, max_receive_message_length, skip_envoy_headers });
            if e.cluster_name.is_empty() {
                return Err(cx.missing(&join(&epath, "cluster_name")));
            }
            Ok(Collector {
                hostname: if e.authority.is_empty() {
                    e.cluster_name.clone()
                } else {
                    e.authority.clone()
                },
                cluster: e.cluster_name.clone(),
                path: names::OTLP_TRACES_GRPC_PATH.to_string(),
                protocol: ExportProtocol::OtlpGrpc(o.service_name.clone()),
                headers: headers(&join(&gpath, "initial_metadata"), &g.initial_metadata)?,
                timeout: match &g.timeout {
                    Some(d) => duration(cx, &join(&gpath, "timeout"), d)?,
                    None => EXPORT_TIMEOUT,
                },
            })
        }
        (None, Some(h)) => {
            let hpath = join(tpath, "http_service");
            reject_unsupported!(cx, &hpath, h, HttpService { http_uri, request_headers_to_add }
                unsupported { formatters });
            let upath = join(&hpath, "http_uri");
            let uri = h.http_uri.as_ref().ok_or_else(|| cx.missing(&upath))?;
            reject_unsupported!(cx, &upath, uri, HttpUri { uri, timeout, http_upstream_type } unsupported {});
            let Some(http_uri::HttpUpstreamType::Cluster(cluster)) = &uri.http_upstream_type else {
                return Err(cx.missing(&join(&upath, "cluster")));
            };
            let parsed: http::Uri = uri
                .uri
                .parse()
                .map_err(|e| cx.err(&join(&upath, "uri"), format_args!("{e}")))?;
            let apath = join(&hpath, "request_headers_to_add");
            let added = h
                .request_headers_to_add
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let opath = format!("{apath}[{i}]");
                    reject_unsupported!(cx, &opath, o, HeaderValueOption { header }
                        unsupported { append, append_action, keep_empty_value });
                    o.header
                        .clone()
                        .ok_or_else(|| cx.missing(&join(&opath, "header")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Collector {
                hostname: parsed
                    .host()
                    .map_or_else(|| cluster.clone(), str::to_string),
                cluster: cluster.clone(),
                path: parsed
                    .path_and_query()
                    .map_or("/".to_string(), |p| p.as_str().to_string()),
                protocol: ExportProtocol::OtlpHttp(o.service_name.clone()),
                headers: headers(&apath, &added)?,
                timeout: match &uri.timeout {
                    Some(d) => duration(cx, &join(&upath, "timeout"), d)?,
                    None => EXPORT_TIMEOUT,
                },
            })
        }
        (None, None) => Err(cx.missing(&join(tpath, "grpc_service"))),
        (Some(_), Some(_)) => Err(cx.err(
            &join(tpath, "http_service"),
            "only one of grpc_service and http_service may be set",
        )),
    }
}

fn custom(cx: &Cx, path: &str, tag: &ProtoTag) -> Result<CustomTag, ConvertError> {
    if tag.tag.is_empty() {
        return Err(cx.missing(&join(path, "tag")));
    }
    let value = match &tag.r#type {
        Some(custom_tag::Type::Literal(l)) => TagSource::Literal(l.value.clone()),
        Some(custom_tag::Type::Environment(e)) => TagSource::Environment {
            name: e.name.clone(),
            default_value: e.default_value.clone(),
        },
        Some(custom_tag::Type::RequestHeader(h)) => TagSource::RequestHeader {
            name: h.name.to_ascii_lowercase(),
            default_value: h.default_value.clone(),
        },
        Some(custom_tag::Type::Metadata(_)) => {
            return Err(cx.unsupported_field(&join(path, "metadata")));
        }
        Some(custom_tag::Type::Value(_)) => {
            return Err(cx.unsupported_field(&join(path, "value")));
        }
        None => return Err(cx.missing(&join(path, "literal"))),
    };
    Ok(CustomTag {
        tag: tag.tag.clone(),
        value,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use envoy_types::pb::envoy::r#type::v3::Percent;
    use trellis_xds::to_any;

    use super::*;

    fn otel(config: &OpenTelemetryConfig) -> Result<Arc<TracingConfig>, ConvertError> {
        let t = Tracing {
            random_sampling: Some(Percent { value: 50.0 }),
            provider: Some(tracing::Http {
                name: names::OPENTELEMETRY.to_string(),
                config_type: Some(tracing::http::ConfigType::TypedConfig(to_any(
                    names::OPENTELEMETRY_TYPE,
                    config,
                ))),
            }),
            ..Default::default()
        };
        super::tracing(&Cx::new("Listener", "l"), "hcm.tracing", &t)
    }

    fn envoy_grpc(cluster: &str) -> Option<GrpcService> {
        Some(GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                grpc_service::EnvoyGrpc {
                    cluster_name: cluster.to_string(),
                    authority: "otel.example".to_string(),
                    ..Default::default()
                },
            )),
            initial_metadata: vec![HeaderValue {
                key: "X-Tenant".into(),
                value: "mesh".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    #[test]
    fn otlp_grpc_and_http_collectors() {
        let c = otel(&OpenTelemetryConfig {
            grpc_service: envoy_grpc("otel"),
            service_name: "w.ns".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.collector.protocol,
            ExportProtocol::OtlpGrpc("w.ns".into())
        );
        assert_eq!(c.collector.cluster, "otel");
        assert_eq!(c.collector.hostname, "otel.example");
        assert_eq!(c.collector.path, names::OTLP_TRACES_GRPC_PATH);
        assert_eq!(c.collector.headers, [("x-tenant".into(), "mesh".into())]);
        assert!(c.trace_id_128bit);
        assert_eq!(c.random_sampling, 50.0);

        let c = otel(&OpenTelemetryConfig {
            http_service: Some(HttpService {
                http_uri: Some(HttpUri {
                    uri: "http://otel.example:4318/v1/traces".into(),
                    timeout: Some(envoy_types::pb::google::protobuf::Duration {
                        seconds: 2,
                        nanos: 0,
                    }),
                    http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster("otel".into())),
                }),
                request_headers_to_add: vec![HeaderValueOption::default()],
                ..Default::default()
            }),
            ..Default::default()
        });
        let e = c.unwrap_err();
        assert!(
            e.detail.starts_with(
                "hcm.tracing.provider.typed_config.http_service.request_headers_to_add[0].header:"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn otlp_config_errors_name_the_field() {
        let detail = |config: OpenTelemetryConfig| otel(&config).unwrap_err().detail;
        assert!(
            detail(OpenTelemetryConfig::default())
                .starts_with("hcm.tracing.provider.typed_config.grpc_service:")
        );
        let both = OpenTelemetryConfig {
            grpc_service: envoy_grpc("otel"),
            http_service: Some(HttpService::default()),
            ..Default::default()
        };
        assert!(detail(both).contains("only one of grpc_service and http_service"));
        let no_cluster = OpenTelemetryConfig {
            grpc_service: envoy_grpc(""),
            ..Default::default()
        };
        assert!(
            detail(no_cluster).starts_with(
                "hcm.tracing.provider.typed_config.grpc_service.envoy_grpc.cluster_name"
            )
        );
        let sampler = OpenTelemetryConfig {
            grpc_service: envoy_grpc("otel"),
            sampler: Some(Default::default()),
            ..Default::default()
        };
        assert!(detail(sampler).contains("sampler"));
    }
}
