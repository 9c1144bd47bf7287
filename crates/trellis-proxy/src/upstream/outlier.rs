//! Outlier detection (Envoy's consecutive-error detectors), evaluated inline as results are
//! reported. Ejection state is per endpoint and survives endpoint updates that keep the address.

use tokio::time::Instant;

use crate::config::OutlierDetection;

/// What happened to one request on one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this HTTP status.
    Status(u16),
    /// No connection could be made (local origin).
    ConnectFailure,
    /// The connection or stream broke before the response (local origin).
    Reset,
    /// No response within the (per-try) timeout (local origin).
    Timeout,
    /// A connection was made (local origin success: resets the local-origin counter when split).
    Connected,
}

/// Per-endpoint outlier state.
#[derive(Debug, Default)]
pub(crate) struct HostOutlier {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    ejected_until: Option<Instant>,
    /// Ejections so far, decayed by one per `interval` spent un-ejected.
    num_ejections: u32,
}

/// Which detector fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detector {
    Consecutive5xx,
    ConsecutiveGateway,
    ConsecutiveLocal,
}

impl HostOutlier {
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|t| now < t)
    }

    /// Records `outcome`; returns the detector whose threshold was reached, if any.
    pub(crate) fn record(&mut self, cfg: &OutlierDetection, outcome: Outcome) -> Option<Detector> {
        let split = cfg.split_external_local_origin_errors;
        // Without split, local-origin failures count as a 503 (Envoy maps connect failures,
        // resets and timeouts to gateway errors).
        let status = match outcome {
            Outcome::Status(s) => Some(s),
            Outcome::Connected => {
                if split {
                    self.consecutive_local = 0;
                }
                return None;
            }
            Outcome::ConnectFailure | Outcome::Reset | Outcome::Timeout => {
                if split {
                    self.consecutive_local += 1;
                    return (cfg.consecutive_local_origin_failure > 0
                        && self.consecutive_local >= cfg.consecutive_local_origin_failure)
                        .then_some(Detector::ConsecutiveLocal);
                }
                Some(503)
            }
        }?;
        if !(500..600).contains(&status) {
            self.consecutive_5xx = 0;
            self.consecutive_gateway = 0;
            return None;
        }
        self.consecutive_5xx += 1;
        if matches!(status, 502..=504) {
            self.consecutive_gateway += 1;
        } else {
            self.consecutive_gateway = 0;
        }
        if cfg.consecutive_gateway_failure > 0
            && self.consecutive_gateway >= cfg.consecutive_gateway_failure
            && cfg.enforcing_consecutive_gateway_failure > 0
        {
            return Some(Detector::ConsecutiveGateway);
        }
        if cfg.consecutive_5xx > 0 && self.consecutive_5xx >= cfg.consecutive_5xx {
            return Some(Detector::Consecutive5xx);
        }
        None
    }

    /// Ejects the endpoint: for `base × ejections` (the count decays by one per interval spent
    /// healthy), at most `max(max_ejection_time, base)`. Counters restart.
    pub(crate) fn eject(&mut self, cfg: &OutlierDetection, now: Instant) {
        if let Some(until) = self.ejected_until {
            let healthy_for = now.saturating_duration_since(until);
            let intervals = (healthy_for.as_nanos() / cfg.interval.as_nanos().max(1)) as u32;
            self.num_ejections = self.num_ejections.saturating_sub(intervals);
        }
        self.num_ejections += 1;
        let cap = cfg.max_ejection_time.max(cfg.base_ejection_time);
        let time = cfg
            .base_ejection_time
            .saturating_mul(self.num_ejections)
            .min(cap);
        self.ejected_until = Some(now + time);
        self.reset_counters();
    }

    pub(crate) fn reset_counters(&mut self) {
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
        self.consecutive_local = 0;
    }

    /// When the current ejection ends.
    pub(crate) fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }
}

/// The enforcement percentage of a detector.
pub(crate) fn enforcing(cfg: &OutlierDetection, d: Detector) -> u32 {
    match d {
        Detector::Consecutive5xx => cfg.enforcing_consecutive_5xx,
        Detector::ConsecutiveGateway => cfg.enforcing_consecutive_gateway_failure,
        Detector::ConsecutiveLocal => cfg.enforcing_consecutive_local_origin_failure,
    }
}

/// Envoy's rule: a host may be ejected if none is, or if ejecting it keeps the ejected share
/// within `max_ejection_percent`.
pub(crate) fn may_eject(cfg: &OutlierDetection, ejected: usize, total: usize) -> bool {
    ejected == 0
        || (100 * (ejected + 1)) as f64 / total.max(1) as f64 <= f64::from(cfg.max_ejection_percent)
}
