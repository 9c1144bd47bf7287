//! Circuit breakers: per-cluster counters checked against the cluster's thresholds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::Notify;

/// The resource counters of a cluster's circuit breakers. They live with the connection pool
/// (connections outlive a config update that keeps the pool).
#[derive(Debug, Default)]
pub struct Counters {
    /// Open (or opening) connections.
    pub(crate) connections: AtomicU32,
    /// Requests waiting for a connection.
    pub(crate) pending: AtomicU32,
    /// Requests attached to a connection, until their response ends.
    pub(crate) requests: AtomicU32,
    /// Retries in flight.
    pub(crate) retries: AtomicU32,
    /// Woken when a connection is released or closes.
    pub(crate) released: Notify,
}

/// Which circuit breaker overflowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `max_connections`.
    Connections,
    /// `max_pending_requests`.
    PendingRequests,
    /// `max_requests`.
    Requests,
    /// `max_retries`.
    Retries,
}

impl Resource {
    /// The threshold's field name.
    pub fn field(self) -> &'static str {
        match self {
            Resource::Connections => "max_connections",
            Resource::PendingRequests => "max_pending_requests",
            Resource::Requests => "max_requests",
            Resource::Retries => "max_retries",
        }
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.field())
    }
}

/// Holds one unit of a resource until dropped.
#[derive(Debug)]
pub struct ResourceGuard {
    counters: Arc<Counters>,
    resource: Resource,
}

impl Counters {
    fn counter(&self, r: Resource) -> &AtomicU32 {
        match r {
            Resource::Connections => &self.connections,
            Resource::PendingRequests => &self.pending,
            Resource::Requests => &self.requests,
            Resource::Retries => &self.retries,
        }
    }

    /// Takes one unit of `resource` if fewer than `max` are in use.
    pub(crate) fn try_acquire(
        self: &Arc<Self>,
        resource: Resource,
        max: u32,
    ) -> Option<ResourceGuard> {
        let c = self.counter(resource);
        c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()?;
        Some(ResourceGuard {
            counters: self.clone(),
            resource,
        })
    }

    /// Whether one more unit of `resource` would stay within `max`.
    pub(crate) fn can_create(&self, resource: Resource, max: u32) -> bool {
        self.counter(resource).load(Ordering::Acquire) < max
    }

    /// Units of `resource` in use.
    pub fn in_use(&self, resource: Resource) -> u32 {
        self.counter(resource).load(Ordering::Acquire)
    }
}

impl Drop for ResourceGuard {
    fn drop(&mut self) {
        self.counters
            .counter(self.resource)
            .fetch_sub(1, Ordering::AcqRel);
        if self.resource == Resource::Connections {
            self.counters.released.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_overflows_at_its_threshold_and_frees_on_drop() {
        let c = Arc::new(Counters::default());
        let a = c.try_acquire(Resource::Retries, 2).expect("first");
        let _b = c.try_acquire(Resource::Retries, 2).expect("second");
        assert!(c.try_acquire(Resource::Retries, 2).is_none());
        assert!(!c.can_create(Resource::Retries, 2));
        drop(a);
        assert_eq!(c.in_use(Resource::Retries), 1);
        assert!(c.try_acquire(Resource::Retries, 2).is_some());
        assert!(c.try_acquire(Resource::Requests, 0).is_none());
    }
}
