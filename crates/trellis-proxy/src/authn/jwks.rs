//! Remote JWKS: fetched through the provider's cluster (so its TLS origination, endpoints and
//! load balancing are the cluster's, as in Envoy), cached for `cache_duration`, fetched again
//! when stale. One fetch per URI at a time; every fetch is bounded by `http_uri.timeout`, so a
//! dead JWKS server costs the requests that need it a 401 after the timeout, never a hang.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use jsonwebtoken::jwk::Jwk;
use tokio::time::Instant;

use super::token::parse_jwks;
use crate::config::RemoteJwks;
use crate::upstream::ClusterManager;

/// The largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Why a remote JWKS could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URI cannot be requested.
    #[error("JWKS URI {0:?} is not an absolute http(s) URL")]
    BadUri(String),
    /// The cluster is unknown.
    #[error("JWKS cluster {0} is not configured")]
    NoCluster(String),
    /// The cluster has no healthy endpoint.
    #[error("JWKS cluster {0} has no healthy endpoint")]
    NoEndpoint(String),
    /// The request failed.
    #[error("fetching JWKS from {uri}: {detail}")]
    Request {
        /// The URI.
        uri: String,
        /// What happened.
        detail: String,
    },
    /// No answer within the timeout.
    #[error("fetching JWKS from {0}: timed out")]
    Timeout(String),
    /// The answer is not a JWKS with a usable key.
    #[error("the document at {0} is not a JWKS with a usable key")]
    NotJwks(String),
}

type Keys = Arc<Vec<Jwk>>;

#[derive(Debug, Default)]
struct Entry {
    /// The keys and when they were fetched.
    fetched: tokio::sync::Mutex<Option<(Instant, Keys)>>,
}

/// Remote JWKS shared by every listener of the proxy, keyed by cluster and URI.
#[derive(Debug, Default)]
pub struct JwksCache {
    entries: Mutex<HashMap<(String, String), Arc<Entry>>>,
}

impl JwksCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys of `remote`: cached while younger than its `cache_duration`, else fetched
    /// (concurrent callers wait for the same fetch).
    pub async fn keys(
        &self,
        remote: &RemoteJwks,
        clusters: &ClusterManager,
    ) -> Result<Keys, FetchError> {
        let entry = {
            let mut entries = self
                .entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            entries
                .entry((remote.cluster.clone(), remote.uri.clone()))
                .or_default()
                .clone()
        };
        let mut fetched = entry.fetched.lock().await;
        if let Some((at, keys)) = fetched.as_ref()
            && at.elapsed() < remote.cache_duration
        {
            return Ok(keys.clone());
        }
        let keys = Arc::new(fetch(remote, clusters).await?);
        tracing::debug!(uri = %remote.uri, keys = keys.len(), "JWKS fetched");
        *fetched = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }
}

async fn fetch(remote: &RemoteJwks, clusters: &ClusterManager) -> Result<Vec<Jwk>, FetchError> {
    let uri: http::Uri = remote
        .uri
        .parse()
        .map_err(|_| FetchError::BadUri(remote.uri.clone()))?;
    let authority = uri
        .authority()
        .ok_or_else(|| FetchError::BadUri(remote.uri.clone()))?
        .to_string();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let cluster = clusters
        .get(&remote.cluster)
        .ok_or_else(|| FetchError::NoCluster(remote.cluster.clone()))?;
    let endpoint = cluster
        .pick()
        .ok_or_else(|| FetchError::NoEndpoint(remote.cluster.clone()))?;
    let request = Request::get(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Request {
            uri: remote.uri.clone(),
            detail: e.to_string(),
        })?;
    let request_failed = |detail: String| FetchError::Request {
        uri: remote.uri.clone(),
        detail,
    };
    let exchange = async {
        let response = cluster
            .send(endpoint, request, &authority)
            .await
            .map_err(|e| request_failed(e.to_string()))?;
        if response.status() != http::StatusCode::OK {
            return Err(request_failed(format!("status {}", response.status())));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| request_failed(e.to_string()))?
            .to_bytes();
        Ok(body)
    };
    let body = tokio::time::timeout(remote.timeout, exchange)
        .await
        .map_err(|_| FetchError::Timeout(remote.uri.clone()))??;
    let text = String::from_utf8_lossy(&body);
    parse_jwks(&text).ok_or_else(|| FetchError::NotJwks(remote.uri.clone()))
}
