//! Where request JWTs are verified: the `envoy.filters.http.jwt_authn` filter.
//!
//! The filter runs first on a listener's requests (before routing, as Istio places it). It
//! finds the rule for the path, evaluates its requirement tree (`provider_name`,
//! `allow_missing`, `allow_missing_or_failed`, `requires_any`, `requires_all`) with Envoy's
//! semantics, and either rejects the request (401, or 403 for audiences, Envoy's body texts,
//! `www-authenticate`) or lets it through with the effects of every verified token applied:
//! the token removed unless `forward`, `forward_payload_header` and `claim_to_headers` set,
//! and a [`VerifiedJwt`] placed in the request's extensions, which is how the RBAC filter
//! (`request.auth.*`, `requestPrincipals`) reads the payload that Envoy keeps in dynamic
//! metadata at `envoy.filters.http.jwt_authn` / `payload_in_metadata`.

mod extract;
mod jwks;
pub mod token;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use serde_json::Value;

pub use extract::Location;
pub use jwks::{FetchError, JwksCache};
pub use token::JwtStatus;

use crate::config::{JwksSource, JwtAuthentication, JwtProvider, JwtRequirement};
use crate::upstream::ClusterManager;

/// The verified payload of the request's JWT, in `http::Extensions` (Envoy: dynamic metadata
/// of `envoy.filters.http.jwt_authn` under the provider's `payload_in_metadata`). With several
/// verified tokens, the last one verified, as Envoy's metadata key would hold.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJwt {
    /// The provider that verified it (`origins-N`).
    pub provider: String,
    /// The metadata key (`payload_in_metadata`), if the provider sets one.
    pub metadata_key: Option<String>,
    /// The `iss` claim.
    pub issuer: String,
    /// The whole payload (a JSON object).
    pub payload: Value,
}

impl VerifiedJwt {
    /// Istio's request principal: `iss/sub`.
    pub fn principal(&self) -> String {
        let sub = self
            .payload
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("");
        format!("{}/{sub}", self.issuer)
    }
}

/// What the filter needs besides its config.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Remote JWKS.
    pub jwks: &'a JwksCache,
    /// The clusters remote JWKS are fetched through.
    pub clusters: &'a ClusterManager,
}

/// Runs the filter on `req`: `Ok` lets it continue (modified), `Err` is the rejection.
pub async fn authenticate<B>(
    config: &JwtAuthentication,
    cx: Context<'_>,
    req: &mut Request<B>,
) -> Result<(), JwtStatus> {
    if config.bypass_cors_preflight && is_cors_preflight(req.method(), req.headers()) {
        return Ok(());
    }
    let path = req.uri().path().to_string();
    let Some(rule) = config.rules.iter().find(|r| path.starts_with(&r.prefix)) else {
        return Ok(());
    };
    let query = req.uri().query().map(str::to_string);
    let mut run = Run {
        config,
        cx,
        headers: req.headers(),
        query: query.as_deref(),
        results: HashMap::new(),
        now: token::now_unix(),
    };
    run.eval(&rule.requires).await?;
    let verified = run.verified();
    apply_effects(config, req, verified);
    Ok(())
}

/// A token verified by a provider.
struct Verified {
    provider: String,
    found: extract::Found,
    jwt: token::ParsedJwt,
}

/// One evaluation of a requirement tree over one request; each (provider, token) pair is
/// verified once.
struct Run<'r> {
    config: &'r JwtAuthentication,
    cx: Context<'r>,
    headers: &'r HeaderMap,
    query: Option<&'r str>,
    results: HashMap<(String, String), (extract::Found, Result<token::ParsedJwt, JwtStatus>)>,
    now: u64,
}

type Eval<'f> = Pin<Box<dyn Future<Output = Result<(), JwtStatus>> + Send + 'f>>;

