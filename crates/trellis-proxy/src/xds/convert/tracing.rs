//! The HCM's `tracing` → [`TracingConfig`]: Envoy's Zipkin tracer (HTTP JSON to a collector
//! cluster), sampling percentages, custom tags and `spawn_upstream_span`.

use std::sync::Arc;

use envoy_types::pb::envoy::config::trace::v3::{ZipkinConfig, tracing, zipkin_config};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing;
use envoy_types::pb::envoy::r#type::tracing::v3::{CustomTag as ProtoTag, custom_tag};
use envoy_types::pb::envoy::r#type::v3::Percent;
use trellis_xds::telemetry as names;

use super::{ConvertError, Cx, decode_any, join, reject_unsupported};
use crate::trace::{Collector, CustomTag, DEFAULT_MAX_PATH_TAG_LENGTH, TagSource, TracingConfig};

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
    if provider.name != names::ZIPKIN {
        return Err(cx.unsupported_value(&join(&ppath, "name"), &provider.name));
    }
    let tpath = join(&ppath, "typed_config");
    let Some(tracing::http::ConfigType::TypedConfig(any)) = &provider.config_type else {
        return Err(cx.missing(&tpath));
    };
    let z: ZipkinConfig = decode_any(cx, &tpath, any, names::ZIPKIN_TYPE)?;
    reject_unsupported!(cx, &tpath, &z, ZipkinConfig { collector_cluster, collector_endpoint, trace_id_128bit, shared_span_context, collector_endpoint_version, collector_hostname }
        unsupported { split_spans_for_request, trace_context_option, collector_service, timestamp_trace_ids });
    if z.collector_cluster.is_empty() {
        return Err(cx.missing(&join(&tpath, "collector_cluster")));
    }
    if !z.collector_endpoint.starts_with('/') {
        return Err(cx.err(
            &join(&tpath, "collector_endpoint"),
            "must be a path starting with '/'",
        ));
    }
    if z.collector_endpoint_version != zipkin_config::CollectorEndpointVersion::HttpJson as i32 {
        return Err(cx.unsupported_value(
            &join(&tpath, "collector_endpoint_version"),
            z.collector_endpoint_version,
        ));
    }
    if z.shared_span_context.as_ref().is_none_or(|b| b.value) {
        return Err(cx.err(
            &join(&tpath, "shared_span_context"),
            "only false is supported (every hop records its own span)",
        ));
    }
    let custom_tags = t
        .custom_tags
        .iter()
        .enumerate()
        .map(|(i, tag)| custom(cx, &join(path, &format!("custom_tags[{i}]")), tag))
        .collect::<Result<_, _>>()?;
    Ok(Arc::new(TracingConfig {
        collector: Collector {
            hostname: if z.collector_hostname.is_empty() {
                z.collector_cluster.clone()
            } else {
                z.collector_hostname.clone()
            },
            cluster: z.collector_cluster.clone(),
            path: z.collector_endpoint.clone(),
        },
        trace_id_128bit: z.trace_id_128bit,
        random_sampling,
        custom_tags,
        max_path_tag_length: t
            .max_path_tag_length
            .as_ref()
            .map_or(DEFAULT_MAX_PATH_TAG_LENGTH, |v| v.value as usize),
        spawn_upstream_span: t.spawn_upstream_span.as_ref().is_some_and(|b| b.value),
    }))
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
