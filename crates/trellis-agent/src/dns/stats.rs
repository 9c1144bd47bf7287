//! What the DNS proxy counts: `trellis_dns_requests_total{outcome}`, one per query, with
//! `outcome` one of `local` (answered from the name table), `forwarded` (an upstream resolver
//! answered), `failed` (no upstream answered: SERVFAIL) and `malformed` (not a DNS query:
//! FORMERR, or dropped when not even the header was there). One set per process: the proxy
//! registers it with its own metrics, the agent serves it on its health port.

use std::sync::OnceLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// How a query ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Answered from the name table.
    local,
    /// An upstream resolver's answer was relayed.
    forwarded,
    /// No upstream resolver answered: SERVFAIL.
    failed,
    /// Not a DNS query: FORMERR, or dropped.
    malformed,
}

/// Labels of `trellis_dns_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsLabels {
    /// How the query ended.
    pub outcome: Outcome,
}

/// The DNS proxy's counters.
#[derive(Debug, Default, Clone)]
pub struct DnsStats {
    requests: Family<DnsLabels, Counter>,
}

impl DnsStats {
    /// Adds the counters to `registry` (as `trellis_dns_requests_total`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "trellis_dns_requests",
            "DNS queries the DNS proxy received, by outcome",
            self.requests.clone(),
        );
    }

    /// Counts one query.
    pub fn count(&self, outcome: Outcome) {
        self.requests.get_or_create(&DnsLabels { outcome }).inc();
    }

    /// The count of one outcome.
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.requests.get_or_create(&DnsLabels { outcome }).get()
    }

    /// The counters alone in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// This process's DNS counters.
pub fn stats() -> &'static DnsStats {
    static STATS: OnceLock<DnsStats> = OnceLock::new();
    STATS.get_or_init(DnsStats::default)
}
