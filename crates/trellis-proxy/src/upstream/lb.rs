//! Endpoint selection as Envoy does it: priority levels with overprovisioning (1.4) and
//! healthy-panic, optional locality weights, then the cluster's policy over the chosen hosts
//! (weighted round robin, random, least request, ring hash, Maglev), with slow start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;
use tokio::time::Instant;

use super::UpstreamEndpoint;
use super::hash::Table;
use crate::config::{Cluster, LbPolicy, Locality, SlowStart};

/// Envoy's default overprovisioning factor, in percent.
const OVERPROVISIONING: u64 = 140;

/// A priority level's hosts: all of them, and the healthy ones.
type Level<'a> = (
    Vec<&'a Arc<UpstreamEndpoint>>,
    Vec<&'a Arc<UpstreamEndpoint>>,
);

/// The hosts of the priority level a request goes to, and whether that level is in panic.
#[derive(Debug)]
pub(super) struct Chosen<'a> {
    pub(super) hosts: Vec<&'a Arc<UpstreamEndpoint>>,
    #[allow(dead_code)] // kept for debugging output
    pub(super) panic: bool,
}

/// Picks the priority level (by `percent`, in [0, 100)) and returns its usable hosts: the
/// healthy ones, or all of them when the level is in panic.
pub(super) fn choose_priority<'a>(
    cluster: &Cluster,
    hosts: &'a [Arc<UpstreamEndpoint>],
    now: Instant,
    percent: u64,
) -> Chosen<'a> {
    let mut levels: BTreeMap<u32, Level<'a>> = BTreeMap::new();
    for h in hosts {
        let level = levels.entry(h.priority).or_default();
        level.0.push(h);
        if h.is_healthy(now) {
            level.1.push(h);
        }
    }
    if levels.is_empty() {
        return Chosen {
            hosts: Vec::new(),
            panic: false,
        };
    }
    let health: Vec<u64> = levels
        .values()
        .map(|(all, healthy)| (OVERPROVISIONING * healthy.len() as u64 / all.len() as u64).min(100))
        .collect();
    let sum: u64 = health.iter().sum();
    let total_availability = sum.min(100);
    let threshold = cluster.healthy_panic_threshold;
    let mut levels: Vec<_> = levels.into_values().collect();
    if total_availability == 0 {
        // Nothing healthy anywhere: with panic enabled, everything goes to the first level.
        let (all, _) = levels.swap_remove(0);
        return if threshold > 0.0 {
            Chosen {
                hosts: all,
                panic: true,
            }
        } else {
            Chosen {
                hosts: Vec::new(),
                panic: false,
            }
        };
    }
    // Per-priority load: in order, each level takes its health (normalized to 100 when the
    // levels' health sums to less).
    let mut loads = Vec::with_capacity(health.len());
    let mut remaining = 100u64;
    for h in &health {
        let l = if sum < 100 { h * 100 / sum } else { *h }.min(remaining);
        loads.push(l);
        remaining -= l;
    }
    if remaining > 0
        && let Some(first) = loads.iter_mut().find(|l| **l > 0)
    {
        *first += remaining;
    }
    let mut acc = 0;
    let mut index = loads.len() - 1;
    for (i, l) in loads.iter().enumerate() {
        acc += l;
        if percent < acc {
            index = i;
            break;
        }
    }
    let (all, healthy) = levels.swap_remove(index);
    let healthy_percent = 100.0 * healthy.len() as f64 / all.len() as f64;
    let panic = total_availability < 100 && healthy_percent < threshold;
    if panic || healthy.is_empty() {
        Chosen {
            hosts: all,
            panic: true,
        }
    } else {
        Chosen {
            hosts: healthy,
            panic: false,
        }
    }
}

/// Locality-weighted choice: a locality's effective weight is its weight times its
/// availability (healthy share × 1.4, at most 1). Hosts without a locality weight are never
/// picked, unless no locality has one.
pub(super) fn choose_locality<'a, R: Rng + ?Sized>(
    hosts: Vec<&'a Arc<UpstreamEndpoint>>,
    now: Instant,
    rng: &mut R,
) -> Vec<&'a Arc<UpstreamEndpoint>> {
    let mut by_locality: BTreeMap<&Locality, (u32, Vec<&'a Arc<UpstreamEndpoint>>, usize)> =
        BTreeMap::new();
    for h in &hosts {
        let e = by_locality.entry(&h.locality).or_insert((
            h.locality_weight.unwrap_or(0),
            Vec::new(),
            0,
        ));
        e.1.push(h);
        if h.is_healthy(now) {
            e.2 += 1;
        }
    }
    let weights: Vec<f64> = by_locality
        .values()
        .map(|(w, hs, healthy)| {
            let availability = (1.4 * *healthy as f64 / hs.len() as f64).min(1.0);
            // In panic every host counts.
            let availability = if *healthy == 0 { 1.0 } else { availability };
            f64::from(*w) * availability
        })
        .collect();
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return hosts;
    }
    let mut x = rng.random::<f64>() * total;
    let mut groups: Vec<_> = by_locality.into_values().map(|(_, hs, _)| hs).collect();
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return groups.swap_remove(i);
        }
        x -= w;
    }
    groups.pop().unwrap_or_default()
}

