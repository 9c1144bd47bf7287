//! One JWT checked against one provider, in the order Envoy's `jwt_verify_lib` and
//! `jwt_authn` authenticator check it: format, header, payload, signature encoding, issuer,
//! time window (`nbf`, `exp`, with clock skew), audiences, then the key and the signature.
//! Every failure is a [`JwtStatus`] whose text is Envoy's, so both data planes answer alike.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::config::JwtProvider;

/// Why a request's JWT was not accepted (Envoy's `jwt_verify::Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtStatus {
    /// No token at the required locations.
    #[error("Jwt is missing")]
    Missing,
    /// Not three base64url sections separated by dots.
    #[error("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")]
    BadFormat,
    /// The header is not base64url.
    #[error("Jwt header is an invalid Base64url encoded")]
    HeaderBadBase64,
    /// The header is not a JSON object.
    #[error("Jwt header is an invalid JSON")]
    HeaderBadJson,
    /// `alg` missing or not a string.
    #[error("Jwt header [alg] field is required and must be a string")]
    HeaderBadAlg,
    /// `alg` is `none` or not one we verify.
    #[error("Jwt header [alg] is not supported")]
    AlgNotSupported,
    /// `kid` is not a string.
    #[error("Jwt header [kid] field is not a string")]
    HeaderBadKid,
    /// The payload is not base64url.
    #[error("Jwt payload is an invalid Base64url encoded")]
    PayloadBadBase64,
    /// The payload is not a JSON object.
    #[error("Jwt payload is an invalid JSON")]
    PayloadBadJson,
    /// `iss` is not a string.
    #[error("Jwt payload [iss] field is not a string")]
    IssNotString,
    /// `sub` is not a string.
    #[error("Jwt payload [sub] field is not a string")]
    SubNotString,
    /// `iat` is not an integer.
    #[error("Jwt payload [iat] field is not an integer")]
    IatNotInteger,
    /// `nbf` is not an integer.
    #[error("Jwt payload [nbf] field is not an integer")]
    NbfNotInteger,
    /// `exp` is not an integer.
    #[error("Jwt payload [exp] field is not an integer")]
    ExpNotInteger,
    /// `jti` is not a string.
    #[error("Jwt payload [jti] field is not a string")]
    JtiNotString,
    /// `aud` is neither a string nor a list of strings.
    #[error("Jwt payload [aud] field is not a string or string list")]
    AudNotString,
    /// The signature is not base64url.
    #[error("Jwt signature is an invalid Base64url encoded")]
    SignatureBadBase64,
    /// No provider trusts the token's issuer (at the location it was found).
    #[error("Jwt issuer is not configured")]
    UnknownIssuer,
    /// `exp` (plus clock skew) is in the past.
    #[error("Jwt is expired")]
    Expired,
    /// `nbf` (minus clock skew) is in the future.
    #[error("Jwt not yet valid")]
    NotYetValid,
    /// No `aud` is among the provider's audiences (Envoy answers 403 for this one).
    #[error("Audiences in Jwt are not allowed")]
    AudienceNotAllowed,
    /// No key of the JWKS has the token's `kid` and a type that fits its `alg`.
    #[error("Jwks doesn't have key to match kid or alg from Jwt")]
    KidAlgMismatch,
    /// The signature does not verify with any matching key.
    #[error("Jwt verification fails")]
    VerificationFail,
    /// The remote JWKS could not be fetched.
    #[error("Jwks remote fetch is failed")]
    JwksFetchFail,
}

impl JwtStatus {
    /// The HTTP status Envoy answers with: 403 for audiences, 401 otherwise.
    pub fn http_status(self) -> http::StatusCode {
        match self {
            JwtStatus::AudienceNotAllowed => http::StatusCode::FORBIDDEN,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }
}

/// A token whose encoding and claims' types are valid (not yet its signature or claims'
/// values).
#[derive(Debug, Clone)]
pub struct ParsedJwt {
    /// `alg`.
    pub alg: Algorithm,
    /// `kid`, if any.
    pub kid: Option<String>,
    /// The decoded payload.
    pub payload: serde_json::Map<String, Value>,
    /// The payload exactly as sent (base64url), for `forward_payload_header`.
    pub payload_b64: String,
    /// `iss` (empty when absent).
    pub iss: String,
    /// `aud` as a list.
    pub audiences: Vec<String>,
    /// `exp` (0 when absent).
    pub exp: u64,
    /// `nbf` (0 when absent).
    pub nbf: u64,
    signing_input: String,
    signature: String,
}

const BASE64URL_AND_DOTS: &str =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

/// Parses a token as `jwt_verify_lib` does: format, header, payload, signature encoding.
pub fn parse(token: &str) -> Result<ParsedJwt, JwtStatus> {
    if token.chars().any(|c| !BASE64URL_AND_DOTS.contains(c)) {
        return Err(JwtStatus::BadFormat);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature] = parts.as_slice() else {
        return Err(JwtStatus::BadFormat);
    };
    if header_b64.is_empty() || payload_b64.is_empty() || signature.is_empty() {
        return Err(JwtStatus::BadFormat);
    }
    let header = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| JwtStatus::HeaderBadBase64)?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&header).map_err(|_| JwtStatus::HeaderBadJson)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(JwtStatus::HeaderBadAlg),
    };
    let alg = supported_alg(alg).ok_or(JwtStatus::AlgNotSupported)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtStatus::HeaderBadKid),
    };
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| JwtStatus::PayloadBadBase64)?;
    let payload: serde_json::Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| JwtStatus::PayloadBadJson)?;
    let string_claim = |name: &str, err: JwtStatus| match payload.get(name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(err),
    };
    let iss = string_claim("iss", JwtStatus::IssNotString)?;
    string_claim("sub", JwtStatus::SubNotString)?;
    string_claim("jti", JwtStatus::JtiNotString)?;
    let int_claim = |name: &str, err: JwtStatus| match payload.get(name) {
        None => Ok(0),
        Some(v) => v.as_u64().ok_or(err),
    };
    int_claim("iat", JwtStatus::IatNotInteger)?;
    let nbf = int_claim("nbf", JwtStatus::NbfNotInteger)?;
    let exp = int_claim("exp", JwtStatus::ExpNotInteger)?;
    let audiences = match payload.get("aud") {
        None => Vec::new(),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|a| a.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(JwtStatus::AudNotString)?,
        Some(_) => return Err(JwtStatus::AudNotString),
    };
    URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtStatus::SignatureBadBase64)?;
    Ok(ParsedJwt {
        alg,
        kid,
        payload,
        payload_b64: payload_b64.to_string(),
        iss,
        audiences,
        exp,
        nbf,
        signing_input: format!("{header_b64}.{payload_b64}"),
        signature: signature.to_string(),
    })
}

