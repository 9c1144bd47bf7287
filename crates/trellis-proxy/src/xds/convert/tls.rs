//! Transport sockets: `envoy.transport_sockets.tls` (`DownstreamTlsContext`,
//! `UpstreamTlsContext`) and `envoy.transport_sockets.raw_buffer`, with Istio's SDS secret
//! names (`default`, `ROOTCA` over the `sds-grpc` cluster, resolved by the proxy itself) or
//! file data sources.

#![allow(deprecated)]

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;

use super::{ConvertError, Cx, decode_any, join, reject_unsupported};
use crate::config;

/// The TLS transport socket's name.
pub const TLS: &str = "envoy.transport_sockets.tls";
/// The plaintext transport socket's name.
pub const RAW_BUFFER: &str = "envoy.transport_sockets.raw_buffer";
/// `DownstreamTlsContext`.
pub const DOWNSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
/// `UpstreamTlsContext`.
pub const UPSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// `RawBuffer`.
pub const RAW_BUFFER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";
/// The SDS cluster of Istio's bootstrap; the proxy serves these secrets itself.
pub const SDS_CLUSTER: &str = "sds-grpc";

/// What a transport socket turned out to be.
pub(crate) enum Socket<T> {
    Raw,
    Tls(T),
}

/// Decodes a transport socket whose TLS context is `M` (`type_url`).
pub(crate) fn transport_socket<M: prost::Message + Default>(
    cx: &Cx,
    path: &str,
    ts: &core::TransportSocket,
    tls_type: &str,
) -> Result<Socket<M>, ConvertError> {
    reject_unsupported!(cx, path, ts, core::TransportSocket { name, config_type } unsupported {});
    let any = ts
        .config_type
        .as_ref()
        .map(|core::transport_socket::ConfigType::TypedConfig(any)| any);
    let tpath = join(path, "typed_config");
    match ts.name.as_str() {
        TLS => {
            let any = any.ok_or_else(|| cx.missing(&tpath))?;
            Ok(Socket::Tls(decode_any(cx, &tpath, any, tls_type)?))
        }
        RAW_BUFFER => {
            if let Some(any) = any {
                let RawBuffer {} = decode_any(cx, &tpath, any, RAW_BUFFER_TYPE)?;
            }
            Ok(Socket::Raw)
        }
        other => Err(cx.unsupported_value(&join(path, "name"), other)),
    }
}

/// `DownstreamTlsContext` → [`config::DownstreamTls`].
pub(crate) fn downstream(
    cx: &Cx,
    path: &str,
    d: &tls::DownstreamTlsContext,
) -> Result<config::DownstreamTls, ConvertError> {
    reject_unsupported!(cx, path, d, tls::DownstreamTlsContext { common_tls_context, require_client_certificate }
        unsupported { require_sni, disable_stateful_session_resumption, session_timeout, ocsp_staple_policy, full_scan_certs_on_sni_mismatch, prefer_client_ciphers, session_ticket_keys_type });
    let cpath = join(path, "common_tls_context");
    let common = d
        .common_tls_context
        .as_ref()
        .ok_or_else(|| cx.missing(&cpath))?;
    let parts = common_tls_context(cx, &cpath, common)?;
    let certificate = parts.certificate.ok_or_else(|| {
        cx.err(
            &cpath,
            "a certificate is required (tls_certificate_sds_secret_configs or tls_certificates)",
        )
    })?;
    if !parts.match_sans.is_empty() {
        return Err(cx.err(
            &join(&cpath, "validation_context.match_typed_subject_alt_names"),
            "is only supported on upstream TLS contexts",
        ));
    }
    let require_client_certificate = d.require_client_certificate.is_some_and(|b| b.value);
    if require_client_certificate && parts.validation.is_none() {
        return Err(cx.err(
            &join(path, "require_client_certificate"),
            "needs a validation context (ROOTCA or trusted_ca) to verify client certificates",
        ));
    }
    Ok(config::DownstreamTls {
        certificate,
        validation: parts.validation,
        require_client_certificate,
        alpn_protocols: parts.alpn_protocols,
    })
}

