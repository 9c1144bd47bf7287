//! A JWT issuer for tests: fixed RSA and EC keys (test-only, committed so scenario YAML can
//! embed their JWKS as `{{JWT_JWKS}}`), tokens minted with chosen claims and defects (expired,
//! not yet valid, wrong issuer or audience, forged signature, `alg: none`, malformed), and a
//! JWKS server over HTTPS ([`server`]) with a test CA for `jwksUri`.

pub mod mtls;
pub mod server;

use std::collections::BTreeMap;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The issuer (`iss`) tokens carry unless a request says otherwise.
pub const TEST_ISSUER: &str = "testing@trellis.test";
/// The RSA key's `kid`.
pub const RSA_KID: &str = "trellis-test-rsa";
/// The EC (P-256) key's `kid`.
pub const EC_KID: &str = "trellis-test-ec";

const RSA_PEM: &str = include_str!("test-rsa.pem");
const EC_PEM: &str = include_str!("test-ec.pem");

/// Which test key signs a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// RSA 2048 (RS256, RS384, RS512, PS256...).
    #[default]
    Rsa,
    /// EC P-256 (ES256).
    Ec,
}

/// A token to mint for a scenario request, and where to put it. Unset claims get defaults:
/// `iss` [`TEST_ISSUER`], `sub` `tester`, `exp` in one hour, `iat` now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtRequest {
    /// `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `sub`.
    #[serde(default)]
    pub sub: Option<String>,
    /// `aud`: a string or a list.
    #[serde(default)]
    pub aud: Option<Value>,
    /// More claims (nested objects allowed), added last (they override the above).
    #[serde(default)]
    pub claims: BTreeMap<String, Value>,
    /// `exp` two minutes in the past (beyond the 60 s clock skew).
    #[serde(default)]
    pub expired: bool,
    /// `nbf` ten minutes in the future.
    #[serde(default)]
    pub not_yet_valid: bool,
    /// The algorithm: `RS256` (default with RSA), `RS384`, `RS512`, `PS256`, `ES256` (default
    /// with EC), or `none` (unsigned, empty signature).
    #[serde(default)]
    pub alg: Option<String>,
    /// The signing key.
    #[serde(default)]
    pub key: KeyKind,
    /// `kid` in the header (the key's own by default; `""` for none).
    #[serde(default)]
    pub kid: Option<String>,
    /// Change the payload after signing, so the signature no longer matches.
    #[serde(default)]
    pub forged: bool,
    /// Send `not-a-jwt` instead of a token.
    #[serde(default)]
    pub malformed: bool,
    /// The header carrying it (`authorization`), unless `param` or `cookie` is set.
    #[serde(default)]
    pub header: Option<String>,
    /// The text before the token in the header (`Bearer ` for `authorization`, else none).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Send it as this query parameter instead.
    #[serde(default)]
    pub param: Option<String>,
    /// Send it as this cookie instead.
    #[serde(default)]
    pub cookie: Option<String>,
}

/// Where a minted token goes in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A header and its full value.
    Header(String, String),
    /// A query parameter to append.
    Param(String, String),
}

impl JwtRequest {
    /// Mints the token and says where it goes.
    pub fn placement(&self) -> anyhow::Result<Placement> {
        let token = self.token()?;
        if let Some(p) = &self.param {
            return Ok(Placement::Param(p.clone(), token));
        }
        if let Some(c) = &self.cookie {
            return Ok(Placement::Header("cookie".into(), format!("{c}={token}")));
        }
        let header = self
            .header
            .clone()
            .unwrap_or_else(|| "authorization".to_string());
        let prefix = self.prefix.clone().unwrap_or_else(|| {
            if header.eq_ignore_ascii_case("authorization") {
                "Bearer ".to_string()
            } else {
                String::new()
            }
        });
        Ok(Placement::Header(header, format!("{prefix}{token}")))
    }

