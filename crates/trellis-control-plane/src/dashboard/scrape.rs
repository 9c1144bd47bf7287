//! The scrape loop: every few seconds, fetch each connected proxy's Prometheus endpoint
//! (`IP:15090/stats/prometheus`, else the admin `IP:15000/stats/prometheus`), turn counter
//! deltas into a [`Tick`] and record it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::graph::{self, Counters, EdgeKey, History, Tick};
use super::prom;
use crate::xds::SyncRegistry;

/// How often proxies are scraped.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Per-request timeout of a scrape.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Largest scrape body read (a proxy's stats are far smaller).
const MAX_BODY: usize = 16 << 20;
/// Ports tried in order: Istio's merged stats port, then the admin port.
const PORTS: [u16; 2] = [15090, 15000];

/// The IP of a proxy from its Istio node id (`TYPE~IP~POD.NS~DOMAIN`).
pub fn node_ip(id: &str) -> Option<std::net::IpAddr> {
    id.split('~').nth(1)?.parse().ok()
}

/// What the loop shares with the HTTP handlers.
#[derive(Debug)]
pub struct Shared {
    /// Recorded rounds.
    pub history: RwLock<History>,
    /// Per proxy id: the last scrape error, for the page.
    pub errors: RwLock<BTreeMap<String, String>>,
}

/// Scrapes until the dashboard (the last strong reference to `shared`) is gone.
pub async fn run(registry: SyncRegistry, shared: Weak<Shared>) {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut previous: HashMap<String, BTreeMap<EdgeKey, Counters>> = HashMap::new();
    let mut last = Instant::now();
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if shared.strong_count() == 0 {
            return;
        }
        let proxies = registry.report(0).proxies;
        let scrapes = proxies.iter().map(|p| scrape(&client, &p.id, &p.service));
        let results = futures::future::join_all(scrapes).await;
        let now = Instant::now();
        let interval = now.duration_since(last).as_secs_f64();
        last = now;
        let mut deltas: BTreeMap<EdgeKey, Counters> = BTreeMap::new();
        let mut errors = BTreeMap::new();
        let mut seen = HashMap::new();
        for (id, result) in proxies.into_iter().map(|p| p.id).zip(results) {
            match result {
                Ok(totals) => {
                    // A proxy's first scrape is a baseline, not traffic of this interval.
                    if let Some(before) = previous.get(&id) {
                        for (key, current) in &totals {
                            let zero = Counters::default();
                            let delta = current.delta(before.get(key).unwrap_or(&zero));
                            deltas.entry(key.clone()).or_default().add(&delta);
                        }
                    }
                    seen.insert(id, totals);
                }
                Err(error) => {
                    if let Some(before) = previous.remove(&id) {
                        seen.insert(id.clone(), before);
                    }
                    errors.insert(id, error);
                }
            }
        }
        previous = seen;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        if let Ok(mut history) = shared.history.write() {
            history.push(Tick {
                at_ms,
                interval,
                edges: deltas,
            });
        }
        if let Ok(mut e) = shared.errors.write() {
            *e = errors;
        }
    }
}

/// Scrapes one proxy (`service`: its canonical service, the caller of its Envoy cluster
/// stats); the per-edge totals, or why it could not be read.
async fn scrape(
    client: &Client<HttpConnector, Empty<Bytes>>,
    id: &str,
    service: &str,
) -> Result<BTreeMap<EdgeKey, Counters>, String> {
    let ip = node_ip(id).ok_or_else(|| format!("no IP in node id {id}"))?;
    let mut last_error = String::new();
    for port in PORTS {
        let url = format!(
            "http://{}/stats/prometheus",
            std::net::SocketAddr::new(ip, port)
        );
        match fetch(client, &url).await {
            Ok(body) => {
                let parsed = prom::parse(&body, graph::wanted);
                return Ok(graph::edge_totals(&parsed.samples, service));
            }
            Err(error) => last_error = format!("{url}: {error}"),
        }
    }
    Err(last_error)
}

async fn fetch(client: &Client<HttpConnector, Empty<Bytes>>, url: &str) -> Result<String, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let response = tokio::time::timeout(TIMEOUT, client.get(uri))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body = tokio::time::timeout(
        TIMEOUT,
        Limited::new(response.into_body(), MAX_BODY).collect(),
    )
    .await
    .map_err(|_| "body timed out".to_string())?
    .map_err(|e| e.to_string())?
    .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Starts the loop on the current runtime (if any) and returns what it fills.
pub fn start(registry: SyncRegistry, capacity: usize) -> Arc<Shared> {
    let shared = Arc::new(Shared {
        history: RwLock::new(History::new(capacity)),
        errors: RwLock::new(BTreeMap::new()),
    });
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(run(registry, Arc::downgrade(&shared)));
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::node_ip;

    #[test]
    fn ip_from_node_id() {
        assert_eq!(
            node_ip("sidecar~127.0.10.2~client.default~default.svc.cluster.local")
                .map(|ip| ip.to_string()),
            Some("127.0.10.2".to_string())
        );
        assert_eq!(node_ip("garbage"), None);
        assert_eq!(node_ip("sidecar~not-an-ip~x~y"), None);
    }
}
