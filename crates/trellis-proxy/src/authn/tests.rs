//! The filter against tokens signed with real keys (ES256 from `ring`, HS256 forgeries), one
//! test per outcome; each negative test asserts the exact status (Envoy's text).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};

use super::*;
use crate::config::{
    ClaimToHeader, JwksSource, JwtAuthentication, JwtHeader, JwtProvider, JwtRequirement,
    RequirementRule,
};

struct Key {
    encoding: EncodingKey,
    jwk: Jwk,
}

fn ec_key(kid: &str) -> Key {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("generate");
    let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).expect("jwk");
    jwk.common.key_id = Some(kid.to_string());
    Key { encoding, jwk }
}

fn sign(key: &Key, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
}

fn claims() -> Value {
    let now = token::now_unix();
    json!({"iss": "issuer-a", "sub": "alice", "aud": "svc", "exp": now + 3600,
           "nested": {"role": "admin"}, "n": 7})
}

fn provider(key: &Key) -> JwtProvider {
    JwtProvider {
        issuer: "issuer-a".into(),
        audiences: vec!["svc".into()],
        jwks: JwksSource::Local(Arc::new(crate::config::Jwks {
            text: String::new(),
            keys: vec![key.jwk.clone()],
        })),
        from_headers: vec![],
        from_params: vec![],
        from_cookies: vec![],
        forward: false,
        forward_payload_header: None,
        claim_to_headers: vec![],
        payload_in_metadata: Some("payload".into()),
        clock_skew: Duration::from_secs(60),
        space_delimited_claims: vec![],
    }
}

/// Istio's shape for one provider: `requires_any [origins-0, allow_missing]`.
fn istio_config(p: JwtProvider) -> JwtAuthentication {
    JwtAuthentication {
        providers: BTreeMap::from([("origins-0".to_string(), p)]),
        rules: vec![RequirementRule {
            prefix: "/".into(),
            requires: JwtRequirement::RequiresAny(vec![
                JwtRequirement::ProviderName("origins-0".into()),
                JwtRequirement::AllowMissing,
            ]),
        }],
        bypass_cors_preflight: true,
    }
}

async fn run(config: &JwtAuthentication, req: &mut Request<()>) -> Result<(), JwtStatus> {
    let jwks = JwksCache::new();
    let clusters = ClusterManager::new();
    authenticate(
        config,
        Context {
            jwks: &jwks,
            clusters: &clusters,
        },
        req,
    )
    .await
}

fn bearer(token: &str) -> Request<()> {
    Request::get("/p?x=1")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .expect("request")
}

async fn status_of(claims: Value) -> Result<(), JwtStatus> {
    let key = ec_key("k1");
    let config = istio_config(provider(&key));
    run(&config, &mut bearer(&sign(&key, "k1", &claims))).await
}

#[tokio::test]
async fn a_valid_token_passes_is_stripped_and_recorded() {
    let key = ec_key("k1");
    let config = istio_config(provider(&key));
    let mut req = bearer(&sign(&key, "k1", &claims()));
    run(&config, &mut req).await.expect("valid");
    assert!(req.headers().get("authorization").is_none());
    let v = req.extensions().get::<VerifiedJwt>().expect("payload");
    assert_eq!(v.principal(), "issuer-a/alice");
    assert_eq!(v.metadata_key.as_deref(), Some("payload"));
    assert_eq!(v.payload["nested"]["role"], "admin");
}

#[tokio::test]
async fn space_delimited_claims_become_lists_in_the_metadata_only() {
    let key = ec_key("k1");
    let mut p = provider(&key);
    p.space_delimited_claims = vec!["scope".into(), "n".into(), "absent".into()];
    p.claim_to_headers = vec![crate::config::ClaimToHeader {
        header_name: "x-scope".into(),
        claim_name: "scope".into(),
    }];
    let config = istio_config(p);
    let mut claims = claims();
    claims["scope"] = json!("read  write admin");
    claims["other"] = json!("a b");
    let mut req = bearer(&sign(&key, "k1", &claims));
    run(&config, &mut req).await.expect("valid");
    let v = req.extensions().get::<VerifiedJwt>().expect("payload");
    assert_eq!(v.payload["scope"], json!(["read", "write", "admin"]));
    assert_eq!(v.payload["other"], "a b", "claims not listed stay strings");
    assert_eq!(v.payload["n"], 7, "non-string claims are left alone");
    assert!(v.payload.get("absent").is_none());
    assert_eq!(req.headers()["x-scope"], "read  write admin");
}

