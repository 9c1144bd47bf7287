//! `Http1ProtocolOptions` (on the HTTP connection manager and on clusters' upstream HTTP/1.1
//! options) → whether HTTP/1.1 header names keep the case they were received with.
//!
//! The only field accepted is `header_key_format.stateful_formatter` naming Envoy's
//! `envoy.http.stateful_header_formatters.preserve_case` with a default
//! `PreserveCaseFormatterConfig`: what the control plane emits so legacy applications see
//! header names as their peers wrote them.

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::http::header_formatters::preserve_case::v3::PreserveCaseFormatterConfig;

use super::{ConvertError, Cx, decode_any, join, reject_unsupported};

/// The stateful header formatter's extension name.
pub(crate) const PRESERVE_CASE_NAME: &str = "envoy.http.stateful_header_formatters.preserve_case";
/// Its config's type URL.
pub(crate) const PRESERVE_CASE_TYPE: &str = "type.googleapis.com/envoy.extensions.http.header_formatters.preserve_case.v3.PreserveCaseFormatterConfig";

/// `true` when `options` ask for Envoy's preserve-case formatter; every other
/// `Http1ProtocolOptions` field is rejected (`path` names the options).
pub(crate) fn preserve_header_case(
    cx: &Cx,
    path: &str,
    options: &core::Http1ProtocolOptions,
) -> Result<bool, ConvertError> {
    reject_unsupported!(cx, path, options, core::Http1ProtocolOptions { header_key_format }
        unsupported { allow_absolute_url, accept_http_10, default_host_for_http_10, enable_trailers, allow_chunked_length, override_stream_error_on_invalid_http_message, send_fully_qualified_url, use_balsa_parser, allow_custom_methods, ignore_http_11_upgrade });
    let Some(format) = &options.header_key_format else {
        return Ok(false);
    };
    use super::core::http1_protocol_options::header_key_format::HeaderFormat;
    let fpath = join(path, "header_key_format");
    match &format.header_format {
        Some(HeaderFormat::StatefulFormatter(ext)) => {
            let epath = join(&fpath, "stateful_formatter");
            if ext.name != PRESERVE_CASE_NAME {
                return Err(cx.unsupported_value(&join(&epath, "name"), &ext.name));
            }
            let Some(any) = &ext.typed_config else {
                return Err(cx.missing(&join(&epath, "typed_config")));
            };
            let tpath = join(&epath, "typed_config");
            let config: PreserveCaseFormatterConfig =
                decode_any(cx, &tpath, any, PRESERVE_CASE_TYPE)?;
            reject_unsupported!(cx, &tpath, &config, PreserveCaseFormatterConfig {}
                unsupported { forward_reason_phrase, formatter_type_on_envoy_headers });
            Ok(true)
        }
        Some(HeaderFormat::ProperCaseWords(_)) => {
            Err(cx.unsupported_field(&join(&fpath, "proper_case_words")))
        }
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::core::http1_protocol_options::HeaderKeyFormat;
    use super::core::http1_protocol_options::header_key_format::{HeaderFormat, ProperCaseWords};
    use super::*;
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    fn stateful(name: &str, config: PreserveCaseFormatterConfig) -> core::Http1ProtocolOptions {
        core::Http1ProtocolOptions {
            header_key_format: Some(HeaderKeyFormat {
                header_format: Some(HeaderFormat::StatefulFormatter(
                    core::TypedExtensionConfig {
                        name: name.into(),
                        typed_config: Some(Any {
                            type_url: PRESERVE_CASE_TYPE.into(),
                            value: config.encode_to_vec(),
                        }),
                    },
                )),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn preserve_case_formatter_is_accepted() -> Result<(), ConvertError> {
        let cx = Cx::new("Cluster", "c");
        let options = stateful(PRESERVE_CASE_NAME, PreserveCaseFormatterConfig::default());
        assert!(preserve_header_case(&cx, "h1", &options)?);
        assert!(!preserve_header_case(
            &cx,
            "h1",
            &core::Http1ProtocolOptions::default()
        )?);
        Ok(())
    }

    #[test]
    fn other_formatters_and_fields_are_rejected() {
        let cx = Cx::new("Cluster", "c");
        let other = stateful("acme.formatter", PreserveCaseFormatterConfig::default());
        assert!(
            preserve_header_case(&cx, "h1", &other)
                .is_err_and(|e| e.detail.contains("stateful_formatter.name"))
        );
        let reason = stateful(
            PRESERVE_CASE_NAME,
            PreserveCaseFormatterConfig {
                forward_reason_phrase: true,
                ..Default::default()
            },
        );
        assert!(
            preserve_header_case(&cx, "h1", &reason)
                .is_err_and(|e| e.detail.contains("forward_reason_phrase"))
        );
        let proper = core::Http1ProtocolOptions {
            header_key_format: Some(HeaderKeyFormat {
                header_format: Some(HeaderFormat::ProperCaseWords(ProperCaseWords {})),
            }),
            ..Default::default()
        };
        assert!(
            preserve_header_case(&cx, "h1", &proper)
                .is_err_and(|e| e.detail.contains("proper_case_words"))
        );
        let absolute = core::Http1ProtocolOptions {
            allow_absolute_url: Some(envoy_types::pb::google::protobuf::BoolValue { value: true }),
            ..Default::default()
        };
        assert!(
            preserve_header_case(&cx, "h1", &absolute)
                .is_err_and(|e| e.detail.contains("allow_absolute_url"))
        );
    }
}
