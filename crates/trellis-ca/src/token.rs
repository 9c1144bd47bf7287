//! Workload tokens: in universal mode there is no Kubernetes to vouch for a workload, so an
//! operator mints a signed token that binds a namespace and service account
//! (`trellis token create`), and the CA only signs certificates for that identity. Tokens are
//! ES256 JWTs signed by a key kept beside the CA's.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::KeyPair;
use serde::{Deserialize, Serialize};

use crate::identity::SpiffeId;

/// The file holding the token-signing key, in the CA directory.
pub const TOKEN_KEY: &str = "token-key.pem";
const ISSUER: &str = "trellis";
const AUDIENCE: &str = "trellis-ca";

/// Why a token could not be made or was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or writing the signing key failed.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The signing key is unusable.
    #[error("token signing key: {0}")]
    Key(String),
    /// The token is malformed, forged, expired, or for another audience.
    #[error("invalid workload token: {0}")]
    Invalid(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: u64,
    exp: u64,
}

/// Mints and verifies workload tokens.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenIssuer")
    }
}

impl TokenIssuer {
    /// Loads the signing key from `dir`, creating it on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, TokenError> {
        let path = dir.join(TOKEN_KEY);
        let io = |source| TokenError::Io {
            path: path.clone(),
            source,
        };
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyPair::generate().map_err(|e| TokenError::Key(e.to_string()))?;
                let pem = key.serialize_pem();
                std::fs::create_dir_all(dir).map_err(io)?;
                crate::files::write_private(&path, &pem).map_err(io)?;
                pem
            }
            Err(e) => return Err(io(e)),
        };
        let key = KeyPair::from_pem(&pem).map_err(|e| TokenError::Key(e.to_string()))?;
        let encoding =
            EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| TokenError::Key(e.to_string()))?;
        let decoding = DecodingKey::from_ec_pem(key.public_key_pem().as_bytes())
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(TokenIssuer { encoding, decoding })
    }

    /// A token for `identity`, valid for `ttl`.
    pub fn mint(&self, identity: &SpiffeId, ttl: Duration) -> Result<String, TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: identity.to_string(),
            iat: now,
            exp: now + ttl.as_secs().max(1),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.encoding)
            .map_err(|e| TokenError::Key(e.to_string()))
    }

    /// The identity a token vouches for, if it is genuine, current, and meant for the CA.
    pub fn verify(&self, token: &str) -> Result<SpiffeId, TokenError> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        SpiffeId::parse(&data.claims.sub).map_err(|e| TokenError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_others_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = TokenIssuer::load_or_create(dir.path()).expect("issuer");
        let id = SpiffeId::new("cluster.local", "default", "reviews");
        let token = issuer.mint(&id, Duration::from_secs(60)).expect("mint");
        assert_eq!(issuer.verify(&token).expect("valid"), id);

        // The same key after a restart still verifies it.
        let again = TokenIssuer::load_or_create(dir.path()).expect("reload");
        assert_eq!(again.verify(&token).expect("valid"), id);

        // A token from another issuer's key is refused.
        let other_dir = tempfile::tempdir().expect("tempdir");
        let other = TokenIssuer::load_or_create(other_dir.path()).expect("issuer");
        let forged = other.mint(&id, Duration::from_secs(60)).expect("mint");
        assert!(
            matches!(issuer.verify(&forged), Err(TokenError::Invalid(m)) if m.contains("InvalidSignature"))
        );

        // Tampering with the claims breaks the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let evil =
            jsonwebtoken::crypto::sign(b"x", &issuer.encoding, Algorithm::ES256).expect("sign");
        parts[2] = &evil;
        assert!(issuer.verify(&parts.join(".")).is_err());
        assert!(matches!(
            issuer.verify("not.a.token"),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = TokenIssuer::load_or_create(dir.path()).expect("issuer");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "spiffe://cluster.local/ns/default/sa/reviews".into(),
            iat: now - 120,
            exp: now - 60,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &issuer.encoding)
            .expect("encode");
        let err = issuer.verify(&token).expect_err("expired");
        assert!(err.to_string().contains("ExpiredSignature"), "{err}");
    }
}