/// The slow-start factor of a host: `max(min_weight, (age / window)^(1 / aggression))` while
/// younger than the window, else 1.
pub(super) fn slow_start_factor(ss: &SlowStart, age: std::time::Duration) -> f64 {
    if age >= ss.window {
        return 1.0;
    }
    let t = (age.as_secs_f64().max(0.001) / ss.window.as_secs_f64()).min(1.0);
    t.powf(1.0 / ss.aggression)
        .max(ss.min_weight_percent / 100.0)
}

/// Picks among `hosts` (non-empty) by the cluster's policy.
pub(super) fn pick_host<'a, R: Rng + ?Sized>(
    cluster: &Cluster,
    hosts: &[&'a Arc<UpstreamEndpoint>],
    rr: &AtomicUsize,
    hash: Option<u64>,
    table: impl FnOnce(&[&Arc<UpstreamEndpoint>]) -> Arc<Table>,
    now: Instant,
    rng: &mut R,
) -> Option<&'a Arc<UpstreamEndpoint>> {
    let n = hosts.len();
    if n == 0 {
        return None;
    }
    let weight = |h: &UpstreamEndpoint| -> f64 {
        let w = f64::from(h.weight);
        match &cluster.slow_start {
            Some(ss) => w * slow_start_factor(ss, now.saturating_duration_since(h.state.created)),
            None => w,
        }
    };
    let in_slow_start = cluster.slow_start.as_ref().is_some_and(|ss| {
        hosts
            .iter()
            .any(|h| now.saturating_duration_since(h.state.created) < ss.window)
    });
    let equal_weights = hosts.iter().all(|h| h.weight == hosts[0].weight);
    match cluster.lb_policy {
        LbPolicy::RoundRobin => {
            if in_slow_start {
                weighted_random(hosts, weight, rng)
            } else if equal_weights {
                Some(hosts[rr.fetch_add(1, Ordering::Relaxed) % n])
            } else {
                let total: u64 = hosts.iter().map(|h| u64::from(h.weight)).sum();
                let mut x = rr.fetch_add(1, Ordering::Relaxed) as u64 % total;
                hosts
                    .iter()
                    .find(|h| {
                        if x < u64::from(h.weight) {
                            true
                        } else {
                            x -= u64::from(h.weight);
                            false
                        }
                    })
                    .copied()
            }
        }
        // Envoy's random balancer ignores endpoint weights.
        LbPolicy::Random => Some(hosts[rng.random_range(0..n)]),
        // ORIGINAL_DST clusters pick their host themselves (see `UpstreamCluster::pick_with`).
        LbPolicy::ClusterProvided => Some(hosts[0]),
        LbPolicy::LeastRequest => {
            if equal_weights && !in_slow_start {
                let a = hosts[rng.random_range(0..n)];
                let b = hosts[rng.random_range(0..n)];
                Some(if b.active_requests() < a.active_requests() {
                    b
                } else {
                    a
                })
            } else {
                weighted_random(
                    hosts,
                    |h| weight(h) / (h.active_requests() as f64 + 1.0),
                    rng,
                )
            }
        }
        LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. } => match hash {
            Some(hash) => table(hosts)
                .lookup(hash)
                .and_then(|i| hosts.get(i).copied()),
            None => Some(hosts[rng.random_range(0..n)]),
        },
    }
}

fn weighted_random<'a, R: Rng + ?Sized>(
    hosts: &[&'a Arc<UpstreamEndpoint>],
    weight: impl Fn(&UpstreamEndpoint) -> f64,
    rng: &mut R,
) -> Option<&'a Arc<UpstreamEndpoint>> {
    let weights: Vec<f64> = hosts.iter().map(|h| weight(h)).collect();
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return hosts.first().copied();
    }
    let mut x = rng.random::<f64>() * total;
    for (h, w) in hosts.iter().zip(&weights) {
        if x < *w {
            return Some(h);
        }
        x -= w;
    }
    hosts.last().copied()
}

#[cfg(test)]
mod tests;