/// `UpstreamTlsContext` → [`config::UpstreamTls`].
pub(crate) fn upstream(
    cx: &Cx,
    path: &str,
    u: &tls::UpstreamTlsContext,
) -> Result<config::UpstreamTls, ConvertError> {
    reject_unsupported!(cx, path, u, tls::UpstreamTlsContext { common_tls_context, sni }
        unsupported { auto_host_sni, auto_sni_san_validation, allow_renegotiation, max_session_keys, enforce_rsa_key_usage });
    let cpath = join(path, "common_tls_context");
    let parts = match &u.common_tls_context {
        Some(common) => common_tls_context(cx, &cpath, common)?,
        None => Parts::default(),
    };
    if !u.sni.is_empty() && rustls::pki_types::ServerName::try_from(u.sni.as_str()).is_err() {
        return Err(cx.err(
            &join(path, "sni"),
            format_args!("{:?} is not a valid server name", u.sni),
        ));
    }
    Ok(config::UpstreamTls {
        sni: u.sni.clone(),
        certificate: parts.certificate,
        validation: parts.validation,
        match_sans: parts.match_sans,
        alpn_protocols: parts.alpn_protocols,
    })
}

#[derive(Default)]
struct Parts {
    certificate: Option<config::CertSource>,
    validation: Option<config::TrustSource>,
    match_sans: Vec<config::SanMatch>,
    alpn_protocols: Vec<String>,
}

fn common_tls_context(
    cx: &Cx,
    path: &str,
    c: &tls::CommonTlsContext,
) -> Result<Parts, ConvertError> {
    reject_unsupported!(cx, path, c, tls::CommonTlsContext { tls_certificates, tls_certificate_sds_secret_configs, alpn_protocols, validation_context_type }
        unsupported { tls_params, tls_certificate_provider_instance, custom_tls_certificate_selector, tls_certificate_certificate_provider, tls_certificate_certificate_provider_instance, custom_handshaker, key_log });
    let mut out = Parts {
        alpn_protocols: c.alpn_protocols.clone(),
        ..Parts::default()
    };
    match (
        c.tls_certificates.as_slice(),
        c.tls_certificate_sds_secret_configs.as_slice(),
    ) {
        ([], []) => {}
        ([cert], []) => {
            out.certificate = Some(tls_certificate(
                cx,
                &join(path, "tls_certificates[0]"),
                cert,
            )?)
        }
        ([], [sds]) => {
            let spath = join(path, "tls_certificate_sds_secret_configs[0]");
            sds_secret(cx, &spath, sds, config::WORKLOAD_SECRET)?;
            out.certificate = Some(config::CertSource::Workload);
        }
        _ => {
            return Err(cx.err(
                path,
                "exactly one of tls_certificates or tls_certificate_sds_secret_configs, with one entry, is supported",
            ));
        }
    }
    use tls::common_tls_context::ValidationContextType as V;
    match &c.validation_context_type {
        None => {}
        Some(V::ValidationContext(v)) => {
            let vpath = join(path, "validation_context");
            let (trust, sans) = validation_context(cx, &vpath, v)?;
            out.validation = Some(trust.ok_or_else(|| cx.missing(&join(&vpath, "trusted_ca")))?);
            out.match_sans = sans;
        }
        Some(V::ValidationContextSdsSecretConfig(sds)) => {
            sds_secret(
                cx,
                &join(path, "validation_context_sds_secret_config"),
                sds,
                config::ROOT_SECRET,
            )?;
            out.validation = Some(config::TrustSource::MeshRoot);
        }
        Some(V::CombinedValidationContext(combined)) => {
            let cpath = join(path, "combined_validation_context");
            reject_unsupported!(cx, &cpath, combined, tls::common_tls_context::CombinedCertificateValidationContext { default_validation_context, validation_context_sds_secret_config }
                unsupported { validation_context_certificate_provider, validation_context_certificate_provider_instance });
            let sds = combined
                .validation_context_sds_secret_config
                .as_ref()
                .ok_or_else(|| cx.missing(&join(&cpath, "validation_context_sds_secret_config")))?;
            sds_secret(
                cx,
                &join(&cpath, "validation_context_sds_secret_config"),
                sds,
                config::ROOT_SECRET,
            )?;
            if let Some(v) = &combined.default_validation_context {
                let vpath = join(&cpath, "default_validation_context");
                let (trust, sans) = validation_context(cx, &vpath, v)?;
                if trust.is_some() {
                    return Err(cx.err(
                        &join(&vpath, "trusted_ca"),
                        "cannot be combined with the ROOTCA secret",
                    ));
                }
                out.match_sans = sans;
            }
            out.validation = Some(config::TrustSource::MeshRoot);
        }
        Some(V::ValidationContextCertificateProvider(_)) => {
            return Err(
                cx.unsupported_field(&join(path, "validation_context_certificate_provider"))
            );
        }
        Some(V::ValidationContextCertificateProviderInstance(_)) => {
            return Err(cx.unsupported_field(&join(
                path,
                "validation_context_certificate_provider_instance",
            )));
        }
    }
    Ok(out)
}