#[tokio::test]
async fn no_token_passes_without_payload() {
    let key = ec_key("k1");
    let config = istio_config(provider(&key));
    let mut req = Request::get("/").body(()).expect("request");
    run(&config, &mut req).await.expect("missing passes");
    assert!(req.extensions().get::<VerifiedJwt>().is_none());
}

#[tokio::test]
async fn a_provider_requirement_alone_needs_a_token() {
    let key = ec_key("k1");
    let mut config = istio_config(provider(&key));
    config.rules[0].requires = JwtRequirement::ProviderName("origins-0".into());
    let mut req = Request::get("/").body(()).expect("request");
    assert_eq!(run(&config, &mut req).await, Err(JwtStatus::Missing));
}

#[tokio::test]
async fn expired_tokens_fail_beyond_the_clock_skew() {
    let now = token::now_unix();
    let mut c = claims();
    c["exp"] = json!(now - 120);
    assert_eq!(status_of(c).await, Err(JwtStatus::Expired));
    let mut c = claims();
    c["exp"] = json!(now - 30);
    assert_eq!(status_of(c).await, Ok(()));
    let mut c = claims();
    c["nbf"] = json!(now + 600);
    assert_eq!(status_of(c).await, Err(JwtStatus::NotYetValid));
}

#[tokio::test]
async fn wrong_issuer_and_audience_are_rejected() {
    let mut c = claims();
    c["iss"] = json!("issuer-x");
    assert_eq!(status_of(c).await, Err(JwtStatus::UnknownIssuer));
    let mut c = claims();
    c["aud"] = json!("other");
    let status = status_of(c).await;
    assert_eq!(status, Err(JwtStatus::AudienceNotAllowed));
    assert_eq!(JwtStatus::AudienceNotAllowed.http_status(), 403);
    let mut c = claims();
    c["aud"] = json!(["zz", "https://svc/"]);
    assert_eq!(status_of(c).await, Ok(()));
}

#[tokio::test]
async fn forged_and_foreign_signatures_fail() {
    let key = ec_key("k1");
    let other = ec_key("k1");
    let config = istio_config(provider(&key));
    // Signed by another key with the same kid.
    let token = sign(&other, "k1", &claims());
    assert_eq!(
        run(&config, &mut bearer(&token)).await,
        Err(JwtStatus::VerificationFail)
    );
    // An unknown kid.
    let token = sign(&key, "k2", &claims());
    assert_eq!(
        run(&config, &mut bearer(&token)).await,
        Err(JwtStatus::KidAlgMismatch)
    );
}

#[tokio::test]
async fn alg_none_and_hmac_with_a_public_key_are_rejected() {
    let key = ec_key("k1");
    let config = istio_config(provider(&key));
    let token = sign(&key, "k1", &claims());
    let payload = token.split('.').nth(1).expect("payload");
    let none_header = "eyJhbGciOiJub25lIn0"; // {"alg":"none"}
    assert_eq!(
        run(&config, &mut bearer(&format!("{none_header}.{payload}."))).await,
        Err(JwtStatus::BadFormat)
    );
    assert_eq!(
        run(
            &config,
            &mut bearer(&format!("{none_header}.{payload}.c2ln"))
        )
        .await,
        Err(JwtStatus::AlgNotSupported)
    );
    // HS256 "signed" with the public key's bytes: no oct key, so no key matches.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(serde_json::to_string(&key.jwk).expect("jwk").as_bytes()),
    )
    .expect("sign");
    assert_eq!(
        run(&config, &mut bearer(&forged)).await,
        Err(JwtStatus::KidAlgMismatch)
    );
}

#[tokio::test]
async fn malformed_tokens_are_rejected_with_envoys_texts() {
    let key = ec_key("k1");
    let config = istio_config(provider(&key));
    for (token, status) in [
        ("abc.def", JwtStatus::BadFormat),
        ("!!!.abc.def", JwtStatus::BadFormat),
        ("e30.e30.c2ln.x", JwtStatus::BadFormat),
        ("bm90anNvbg.e30.c2ln", JwtStatus::HeaderBadJson),
        ("e30.e30.c2ln", JwtStatus::HeaderBadAlg),
    ] {
        assert_eq!(
            run(&config, &mut bearer(token)).await,
            Err(status),
            "{token}"
        );
    }
    assert_eq!(
        JwtStatus::BadFormat.to_string(),
        "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
    );
}

