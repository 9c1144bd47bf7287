//! Envoy's retry decisions (`retry_on`) and its default back-off between attempts.

use std::time::Duration;

use http::HeaderMap;
use rand::Rng;

use crate::config::{RetryOn, RetryPolicy};

/// How one attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy)]
pub enum AttemptResult<'a> {
    /// The upstream answered (headers received).
    Response {
        /// The status.
        status: u16,
        /// The response headers (`grpc-status` of trailers-only responses, `x-envoy-ratelimited`).
        headers: &'a HeaderMap,
    },
    /// No connection could be made.
    ConnectFailure,
    /// The connection or stream broke before a response; `refused` for HTTP/2 REFUSED_STREAM.
    Reset {
        /// The upstream refused the stream.
        refused: bool,
    },
    /// The per-try timeout fired.
    PerTryTimeout,
}

/// Whether `policy` retries an attempt that ended with `result` (retry budget aside).
pub fn is_retriable(policy: &RetryPolicy, result: AttemptResult<'_>) -> bool {
    policy
        .retry_on
        .iter()
        .any(|on| matches(*on, policy, result))
}

fn matches(on: RetryOn, policy: &RetryPolicy, result: AttemptResult<'_>) -> bool {
    use AttemptResult as R;
    match (on, result) {
        (RetryOn::FiveXx, R::Response { status, .. }) => status >= 500,
        (RetryOn::GatewayError, R::Response { status, .. }) => matches!(status, 502..=504),
        (RetryOn::Retriable4xx, R::Response { status, .. }) => status == 409,
        (RetryOn::RetriableStatusCodes, R::Response { status, .. }) => {
            policy.retriable_status_codes.contains(&status)
        }
        (RetryOn::EnvoyRatelimited, R::Response { headers, .. }) => {
            headers.contains_key("x-envoy-ratelimited")
        }
        (RetryOn::Cancelled, R::Response { headers, .. }) => grpc_status(headers) == Some(1),
        (RetryOn::DeadlineExceeded, R::Response { headers, .. }) => grpc_status(headers) == Some(4),
        (RetryOn::ResourceExhausted, R::Response { headers, .. }) => {
            grpc_status(headers) == Some(8)
        }
        (RetryOn::Internal, R::Response { headers, .. }) => grpc_status(headers) == Some(13),
        (RetryOn::Unavailable, R::Response { headers, .. }) => grpc_status(headers) == Some(14),
        // 5xx and gateway-error include every failure to get a response.
        (
            RetryOn::FiveXx | RetryOn::GatewayError,
            R::ConnectFailure | R::Reset { .. } | R::PerTryTimeout,
        ) => true,
        (RetryOn::Reset, R::Reset { .. } | R::ConnectFailure | R::PerTryTimeout) => true,
        (RetryOn::ConnectFailure | RetryOn::ResetBeforeRequest, R::ConnectFailure) => true,
        (RetryOn::RefusedStream, R::Reset { refused }) => refused,
        _ => false,
    }
}

/// The `grpc-status` of a trailers-only gRPC response.
pub fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Envoy's default back-off before retry `n` (1-based): fully jittered exponential, base 25 ms,
/// capped at 250 ms.
pub fn backoff<R: Rng + ?Sized>(n: u32, rng: &mut R) -> Duration {
    const BASE_MS: u64 = 25;
    const MAX_MS: u64 = 250;
    let ceiling = BASE_MS
        .saturating_mul((1u64 << n.min(10)).saturating_sub(1))
        .clamp(1, MAX_MS);
    Duration::from_millis(rng.random_range(0..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy(on: &[RetryOn]) -> RetryPolicy {
        RetryPolicy {
            retry_on: on.to_vec(),
            num_retries: 2,
            per_try_timeout: None,
            retriable_status_codes: vec![418],
            previous_hosts: false,
            host_selection_max_attempts: 1,
        }
    }

    #[test]
    fn retry_on_conditions_follow_envoy() {
        let h = HeaderMap::new();
        let resp = |status| AttemptResult::Response {
            status,
            headers: &h,
        };
        let p = policy(&[RetryOn::GatewayError]);
        assert!(is_retriable(&p, resp(503)));
        assert!(!is_retriable(&p, resp(500)));
        assert!(is_retriable(&p, AttemptResult::ConnectFailure));
        assert!(is_retriable(&p, AttemptResult::PerTryTimeout));
        let p = policy(&[RetryOn::ConnectFailure, RetryOn::RefusedStream]);
        assert!(is_retriable(&p, AttemptResult::ConnectFailure));
        assert!(!is_retriable(&p, AttemptResult::Reset { refused: false }));
        assert!(is_retriable(&p, AttemptResult::Reset { refused: true }));
        assert!(!is_retriable(&p, resp(503)));
        let p = policy(&[RetryOn::RetriableStatusCodes, RetryOn::Retriable4xx]);
        assert!(is_retriable(&p, resp(418)));
        assert!(is_retriable(&p, resp(409)));
        assert!(!is_retriable(&p, resp(404)));
        let mut g = HeaderMap::new();
        g.insert("grpc-status", HeaderValue::from_static("14"));
        let p = policy(&[RetryOn::Unavailable]);
        assert!(is_retriable(
            &p,
            AttemptResult::Response {
                status: 200,
                headers: &g
            }
        ));
        assert!(!is_retriable(
            &policy(&[RetryOn::Cancelled]),
            AttemptResult::Response {
                status: 200,
                headers: &g
            }
        ));
    }

    #[test]
    fn backoff_is_bounded() {
        let mut rng = rand::rng();
        for n in 1..20 {
            assert!(backoff(n, &mut rng) <= Duration::from_millis(250));
        }
    }
}
