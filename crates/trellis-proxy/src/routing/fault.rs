//! Fault injection (`envoy.filters.http.fault` per route): which faults a request gets.

use std::time::Duration;

use rand::Rng;

use crate::config::{AbortKind, FaultPolicy};

/// The faults drawn for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Injected {
    /// Delay the request by this much (`DI`).
    pub delay: Option<Duration>,
    /// Answer with this instead of forwarding (`FI`).
    pub abort: Option<AbortKind>,
}

/// Draws the delay and the abort independently by their percentages, as Envoy does.
pub fn draw<R: Rng + ?Sized>(policy: &FaultPolicy, rng: &mut R) -> Injected {
    Injected {
        delay: policy
            .delay
            .as_ref()
            .filter(|d| d.percentage.sample(rng))
            .map(|d| d.duration),
        abort: policy
            .abort
            .as_ref()
            .filter(|a| a.percentage.sample(rng))
            .map(|a| a.kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FaultAbort, FaultDelay, Fraction};
    use rand::SeedableRng;

    #[test]
    fn percentages_are_sampled() {
        let policy = FaultPolicy {
            delay: Some(FaultDelay {
                duration: Duration::from_millis(5),
                percentage: Fraction::ALL,
            }),
            abort: Some(FaultAbort {
                kind: AbortKind::HttpStatus(503),
                percentage: Fraction {
                    numerator: 2_500,
                    denominator: 10_000,
                },
            }),
        };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let mut aborted = 0;
        for _ in 0..4000 {
            let i = draw(&policy, &mut rng);
            assert_eq!(i.delay, Some(Duration::from_millis(5)));
            aborted += usize::from(i.abort.is_some());
        }
        assert!((800..=1200).contains(&aborted), "{aborted}");
        let none = FaultPolicy {
            delay: None,
            abort: Some(FaultAbort {
                kind: AbortKind::GrpcStatus(14),
                percentage: Fraction {
                    numerator: 0,
                    denominator: 100,
                },
            }),
        };
        assert_eq!(draw(&none, &mut rng), Injected::default());
    }
}