/// The algorithms verified here (`jsonwebtoken`'s set; Envoy's also has ES512, which is
/// answered as unsupported). `none` is never accepted.
fn supported_alg(alg: &str) -> Option<Algorithm> {
    Some(match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The checks that need no keys: time window (nbf first, then exp, as `jwt_verify_lib`),
/// then audiences.
pub fn check_claims(jwt: &ParsedJwt, provider: &JwtProvider, now: u64) -> Result<(), JwtStatus> {
    let skew = provider.clock_skew.as_secs();
    if jwt.nbf != 0 && now.saturating_add(skew) < jwt.nbf {
        return Err(JwtStatus::NotYetValid);
    }
    if jwt.exp != 0 && now > jwt.exp.saturating_add(skew) {
        return Err(JwtStatus::Expired);
    }
    if !provider.audiences.is_empty()
        && !jwt
            .audiences
            .iter()
            .any(|a| provider.audiences.iter().any(|p| audience_eq(p, a)))
    {
        return Err(JwtStatus::AudienceNotAllowed);
    }
    Ok(())
}

/// Envoy compares audiences ignoring the scheme (`http://`/`https://`) and a trailing slash.
fn audience_eq(configured: &str, presented: &str) -> bool {
    let norm = |s: &str| {
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        s.strip_suffix('/').unwrap_or(s).to_string()
    };
    norm(configured) == norm(presented)
}

/// Verifies the signature with the keys that match the token's `kid` (when it has one) and
/// whose type fits its `alg`: no such key is [`JwtStatus::KidAlgMismatch`], no key that
/// verifies is [`JwtStatus::VerificationFail`]. An HMAC `alg` only ever uses `oct` keys, so a
/// public key is never used as an HMAC secret.
pub fn verify_signature(jwt: &ParsedJwt, keys: &[Jwk]) -> Result<(), JwtStatus> {
    let mut matched = false;
    for key in keys {
        if let (Some(want), Some(have)) = (&jwt.kid, &key.common.key_id)
            && want != have
        {
            continue;
        }
        // A key without `kid` matches any token (Envoy's rule), one with a `kid` only its own.
        if !key_fits(key, jwt.alg) {
            continue;
        }
        let Ok(decoding) = DecodingKey::from_jwk(key) else {
            continue;
        };
        matched = true;
        if jsonwebtoken::crypto::verify(
            &jwt.signature,
            jwt.signing_input.as_bytes(),
            &decoding,
            jwt.alg,
        )
        .unwrap_or(false)
        {
            return Ok(());
        }
    }
    Err(if matched {
        JwtStatus::VerificationFail
    } else {
        JwtStatus::KidAlgMismatch
    })
}

/// Whether a JWK can verify `alg`: the key type must fit, and a key's own `alg`, when set,
/// must be the token's.
fn key_fits(key: &Jwk, alg: Algorithm) -> bool {
    if let Some(key_alg) = key.common.key_algorithm
        && format!("{key_alg:?}") != format!("{alg:?}")
    {
        return false;
    }
    match (&key.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA) => true,
        (
            AlgorithmParameters::OctetKey(_),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512,
        ) => true,
        _ => false,
    }
}

/// Parses a JWKS document (keys of unknown types are skipped, as Envoy does); `None` when it
/// is not a JWKS or has no usable key.
pub fn parse_jwks(text: &str) -> Option<Vec<Jwk>> {
    let doc: Value = serde_json::from_str(text).ok()?;
    let keys = doc.get("keys")?.as_array()?;
    let keys: Vec<Jwk> = keys
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|k| !matches!(k.algorithm, AlgorithmParameters::Other(_)))
        .collect();
    (!keys.is_empty()).then_some(keys)
}

/// The current time in seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