    /// The token text.
    pub fn token(&self) -> anyhow::Result<String> {
        if self.malformed {
            return Ok("not-a-jwt".to_string());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut claims = serde_json::Map::new();
        claims.insert(
            "iss".into(),
            json!(self.issuer.clone().unwrap_or_else(|| TEST_ISSUER.into())),
        );
        claims.insert(
            "sub".into(),
            json!(self.sub.clone().unwrap_or_else(|| "tester".into())),
        );
        if let Some(aud) = &self.aud {
            claims.insert("aud".into(), aud.clone());
        }
        claims.insert("iat".into(), json!(now));
        let exp = if self.expired { now - 120 } else { now + 3600 };
        claims.insert("exp".into(), json!(exp));
        if self.not_yet_valid {
            claims.insert("nbf".into(), json!(now + 600));
        }
        for (k, v) in &self.claims {
            claims.insert(k.clone(), v.clone());
        }
        let claims = Value::Object(claims);
        let default_alg = match self.key {
            KeyKind::Rsa => "RS256",
            KeyKind::Ec => "ES256",
        };
        let alg = self.alg.as_deref().unwrap_or(default_alg);
        let kid = match &self.kid {
            Some(k) if k.is_empty() => None,
            Some(k) => Some(k.clone()),
            None => Some(
                match self.key {
                    KeyKind::Rsa => RSA_KID,
                    KeyKind::Ec => EC_KID,
                }
                .to_string(),
            ),
        };
        let token = if alg == "none" {
            let mut header = json!({"alg": "none", "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            format!("{}.{}.", b64_json(&header), b64_json(&claims))
        } else {
            let algorithm: Algorithm = alg.parse().with_context(|| format!("alg {alg:?}"))?;
            let mut header = Header::new(algorithm);
            header.kid = kid;
            jsonwebtoken::encode(&header, &claims, &encoding_key(self.key)?)
                .context("signing the test token")?
        };
        if !self.forged {
            return Ok(token);
        }
        // Same header and signature, another payload: a forgery.
        let mut forged = claims;
        forged["sub"] = json!("mallory");
        let parts: Vec<&str> = token.split('.').collect();
        Ok(format!(
            "{}.{}.{}",
            parts.first().copied().unwrap_or(""),
            b64_json(&forged),
            parts.get(2).copied().unwrap_or("")
        ))
    }
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn encoding_key(kind: KeyKind) -> anyhow::Result<EncodingKey> {
    match kind {
        KeyKind::Rsa => EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).context("test RSA key"),
        KeyKind::Ec => EncodingKey::from_ec_pem(EC_PEM.as_bytes()).context("test EC key"),
    }
}

/// The public JWKS of both test keys (what `{{JWT_JWKS}}` expands to).
pub fn jwks_json() -> anyhow::Result<String> {
    jwks_json_of(&[KeyKind::Rsa, KeyKind::Ec])
}

/// The public JWKS of the test keys `kinds` only (a JWKS server's rotated key set).
pub fn jwks_json_of(kinds: &[KeyKind]) -> anyhow::Result<String> {
    let mut keys = Vec::new();
    for (kind, alg, kid) in [
        (KeyKind::Rsa, Algorithm::RS256, RSA_KID),
        (KeyKind::Ec, Algorithm::ES256, EC_KID),
    ] {
        if !kinds.contains(&kind) {
            continue;
        }
        let mut jwk = Jwk::from_encoding_key(&encoding_key(kind)?, alg)?;
        jwk.common.key_id = Some(kid.to_string());
        // No `alg` on the keys: one RSA key serves RS256/384/512 and PS256.
        jwk.common.key_algorithm = None;
        keys.push(jwk);
    }
    Ok(serde_json::to_string(&JwkSet { keys })?)
}

/// Replaces `{{JWT_JWKS}}` with the test JWKS and each `{{NAME}}` of `extra` with its value.
pub fn expand(text: &str, extra: &[(&str, String)]) -> anyhow::Result<String> {
    let mut out = text.to_string();
    if out.contains("{{JWT_JWKS}}") {
        out = out.replace("{{JWT_JWKS}}", &jwks_json()?);
    }
    for (name, value) in extra {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(token: &str) -> Value {
        let p = token.split('.').nth(1).expect("payload");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64")).expect("json")
    }

    #[test]
    fn tokens_verify_with_the_published_jwks() {
        let set: JwkSet = serde_json::from_str(&jwks_json().expect("jwks")).expect("parse");
        for (key, alg) in [
            (KeyKind::Rsa, "RS256"),
            (KeyKind::Rsa, "PS256"),
            (KeyKind::Ec, "ES256"),
        ] {
            let req = JwtRequest {
                key,
                alg: Some(alg.into()),
                aud: Some(json!(["a", "b"])),
                claims: BTreeMap::from([("groups".into(), json!({"team": "x"}))]),
                ..Default::default()
            };
            let token = req.token().expect("mint");
            let kid = jsonwebtoken::decode_header(&token)
                .expect("header")
                .kid
                .expect("kid");
            let jwk = set.find(&kid).expect("key");
            let mut v = jsonwebtoken::Validation::new(alg.parse().expect("alg"));
            v.set_audience(&["a"]);
            let data = jsonwebtoken::decode::<Value>(
                &token,
                &jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key"),
                &v,
            )
            .expect("verifies");
            assert_eq!(data.claims["groups"]["team"], "x");
        }
    }

    #[test]
    fn defects_are_what_they_say() {
        let expired = JwtRequest {
            expired: true,
            ..Default::default()
        };
        let p = payload(&expired.token().expect("mint"));
        assert!(p["exp"].as_u64() < p["iat"].as_u64());
        let none = JwtRequest {
            alg: Some("none".into()),
            ..Default::default()
        };
        assert!(none.token().expect("mint").ends_with('.'));
        let forged = JwtRequest {
            forged: true,
            ..Default::default()
        };
        assert_eq!(payload(&forged.token().expect("mint"))["sub"], "mallory");
        let placed = JwtRequest {
            param: Some("access_token".into()),
            ..Default::default()
        };
        assert!(matches!(placed.placement(), Ok(Placement::Param(p, _)) if p == "access_token"));
    }
}
