//! Consistent hashing: the request hash computed from a route's hash policies, and the ring-hash
//! and Maglev tables that map a hash to an endpoint.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderValue;

use crate::config::HashPolicy;

/// A 64-bit hash (FNV-1a with a MurmurHash3 finalizer): stable across processes and runs.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// What a request offers to hash policies.
#[derive(Debug, Clone, Copy)]
pub struct HashRequest<'a> {
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The path with its query (`/p?a=b`).
    pub path_and_query: &'a str,
    /// The downstream peer's address.
    pub remote: Option<SocketAddr>,
}

/// The request's hash, and a cookie to set on the response when a cookie policy generated one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestHash {
    /// `None`: no policy produced a hash (the load balancer picks at random).
    pub hash: Option<u64>,
    /// `set-cookie` value to add to the response (Envoy: cookie policies with a `ttl`).
    pub set_cookie: Option<HeaderValue>,
}

/// Computes the hash of a request from the route's hash policies, as Envoy does: each policy
/// that yields a value is combined as `hash = rotl(hash, 1) ^ value`. A cookie policy with a
/// `ttl` whose cookie is absent generates one (hex of the hash of the downstream address) and
/// hashes it.
pub fn request_hash(policies: &[HashPolicy], req: &HashRequest<'_>) -> RequestHash {
    let mut out = RequestHash::default();
    for p in policies {
        let value = match p {
            HashPolicy::Header { name } => {
                let values: Vec<&[u8]> = req
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .map(HeaderValue::as_bytes)
                    .collect();
                if values.is_empty() {
                    None
                } else {
                    // Envoy hashes multiple values sorted and joined.
                    let mut v = values;
                    v.sort();
                    Some(hash64(&v.join(&b","[..])))
                }
            }
            HashPolicy::Cookie { name, ttl, path } => match cookie(req.headers, name) {
                Some(v) => Some(hash64(v.as_bytes())),
                None => match ttl {
                    Some(ttl) => {
                        let seed = req.remote.map(|a| a.to_string()).unwrap_or_default();
                        let value = format!("{:016x}", hash64(seed.as_bytes()));
                        out.set_cookie = set_cookie(name, &value, path.as_deref(), *ttl);
                        Some(hash64(value.as_bytes()))
                    }
                    None => None,
                },
            },
            HashPolicy::SourceIp => req.remote.map(|a| match a.ip() {
                IpAddr::V4(ip) => hash64(ip.to_string().as_bytes()),
                IpAddr::V6(ip) => hash64(ip.to_string().as_bytes()),
            }),
            HashPolicy::QueryParameter { name } => {
                query_param(req.path_and_query, name).map(|v| hash64(v.as_bytes()))
            }
        };
        if let Some(v) = value {
            out.hash = Some(match out.hash {
                Some(h) => h.rotate_left(1) ^ v,
                None => v,
            });
        }
    }
    out
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

fn query_param<'a>(path_and_query: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path_and_query.split_once('?')?;
    query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, path: Option<&str>, ttl: Duration) -> Option<HeaderValue> {
    let mut s = format!("{name}=\"{value}\"");
    if !ttl.is_zero() {
        s.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(p) = path {
        s.push_str(&format!("; Path={p}"));
    }
    s.push_str("; HttpOnly");
    HeaderValue::from_str(&s).ok()
}

/// A consistent-hash lookup table over a list of endpoints (indices into that list).
#[derive(Debug)]
pub(crate) enum Table {
    /// Sorted `(hash, endpoint index)` points.
    Ring(Vec<(u64, usize)>),
    /// Maglev's lookup table.
    Maglev(Vec<usize>),
}

impl Table {
    /// Ketama ring as Envoy builds it: each endpoint gets a number of points proportional to
    /// its normalized weight, scaled so the lightest gets at least `min / total` of the ring.
    pub(crate) fn ring(endpoints: &[(SocketAddr, u32)], min: u64, max: u64) -> Table {
        let total: f64 = endpoints.iter().map(|(_, w)| f64::from(*w)).sum();
        if endpoints.is_empty() || total <= 0.0 {
            return Table::Ring(Vec::new());
        }
        let min_norm = endpoints
            .iter()
            .map(|(_, w)| f64::from(*w) / total)
            .fold(f64::INFINITY, f64::min);
        let scale = ((min_norm * min as f64).ceil() / min_norm).min(max as f64);
        let mut points = Vec::with_capacity(scale as usize + endpoints.len());
        let mut current = 0.0;
        let mut target = 0.0;
        for (i, (addr, w)) in endpoints.iter().enumerate() {
            target += f64::from(*w) / total * scale;
            let key = addr.to_string();
            let mut n = 0u64;
            while current < target {
                points.push((hash64(format!("{key}_{n}").as_bytes()), i));
                n += 1;
                current += 1.0;
            }
        }
        points.sort_unstable();
        Table::Ring(points)
    }

    /// Maglev (weighted as Envoy does: an endpoint takes its turn in a round only when its
    /// weight, relative to the largest, has accrued a whole entry).
    pub(crate) fn maglev(endpoints: &[(SocketAddr, u32)], size: u64) -> Table {
        let m = size as usize;
        if endpoints.is_empty() {
            return Table::Maglev(Vec::new());
        }
        let max_w = f64::from(endpoints.iter().map(|(_, w)| *w).max().unwrap_or(1).max(1));
        let perms: Vec<(u64, u64)> = endpoints
            .iter()
            .map(|(a, _)| {
                let k = a.to_string();
                let offset = hash64(k.as_bytes()) % size;
                let skip = hash64(format!("{k}#skip").as_bytes()) % (size - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; endpoints.len()];
        let mut target = vec![0.0f64; endpoints.len()];
        let mut table = vec![usize::MAX; m];
        let mut filled = 0;
        'outer: loop {
            for (i, (_, w)) in endpoints.iter().enumerate() {
                target[i] += f64::from(*w) / max_w;
                if target[i] < 1.0 {
                    continue;
                }
                target[i] -= 1.0;
                let (offset, skip) = perms[i];
                loop {
                    let c = ((offset + skip * next[i]) % size) as usize;
                    next[i] += 1;
                    if table[c] == usize::MAX {
                        table[c] = i;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    break 'outer;
                }
            }
        }
        Table::Maglev(table)
    }

    /// The endpoint index for `hash`.
    pub(crate) fn lookup(&self, hash: u64) -> Option<usize> {
        match self {
            Table::Ring(points) => {
                if points.is_empty() {
                    return None;
                }
                let i = points.partition_point(|(h, _)| *h < hash);
                Some(points[if i == points.len() { 0 } else { i }].1)
            }
            Table::Maglev(table) => {
                if table.is_empty() {
                    return None;
                }
                Some(table[(hash % table.len() as u64) as usize])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: u16) -> Vec<(SocketAddr, u32)> {
        (0..n)
            .map(|i| (SocketAddr::from(([10, 0, 0, i as u8 + 1], 80)), 1))
            .collect()
    }

    /// Share of keys whose endpoint changes when the last endpoint is removed, and share of the
    /// keys of surviving endpoints that moved anyway (the rebuilt table gives the survivors more
    /// entries, as Envoy's does).
    fn moved_shares(build: impl Fn(&[(SocketAddr, u32)]) -> Table, n: u16) -> (f64, f64) {
        let all = eps(n);
        let fewer = &all[..all.len() - 1];
        let (a, b) = (build(&all), build(fewer));
        let keys = 20_000u64;
        let (mut moved, mut survivors, mut survivors_moved) = (0, 0, 0);
        for k in 0..keys {
            let h = hash64(&k.to_be_bytes());
            let before = all[a.lookup(h).expect("a")].0;
            // Same key, same table: same endpoint.
            assert_eq!(all[a.lookup(h).expect("a")].0, before);
            let after = fewer[b.lookup(h).expect("b")].0;
            if before != all[all.len() - 1].0 {
                survivors += 1;
                if before != after {
                    survivors_moved += 1;
                }
            }
            if before != after {
                moved += 1;
            }
        }
        (
            moved as f64 / keys as f64,
            f64::from(survivors_moved) / f64::from(survivors),
        )
    }

    #[test]
    fn ring_hash_is_stable_and_moves_about_one_nth_of_keys() {
        let (moved, survivors_moved) = moved_shares(|e| Table::ring(e, 1024, 8 << 20), 5);
        // Ideal is 1/5; the survivors gaining ring points (256 instead of 205 each) moves a
        // few more, exactly as Envoy's ring does.
        assert!((0.15..=0.35).contains(&moved), "{moved}");
        assert!(survivors_moved < 0.15, "{survivors_moved}");
    }

    #[test]
    fn maglev_is_stable_and_moves_about_one_nth_of_keys() {
        let all = eps(5);
        let t = Table::maglev(&all, 65537);
        let Table::Maglev(entries) = &t else { panic!() };
        let mut counts = [0usize; 5];
        for e in entries {
            counts[*e] += 1;
        }
        // Each endpoint owns about a fifth of the table.
        assert!(
            counts.iter().all(|c| (11_000..=15_200).contains(c)),
            "{counts:?}"
        );
        // Maglev moves a few extra keys besides the removed host's (it is not perfectly
        // minimal); check the total stays near 1/N.
        let keys = 20_000u64;
        let fewer = Table::maglev(&all[..4], 65537);
        let moved = (0..keys)
            .filter(|k| {
                let h = hash64(&k.to_be_bytes());
                all[t.lookup(h).expect("a")].0 != all[fewer.lookup(h).expect("b")].0
            })
            .count() as f64
            / keys as f64;
        assert!((0.15..=0.30).contains(&moved), "{moved}");
    }

    #[test]
    fn weighted_ring_follows_weights() {
        let mut e = eps(2);
        e[1].1 = 3;
        let t = Table::ring(&e, 1024, 8 << 20);
        let to_heavy = (0..20_000u64)
            .filter(|k| t.lookup(hash64(&k.to_be_bytes())) == Some(1))
            .count();
        assert!((13_500..=16_500).contains(&to_heavy), "{to_heavy}");
    }

    #[test]
    fn request_hash_policies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", HeaderValue::from_static("alice"));
        headers.insert("cookie", HeaderValue::from_static("a=1; session=\"xyz\""));
        let req = HashRequest {
            headers: &headers,
            path_and_query: "/p?id=7&b",
            remote: Some("10.1.2.3:5555".parse().expect("addr")),
        };
        let h = |p: HashPolicy| request_hash(&[p], &req);
        let header = h(HashPolicy::Header {
            name: "x-user".into(),
        });
        assert_eq!(header.hash, Some(hash64(b"alice")));
        assert_eq!(
            h(HashPolicy::Header {
                name: "x-none".into()
            })
            .hash,
            None
        );
        assert_eq!(
            h(HashPolicy::QueryParameter { name: "id".into() }).hash,
            Some(hash64(b"7"))
        );
        assert_eq!(h(HashPolicy::SourceIp).hash, Some(hash64(b"10.1.2.3")));
        let c = h(HashPolicy::Cookie {
            name: "session".into(),
            ttl: Some(Duration::from_secs(60)),
            path: None,
        });
        assert_eq!((c.hash, c.set_cookie), (Some(hash64(b"xyz")), None));
        let generated = h(HashPolicy::Cookie {
            name: "sticky".into(),
            ttl: Some(Duration::from_secs(60)),
            path: Some("/".into()),
        });
        let sc = generated.set_cookie.expect("set-cookie");
        let sc = sc.to_str().expect("ascii");
        assert!(
            sc.starts_with("sticky=\"") && sc.ends_with("\"; Max-Age=60; Path=/; HttpOnly"),
            "{sc}"
        );
        let value = &sc[8..24];
        assert_eq!(generated.hash, Some(hash64(value.as_bytes())));
        assert_eq!(
            h(HashPolicy::Cookie {
                name: "sticky".into(),
                ttl: None,
                path: None
            })
            .hash,
            None
        );
        // Combined.
        let both = request_hash(
            &[
                HashPolicy::Header {
                    name: "x-user".into(),
                },
                HashPolicy::SourceIp,
            ],
            &req,
        );
        assert_eq!(
            both.hash,
            Some(hash64(b"alice").rotate_left(1) ^ hash64(b"10.1.2.3"))
        );
    }
}
