//! RequestAuthentication: what istiod's validation rejects, each with its field path.

use super::Findings;
use super::common::{at_most_one, duration, required};
use super::others::selector_and_targets;
use crate::security::RequestAuthentication;

/// Validates a RequestAuthentication spec at `p`.
pub(crate) fn validate(ra: &RequestAuthentication, p: &str, f: &mut Findings) {
    selector_and_targets(
        ra.selector.as_ref(),
        ra.target_ref.as_ref(),
        &ra.target_refs,
        p,
        f,
    );
    super::authorization_policy::warn_targets_ignored(
        ra.target_ref.as_ref(),
        &ra.target_refs,
        p,
        f,
    );
    for (i, rule) in ra.jwt_rules.iter().enumerate() {
        let rp = format!("{p}.jwtRules[{i}]");
        let issuer = rule.issuer.as_deref().unwrap_or("");
        if issuer.is_empty() {
            f.error(format!("{rp}.issuer"), "issuer is required");
        } else if issuer.trim() != issuer {
            f.error(
                format!("{rp}.issuer"),
                format!("issuer {issuer:?} has leading or trailing spaces"),
            );
        }
        if let Some(j) = ra.jwt_rules[..i]
            .iter()
            .position(|r| r.issuer.is_some() && r.issuer == rule.issuer)
        {
            f.error(
                format!("{rp}.issuer"),
                format!("issuer {issuer:?} is already configured by jwtRules[{j}]"),
            );
        }
        for (j, a) in rule.audiences.iter().enumerate() {
            required(f, &format!("{rp}.audiences[{j}]"), "audience", a);
        }
        at_most_one(
            f,
            &rp,
            &[
                ("jwksUri", rule.jwks_uri.is_some()),
                ("jwks_uri", rule.jwks_uri_legacy.is_some()),
                ("jwks", rule.jwks.is_some()),
            ],
        );
        for (field, uri) in [
            ("jwksUri", &rule.jwks_uri),
            ("jwks_uri", &rule.jwks_uri_legacy),
        ] {
            if let Some(u) = uri
                && let Err(why) = jwks_uri(u)
            {
                f.error(format!("{rp}.{field}"), why);
            }
        }
        if let Some(jwks) = &rule.jwks
            && let Err(why) = inline_jwks(jwks)
        {
            f.error(format!("{rp}.jwks"), why);
        }
        duration(f, &format!("{rp}.timeout"), rule.timeout.as_ref());
        for (j, h) in rule.from_headers.iter().enumerate() {
            let hp = format!("{rp}.fromHeaders[{j}].name");
            required(f, &hp, "name", &h.name);
            header_name(f, &hp, &h.name);
        }
        for (j, param) in rule.from_params.iter().enumerate() {
            required(f, &format!("{rp}.fromParams[{j}]"), "parameter", param);
        }
        for (j, cookie) in rule.from_cookies.iter().enumerate() {
            required(f, &format!("{rp}.fromCookies[{j}]"), "cookie", cookie);
        }
        if let Some(h) = &rule.output_payload_to_header {
            let hp = format!("{rp}.outputPayloadToHeader");
            required(f, &hp, "header", h);
            header_name(f, &hp, h);
        }
        for (j, c) in rule.output_claim_to_headers.iter().enumerate() {
            let cp = format!("{rp}.outputClaimToHeaders[{j}]");
            required(f, &format!("{cp}.header"), "header", &c.header);
            required(f, &format!("{cp}.claim"), "claim", &c.claim);
            header_name(f, &format!("{cp}.header"), &c.header);
        }
    }
}

/// An absolute `http`/`https` URL with a host and, if given, a valid port.
fn jwks_uri(u: &str) -> Result<(), String> {
    let Some((scheme, rest)) = u.split_once("://") else {
        return Err(format!("JWKS URI {u:?} must use http or https"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("JWKS URI {u:?} must use http or https"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !authority.ends_with(']') => (h, Some(p)),
        _ => (authority, None),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("JWKS URI {u:?} has no host"));
    }
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|n| n > 0)
    {
        return Err(format!("JWKS URI {u:?} has an invalid port {p:?}"));
    }
    Ok(())
}

/// A JSON object with a non-empty `keys` array (Envoy rejects anything else at load).
fn inline_jwks(text: &str) -> Result<(), String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("jwks is not valid JSON: {e}"))?;
    match doc.get("keys").and_then(|k| k.as_array()) {
        Some(keys) if !keys.is_empty() => Ok(()),
        _ => Err("jwks must be a JSON Web Key Set with at least one key in \"keys\"".to_string()),
    }
}

/// An HTTP header name: RFC 9110 token characters, not a pseudo-header.
fn header_name(f: &mut Findings, path: &str, name: &str) {
    const TCHAR: &str = "!#$%&'*+-.^_`|~";
    if !name.is_empty()
        && !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || TCHAR.contains(c))
    {
        f.error(
            path.to_string(),
            format!("{name:?} is not a valid HTTP header name"),
        );
    }
}
