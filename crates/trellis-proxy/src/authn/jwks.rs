//! Remote JWKS: fetched through the provider's cluster (so its TLS origination, endpoints and
//! load balancing are the cluster's, as in Envoy), cached for `cache_duration`, fetched again
//! when stale. One fetch per URI at a time; every fetch is bounded by `http_uri.timeout`, so a
//! dead JWKS server costs the requests that need it a 401 after the timeout, never a hang.
//!
//! With `async_fetch` (what the control plane emits), the keys are kept fresh as Envoy's
//! `JwksAsyncFetcher` keeps them: after the first fetch a background task fetches them again
//! every `cache_duration` (5 s early when that is longer than 5 s), and after a failure every
//! `failed_refetch_duration`, keeping the old keys meanwhile; requests never wait for it. As in
//! Envoy, a token with an unknown `kid` does not trigger a fetch: it fails until the next one.
//! The task stops once the keys have not been asked for during [`IDLE_STOP`] (the next request
//! then fetches on demand and starts it again), so a provider removed from the config does not
//! keep fetching forever.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

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
/// How much earlier than `cache_duration` the background fetch runs (Envoy's
/// `RefetchBeforeExpiredSec`), when `cache_duration` is longer than this.
const REFETCH_BEFORE_EXPIRY: Duration = Duration::from_secs(5);
/// The shortest wait between background fetches (a zero duration must not spin).
const MIN_REFETCH_WAIT: Duration = Duration::from_millis(100);
/// How long the background refresh runs without any request using the keys.
pub const IDLE_STOP: Duration = Duration::from_secs(3600);

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

#[derive(Debug)]
struct Entry {
    /// The keys and when they were fetched.
    fetched: tokio::sync::Mutex<Option<(Instant, Keys)>>,
    /// The provider's latest settings (the background task reads them on every round).
    remote: Mutex<RemoteJwks>,
    /// When a request last asked for the keys.
    last_used: Mutex<Instant>,
    /// Whether the background refresh runs.
    refreshing: AtomicBool,
}

impl Entry {
    fn remote(&self) -> RemoteJwks {
        self.remote
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }
}

/// Remote JWKS shared by every listener of the proxy, keyed by cluster and URI.
#[derive(Debug, Default)]
pub struct JwksCache {
    entries: Mutex<HashMap<(String, String), Arc<Entry>>>,
    /// The clusters background fetches go through (none: keys are only fetched on demand).
    clusters: Option<Arc<ClusterManager>>,
}

impl JwksCache {
    /// An empty cache that fetches on demand only (`async_fetch` is not run).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache that keeps `async_fetch` providers' keys fresh through `clusters`.
    pub fn with_clusters(clusters: Arc<ClusterManager>) -> Self {
        JwksCache {
            entries: Mutex::default(),
            clusters: Some(clusters),
        }
    }

    /// The keys of `remote`: cached while younger than its `cache_duration` (or while the
    /// background refresh of `async_fetch` runs), else fetched (concurrent callers wait for the
    /// same fetch).
    pub async fn keys(
        &self,
        remote: &RemoteJwks,
        clusters: &ClusterManager,
    ) -> Result<Keys, FetchError> {
        let entry = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries
                .entry((remote.cluster.clone(), remote.uri.clone()))
                .or_insert_with(|| {
                    Arc::new(Entry {
                        fetched: tokio::sync::Mutex::new(None),
                        remote: Mutex::new(remote.clone()),
                        last_used: Mutex::new(Instant::now()),
                        refreshing: AtomicBool::new(false),
                    })
                })
                .clone()
        };
        *entry
            .last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        *entry.remote.lock().unwrap_or_else(PoisonError::into_inner) = remote.clone();
        let mut fetched = entry.fetched.lock().await;
        if let Some((at, keys)) = fetched.as_ref()
            && (at.elapsed() < remote.cache_duration || entry.refreshing.load(Ordering::Acquire))
        {
            return Ok(keys.clone());
        }
        let result = fetch(remote, clusters).await;
        if let Ok(keys) = &result {
            tracing::debug!(uri = %remote.uri, keys = keys.len(), "JWKS fetched");
        }
        let result = result.map(Arc::new);
        if let Ok(keys) = &result {
            *fetched = Some((Instant::now(), keys.clone()));
        }
        drop(fetched);
        self.start_refresh(&entry, result.is_ok());
        result
    }

    /// Starts the background refresh of `entry` if its provider asks for `async_fetch` and
    /// none runs; the first round waits as long as after a fetch that `succeeded` (or not).
    fn start_refresh(&self, entry: &Arc<Entry>, succeeded: bool) {
        let Some(clusters) = self.clusters.clone() else {
            return;
        };
        if entry.remote().async_fetch.is_none() || entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(entry);
        tokio::spawn(refresh(weak, clusters, succeeded));
    }
}

/// The background refresh of one entry (see the module doc).
async fn refresh(entry: Weak<Entry>, clusters: Arc<ClusterManager>, mut succeeded: bool) {
    loop {
        let Some(remote) = entry.upgrade().map(|e| e.remote()) else {
            return;
        };
        let Some(settings) = remote.async_fetch.clone() else {
            if let Some(e) = entry.upgrade() {
                e.refreshing.store(false, Ordering::Release);
            }
            return;
        };
        let wait = if succeeded {
            refetch_interval(remote.cache_duration)
        } else {
            settings.failed_refetch
        }
        .max(MIN_REFETCH_WAIT);
        tokio::time::sleep(wait).await;
        let Some(e) = entry.upgrade() else {
            return;
        };
        if e.idle_for() > IDLE_STOP.max(remote.cache_duration) {
            tracing::debug!(uri = %remote.uri, "JWKS unused: background refresh stops");
            e.refreshing.store(false, Ordering::Release);
            return;
        }
        let remote = e.remote();
        match fetch(&remote, &clusters).await {
            Ok(keys) => {
                tracing::debug!(uri = %remote.uri, keys = keys.len(), "JWKS refreshed");
                *e.fetched.lock().await = Some((Instant::now(), Arc::new(keys)));
                succeeded = true;
            }
            Err(error) => {
                tracing::warn!(%error, "JWKS refresh failed; keeping the previous keys");
                succeeded = false;
            }
        }
    }
}

/// How long after a successful fetch the next one runs: Envoy's `cache_duration` less 5 s
/// when it is longer than that, so keys are replaced before they would expire.
pub fn refetch_interval(cache_duration: Duration) -> Duration {
    if cache_duration > REFETCH_BEFORE_EXPIRY {
        cache_duration - REFETCH_BEFORE_EXPIRY
    } else {
        cache_duration
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
