//! Per-proxy sync status: what each connected proxy was sent, what it ACKed, what it NACKed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

/// The status of one resource type on one proxy.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TypeStatus {
    /// The version last sent.
    pub sent: Option<String>,
    /// The version last ACKed.
    pub acked: Option<String>,
    /// The last NACK, if the proxy has not ACKed a newer version since.
    pub nack: Option<NackStatus>,
}

/// A rejected push.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NackStatus {
    /// The version the proxy rejected.
    pub version: String,
    /// The proxy's reason.
    pub error: String,
}

/// What `/debug/syncz` shows for one proxy.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProxyStatus {
    /// The proxy's node id.
    pub id: String,
    /// The workload's canonical service (Istio's label rules): how the dashboard names the
    /// proxy when it reads Envoy's own stats, as Istio's metrics name it.
    pub service: String,
    /// The newest config generation this proxy has been sent.
    pub generation: u64,
    /// True when every subscribed type is ACKed at the version last sent.
    pub synced: bool,
    /// By type URL.
    pub types: BTreeMap<String, TypeStatus>,
}

/// The whole `/debug/syncz` answer.
#[derive(Debug, Clone, Serialize)]
pub struct SynczReport {
    /// The generation the control plane serves now.
    pub generation: u64,
    /// NACKs received since start.
    pub nacks_total: u64,
    /// Connected proxies, by node id.
    pub proxies: Vec<ProxyStatus>,
}

/// Shared registry of connected proxies, written by stream tasks and read by the debug API.
#[derive(Debug, Clone, Default)]
pub struct SyncRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    proxies: Mutex<BTreeMap<u64, ProxyStatus>>,
    nacks_total: AtomicU64,
    metrics: super::metrics::XdsMetrics,
}

impl SyncRegistry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, ProxyStatus>> {
        // A poisoned lock only means a stream task panicked mid-update; the map is still usable.
        self.inner.proxies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records (or replaces) the status of the stream `conn`.
    pub fn update(&self, conn: u64, status: ProxyStatus) {
        self.lock().insert(conn, status);
    }

    /// Forgets a stream that ended.
    pub fn remove(&self, conn: u64) {
        self.lock().remove(&conn);
    }

    /// Counts one NACK.
    pub fn count_nack(&self) {
        self.inner.nacks_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Pushes, NACKs and convergence per type, for `/metrics`.
    pub fn metrics(&self) -> &super::metrics::XdsMetrics {
        &self.inner.metrics
    }

    /// NACKs received since start.
    pub fn nacks_total(&self) -> u64 {
        self.inner.nacks_total.load(Ordering::Relaxed)
    }

    /// A report for `/debug/syncz`, proxies sorted by id.
    pub fn report(&self, generation: u64) -> SynczReport {
        let mut proxies: Vec<ProxyStatus> = self.lock().values().cloned().collect();
        proxies.sort_by(|a, b| a.id.cmp(&b.id));
        SynczReport {
            generation,
            nacks_total: self.nacks_total(),
            proxies,
        }
    }
}