/// A `CertificateValidationContext`: `trusted_ca` (a file) and URI-exact
/// `match_typed_subject_alt_names`.
fn validation_context(
    cx: &Cx,
    path: &str,
    v: &tls::CertificateValidationContext,
) -> Result<(Option<config::TrustSource>, Vec<config::SanMatch>), ConvertError> {
    reject_unsupported!(cx, path, v, tls::CertificateValidationContext { trusted_ca, match_typed_subject_alt_names }
        unsupported { ca_certificate_provider_instance, system_root_certs, watched_directory, verify_certificate_spki, verify_certificate_hash, match_subject_alt_names, require_signed_certificate_timestamp, crl, allow_expired_certificate, trust_chain_verification, custom_validator_config, only_verify_leaf_cert_crl, max_verify_depth, suppress_client_ca_list });
    let trust = v
        .trusted_ca
        .as_ref()
        .map(|ds| filename(cx, &join(path, "trusted_ca"), ds).map(config::TrustSource::File))
        .transpose()?;
    let mut sans = Vec::new();
    for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
        let mpath = join(path, &format!("match_typed_subject_alt_names[{i}]"));
        reject_unsupported!(cx, &mpath, m, tls::SubjectAltNameMatcher { san_type, matcher }
            unsupported { oid });
        use tls::subject_alt_name_matcher::SanType;
        let kind = match SanType::try_from(m.san_type) {
            Ok(SanType::Uri) => config::SanKind::Uri,
            Ok(SanType::Dns) => config::SanKind::Dns,
            Ok(other) => {
                return Err(cx.unsupported_value(&join(&mpath, "san_type"), other.as_str_name()));
            }
            Err(_) => {
                return Err(cx.unsupported_value(&join(&mpath, "san_type"), m.san_type));
            }
        };
        let spath = join(&mpath, "matcher");
        let sm = m.matcher.as_ref().ok_or_else(|| cx.missing(&spath))?;
        reject_unsupported!(cx, &spath, sm, matcher::StringMatcher { match_pattern }
            unsupported { ignore_case });
        match &sm.match_pattern {
            Some(matcher::string_matcher::MatchPattern::Exact(value)) => {
                sans.push(config::SanMatch {
                    kind,
                    value: value.clone(),
                })
            }
            Some(_) => {
                return Err(cx.err(&spath, "only exact SAN matches are supported"));
            }
            None => return Err(cx.missing(&join(&spath, "exact"))),
        }
    }
    Ok((trust, sans))
}

fn tls_certificate(
    cx: &Cx,
    path: &str,
    t: &tls::TlsCertificate,
) -> Result<config::CertSource, ConvertError> {
    reject_unsupported!(cx, path, t, tls::TlsCertificate { certificate_chain, private_key }
        unsupported { pkcs12, watched_directory, private_key_provider, password, ocsp_staple, signed_certificate_timestamp, tls_params });
    let chain_path = join(path, "certificate_chain");
    let key_path = join(path, "private_key");
    let cert_chain = filename(
        cx,
        &chain_path,
        t.certificate_chain
            .as_ref()
            .ok_or_else(|| cx.missing(&chain_path))?,
    )?;
    let private_key = filename(
        cx,
        &key_path,
        t.private_key
            .as_ref()
            .ok_or_else(|| cx.missing(&key_path))?,
    )?;
    Ok(config::CertSource::Files {
        cert_chain,
        private_key,
    })
}