impl<'r> Run<'r> {
    fn eval<'f>(&'f mut self, requirement: &'f JwtRequirement) -> Eval<'f>
    where
        'r: 'f,
    {
        Box::pin(async move {
            match requirement {
                JwtRequirement::ProviderName(name) => self.provider(name).await,
                JwtRequirement::AllowMissing => self.allow_missing().await,
                JwtRequirement::AllowMissingOrFailed => {
                    let _ = self.allow_missing().await;
                    Ok(())
                }
                JwtRequirement::RequiresAny(list) => {
                    let mut first_error = None;
                    for r in list {
                        match self.eval(r).await {
                            Ok(()) => return Ok(()),
                            Err(JwtStatus::Missing) => {}
                            Err(e) => {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    Err(first_error.unwrap_or(JwtStatus::Missing))
                }
                JwtRequirement::RequiresAll(list) => {
                    for r in list {
                        self.eval(r).await?;
                    }
                    Ok(())
                }
            }
        })
    }

    /// A valid token of this provider at one of its locations.
    async fn provider(&mut self, name: &str) -> Result<(), JwtStatus> {
        let Some(provider) = self.config.providers.get(name) else {
            return Err(JwtStatus::UnknownIssuer);
        };
        let found = extract::find(self.headers, self.query, &extract::locations(provider));
        if found.is_empty() {
            return Err(JwtStatus::Missing);
        }
        for f in found {
            self.verify(name, f).await?;
        }
        Ok(())
    }

    /// Every token at any provider's location must be valid for a provider that reads that
    /// location and trusts its issuer; no token passes.
    async fn allow_missing(&mut self) -> Result<(), JwtStatus> {
        let mut by_location: Vec<(extract::Location, Vec<String>)> = Vec::new();
        for (name, provider) in &self.config.providers {
            for location in extract::locations(provider) {
                match by_location.iter_mut().find(|(l, _)| *l == location) {
                    Some((_, names)) => names.push(name.clone()),
                    None => by_location.push((location, vec![name.clone()])),
                }
            }
        }
        let locations: Vec<extract::Location> =
            by_location.iter().map(|(l, _)| l.clone()).collect();
        for found in extract::find(self.headers, self.query, &locations) {
            let jwt = token::parse(&found.token)?;
            let readers = by_location
                .iter()
                .find(|(l, _)| *l == found.location)
                .map(|(_, names)| names.clone())
                .unwrap_or_default();
            let Some(name) = readers.into_iter().find(|n| {
                self.config
                    .providers
                    .get(n)
                    .is_some_and(|p| p.issuer.is_empty() || p.issuer == jwt.iss)
            }) else {
                return Err(JwtStatus::UnknownIssuer);
            };
            self.verify(&name, found).await?;
        }
        Ok(())
    }

    /// Verifies one token for one provider (memoized).
    async fn verify(&mut self, name: &str, found: extract::Found) -> Result<(), JwtStatus> {
        let key = (name.to_string(), found.token.clone());
        if let Some((_, result)) = self.results.get(&key) {
            return result.as_ref().map(|_| ()).map_err(|e| *e);
        }
        let result = match self.config.providers.get(name) {
            Some(provider) => check(provider, &found.token, self.cx, self.now).await,
            None => Err(JwtStatus::UnknownIssuer),
        };
        let outcome = result.as_ref().map(|_| ()).map_err(|e| *e);
        self.results.insert(key, (found, result));
        outcome
    }

    fn verified(self) -> Vec<Verified> {
        let mut out: Vec<Verified> = self
            .results
            .into_iter()
            .filter_map(|((provider, _), (found, result))| {
                result.ok().map(|jwt| Verified {
                    provider,
                    found,
                    jwt,
                })
            })
            .collect();
        out.sort_by(|a, b| a.provider.cmp(&b.provider));
        out
    }
}

/// All checks of one token against one provider, in Envoy's order.
async fn check(
    provider: &JwtProvider,
    token: &str,
    cx: Context<'_>,
    now: u64,
) -> Result<token::ParsedJwt, JwtStatus> {
    let jwt = token::parse(token)?;
    if !provider.issuer.is_empty() && provider.issuer != jwt.iss {
        return Err(JwtStatus::UnknownIssuer);
    }
    token::check_claims(&jwt, provider, now)?;
    match &provider.jwks {
        JwksSource::Local(jwks) => token::verify_signature(&jwt, &jwks.keys)?,
        JwksSource::Remote(remote) => {
            let keys = cx.jwks.keys(remote, cx.clusters).await.map_err(|e| {
                tracing::warn!(error = %e, "remote JWKS unavailable");
                JwtStatus::JwksFetchFail
            })?;
            token::verify_signature(&jwt, &keys)?
        }
    }
    Ok(jwt)
}

/// The rejection Envoy sends: 401 (403 for audiences) with the status text as the body,
/// `www-authenticate: Bearer realm="<request URL>"` (plus `error="invalid_token"` unless the
/// token is missing), and our `x-trellis-reason: JWT <text>`. The URL's scheme is the
/// request's `x-forwarded-proto` when it has one (as Envoy builds the original URI), else the
/// connection's.
pub fn rejection<B>(
    status: JwtStatus,
    scheme: &str,
    req: &Request<B>,
) -> http::Response<crate::listener::ProxyBody> {
    use http_body_util::BodyExt;
    let text = status.to_string();
    let authority = crate::listener::request_authority(req).unwrap_or_default();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let scheme = req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or(scheme);
    let mut realm = format!("Bearer realm=\"{scheme}://{authority}{path}\"");
    if status != JwtStatus::Missing {
        realm.push_str(", error=\"invalid_token\"");
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(text.clone()))
        .map_err(|e| match e {})
        .boxed();
    let mut response = http::Response::new(body);
    *response.status_mut() = status.http_status();
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    if let Ok(v) = HeaderValue::from_str(&realm) {
        headers.insert(http::header::WWW_AUTHENTICATE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("JWT {text}")) {
        headers.insert(crate::listener::REASON_HEADER, v);
    }
    response
}

/// Envoy's CORS preflight test.
fn is_cors_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers
            .get(http::header::ORIGIN)
            .is_some_and(|v| !v.is_empty())
        && headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|v| !v.is_empty())
}

/// Output headers, token removal and the verified payload, for each verified token.
fn apply_effects<B>(config: &JwtAuthentication, req: &mut Request<B>, verified: Vec<Verified>) {
    for v in verified {
        let Some(provider) = config.providers.get(&v.provider) else {
            continue;
        };
        let headers = req.headers_mut();
        if let Some(name) = &provider.forward_payload_header {
            set_header(headers, name, &v.jwt.payload_b64);
        }
        for c in &provider.claim_to_headers {
            if let Some(value) = claim_text(&v.jwt.payload, &c.claim_name) {
                set_header(headers, &c.header_name, &value);
            }
        }
        if !provider.forward {
            extract::remove(req.headers_mut(), &v.found);
        }
        let mut payload = v.jwt.payload;
        split_space_delimited(&mut payload, &provider.space_delimited_claims);
        req.extensions_mut().insert(VerifiedJwt {
            provider: v.provider.clone(),
            metadata_key: provider.payload_in_metadata.clone(),
            issuer: v.jwt.iss.clone(),
            payload: Value::Object(payload),
        });
    }
}

/// Replaces each of `claims` that is a string in `payload` with the list of its
/// space-separated words, as Envoy's `normalize_payload_in_metadata` records it (only the
/// metadata copy: headers and the forwarded token are untouched).
fn split_space_delimited(payload: &mut serde_json::Map<String, Value>, claims: &[String]) {
    for claim in claims {
        if let Some(Value::String(text)) = payload.get(claim) {
            let words = text
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(|w| Value::String(w.to_string()))
                .collect();
            payload.insert(claim.clone(), Value::Array(words));
        }
    }
}

fn set_header(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(n, v);
    }
}

/// A claim (nested with `.`) as header text: strings as they are, numbers and booleans
/// printed; other types are not copied (Envoy's rule).
fn claim_text(payload: &serde_json::Map<String, Value>, claim: &str) -> Option<String> {
    let mut parts = claim.split('.');
    let mut value = payload.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