#[tokio::test]
async fn custom_locations_forwarding_and_output_headers() {
    let key = ec_key("k1");
    let mut p = provider(&key);
    p.from_headers = vec![JwtHeader {
        name: "x-jwt".into(),
        value_prefix: "Token ".into(),
    }];
    p.from_params = vec!["tok".into()];
    p.forward = true;
    p.forward_payload_header = Some("x-payload".into());
    p.claim_to_headers = vec![
        ClaimToHeader {
            header_name: "x-role".into(),
            claim_name: "nested.role".into(),
        },
        ClaimToHeader {
            header_name: "x-n".into(),
            claim_name: "n".into(),
        },
    ];
    let config = istio_config(p);
    let token = sign(&key, "k1", &claims());
    let mut req = Request::get("/")
        .header("x-jwt", format!("Token {token}"))
        .body(())
        .expect("request");
    run(&config, &mut req).await.expect("valid");
    let h = req.headers();
    assert!(h.get("x-jwt").is_some(), "forwarded");
    assert_eq!(h.get("x-role").map(|v| v.as_bytes()), Some(&b"admin"[..]));
    assert_eq!(h.get("x-n").map(|v| v.as_bytes()), Some(&b"7"[..]));
    let payload = token.split('.').nth(1).expect("payload");
    assert_eq!(
        h.get("x-payload").map(|v| v.as_bytes()),
        Some(payload.as_bytes())
    );
    // The default Authorization header is not a location of this provider any more.
    let mut req = bearer("garbage");
    run(&config, &mut req)
        .await
        .expect("not a location: missing");
    // A query parameter token is verified and, as in Envoy, left in place.
    let mut p = config.providers["origins-0"].clone();
    p.forward = false;
    let config = istio_config(p);
    let mut req = Request::get(format!("/a?x=1&tok={token}"))
        .body(())
        .expect("request");
    run(&config, &mut req).await.expect("valid");
    assert_eq!(req.uri().to_string(), format!("/a?x=1&tok={token}"));
}

#[tokio::test]
async fn cors_preflights_bypass_the_filter() {
    let key = ec_key("k1");
    let config = istio_config(provider(&key));
    let mut req = Request::builder()
        .method("OPTIONS")
        .uri("/")
        .header("origin", "http://a")
        .header("access-control-request-method", "GET")
        .header("authorization", "Bearer bad")
        .body(())
        .expect("request");
    run(&config, &mut req).await.expect("bypassed");
}

#[tokio::test]
async fn a_remote_jwks_that_cannot_be_fetched_fails_the_token() {
    let key = ec_key("k1");
    let mut p = provider(&key);
    p.jwks = JwksSource::Remote(crate::config::RemoteJwks {
        uri: "https://jwks.example/keys".into(),
        cluster: "outbound|443||jwks.example".into(),
        timeout: Duration::from_secs(1),
        cache_duration: Duration::from_secs(600),
        async_fetch: None,
    });
    let config = istio_config(p);
    let token = sign(&key, "k1", &claims());
    assert_eq!(
        run(&config, &mut bearer(&token)).await,
        Err(JwtStatus::JwksFetchFail)
    );
}

#[test]
fn rejections_carry_envoys_body_realm_and_our_reason() {
    let req = Request::get("http://echo:9080/p?q=1")
        .header("x-forwarded-proto", "http")
        .body(())
        .expect("request");
    let r = rejection(JwtStatus::Expired, "https", &req);
    assert_eq!(r.status(), 401);
    let h = r.headers();
    assert_eq!(
        h.get("www-authenticate").map(|v| v.as_bytes()),
        Some(&br#"Bearer realm="http://echo:9080/p?q=1", error="invalid_token""#[..])
    );
    assert_eq!(
        h.get(crate::listener::REASON_HEADER).map(|v| v.as_bytes()),
        Some(&b"JWT Jwt is expired"[..])
    );
    let r = rejection(JwtStatus::AudienceNotAllowed, "http", &req);
    assert_eq!(r.status(), 403);
    let r = rejection(JwtStatus::Missing, "http", &req);
    assert_eq!(
        r.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&br#"Bearer realm="http://echo:9080/p?q=1""#[..])
    );
}

#[test]
fn background_jwks_fetches_run_five_seconds_before_expiry_as_envoys() {
    use super::jwks::refetch_interval;
    assert_eq!(
        refetch_interval(Duration::from_secs(1200)),
        Duration::from_secs(1195)
    );
    // Not longer than Envoy's margin: every `cache_duration`.
    assert_eq!(
        refetch_interval(Duration::from_secs(2)),
        Duration::from_secs(2)
    );
}