fn filename(cx: &Cx, path: &str, ds: &core::DataSource) -> Result<String, ConvertError> {
    reject_unsupported!(cx, path, ds, core::DataSource { specifier } unsupported { watched_directory });
    use core::data_source::Specifier as S;
    match &ds.specifier {
        Some(S::Filename(f)) if !f.is_empty() => Ok(f.clone()),
        Some(S::Filename(_)) | None => Err(cx.missing(&join(path, "filename"))),
        Some(S::InlineBytes(_)) => Err(cx.unsupported_field(&join(path, "inline_bytes"))),
        Some(S::InlineString(_)) => Err(cx.unsupported_field(&join(path, "inline_string"))),
        Some(S::EnvironmentVariable(_)) => {
            Err(cx.unsupported_field(&join(path, "environment_variable")))
        }
    }
}

/// An `SdsSecretConfig` naming `expected` from the `sds-grpc` cluster (Istio's shape).
fn sds_secret(
    cx: &Cx,
    path: &str,
    s: &tls::SdsSecretConfig,
    expected: &str,
) -> Result<(), ConvertError> {
    reject_unsupported!(cx, path, s, tls::SdsSecretConfig { name, sds_config } unsupported {});
    if s.name != expected {
        return Err(cx.err(
            &join(path, "name"),
            format_args!(
                "{:?} is not supported here (the proxy serves {expected:?})",
                s.name
            ),
        ));
    }
    let cpath = join(path, "sds_config");
    let source = s.sds_config.as_ref().ok_or_else(|| cx.missing(&cpath))?;
    reject_unsupported!(cx, &cpath, source, core::ConfigSource { resource_api_version, config_source_specifier, initial_fetch_timeout }
        unsupported { authorities });
    if source.resource_api_version != core::ApiVersion::Auto as i32
        && source.resource_api_version != core::ApiVersion::V3 as i32
    {
        return Err(cx.unsupported_value(
            &join(&cpath, "resource_api_version"),
            source.resource_api_version,
        ));
    }
    use core::config_source::ConfigSourceSpecifier as S;
    let api = match &source.config_source_specifier {
        Some(S::ApiConfigSource(api)) => api,
        Some(_) => {
            return Err(cx.err(
                &cpath,
                format_args!("only api_config_source (GRPC to cluster {SDS_CLUSTER}) is supported"),
            ));
        }
        None => return Err(cx.missing(&join(&cpath, "api_config_source"))),
    };
    let apath = join(&cpath, "api_config_source");
    reject_unsupported!(cx, &apath, api, core::ApiConfigSource { api_type, transport_api_version, grpc_services, set_node_on_first_message_only }
        unsupported { cluster_names, refresh_delay, request_timeout, rate_limit_settings, config_validators });
    if api.api_type != core::api_config_source::ApiType::Grpc as i32 {
        return Err(cx.unsupported_value(&join(&apath, "api_type"), api.api_type));
    }
    if api.transport_api_version != core::ApiVersion::Auto as i32
        && api.transport_api_version != core::ApiVersion::V3 as i32
    {
        return Err(cx.unsupported_value(
            &join(&apath, "transport_api_version"),
            api.transport_api_version,
        ));
    }
    let [grpc] = api.grpc_services.as_slice() else {
        return Err(cx.err(
            &join(&apath, "grpc_services"),
            format_args!("exactly one entry (envoy_grpc cluster {SDS_CLUSTER}) is supported"),
        ));
    };
    let gpath = join(&apath, "grpc_services[0]");
    reject_unsupported!(cx, &gpath, grpc, core::GrpcService { target_specifier }
        unsupported { timeout, initial_metadata, retry_policy });
    match &grpc.target_specifier {
        Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(e))
            if e.cluster_name == SDS_CLUSTER =>
        {
            Ok(())
        }
        Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(e)) => Err(cx.err(
            &join(&gpath, "envoy_grpc.cluster_name"),
            format_args!("{:?} is not supported (only {SDS_CLUSTER})", e.cluster_name),
        )),
        Some(core::grpc_service::TargetSpecifier::GoogleGrpc(_)) => {
            Err(cx.unsupported_field(&join(&gpath, "google_grpc")))
        }
        None => Err(cx.missing(&join(&gpath, "envoy_grpc"))),
    }
}
