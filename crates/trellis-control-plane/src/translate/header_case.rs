//! HTTP/1.1 header-name case, preserved end to end by default: Envoy lowercases header names
//! (and so does Istio), which breaks legacy applications that match them case-sensitively.
//! Every HTTP connection manager and every HTTP/1.1 cluster gets Envoy's stateful
//! `preserve_case` header formatter, so a name reaches the app as the client wrote it.

use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, TypedExtensionConfig,
    http1_protocol_options::{HeaderKeyFormat, header_key_format::HeaderFormat},
};
use envoy_types::pb::envoy::extensions::http::header_formatters::preserve_case::v3::PreserveCaseFormatterConfig;
use trellis_xds::to_any;

/// The formatter's extension name.
const PRESERVE_CASE: &str = "envoy.http.stateful_header_formatters.preserve_case";
/// Its config's type URL.
const PRESERVE_CASE_TYPE: &str = "type.googleapis.com/envoy.extensions.http.header_formatters.preserve_case.v3.PreserveCaseFormatterConfig";

/// HTTP/1.1 options that keep header names' case (for `HttpConnectionManager.http_protocol_options`
/// and clusters' `explicit_http_config.http_protocol_options`).
pub(super) fn http1_options() -> Http1ProtocolOptions {
    Http1ProtocolOptions {
        header_key_format: Some(HeaderKeyFormat {
            header_format: Some(HeaderFormat::StatefulFormatter(TypedExtensionConfig {
                name: PRESERVE_CASE.to_string(),
                typed_config: Some(to_any(
                    PRESERVE_CASE_TYPE,
                    &PreserveCaseFormatterConfig::default(),
                )),
            })),
        }),
        ..Default::default()
    }
}
