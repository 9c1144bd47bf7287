//! Where routes are matched: virtual-host selection by authority (Envoy's precedence) and
//! first-match route selection within the virtual host.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use rand::Rng;

use crate::config::{
    ClusterTarget, HeaderMatchKind, HeaderMatcher, PathMatch, QueryParamMatchKind,
    QueryParamMatcher, Route, RouteTable, VirtualHost, WeightedCluster,
};

pub mod fault;
pub mod retry;
pub mod rewrite;

/// A route table with its domain index built once, so per-request lookup is cheap.
#[derive(Debug)]
pub struct CompiledRoutes {
    table: Arc<RouteTable>,
    exact: HashMap<String, usize>,
    /// `*.foo.com` entries as (`.foo.com`, vhost), longest suffix first.
    suffixes: Vec<(String, usize)>,
    /// `foo.*` entries as (`foo.`, vhost), longest prefix first.
    prefixes: Vec<(String, usize)>,
    star: Option<usize>,
}

/// The parts of a request that routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The authority (URI authority, else Host / `:authority`).
    pub authority: &'a str,
    /// The method.
    pub method: &'a str,
    /// Path and query, as received.
    pub path_and_query: &'a str,
    /// `http` (only plaintext is served).
    pub scheme: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// Why no route was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No virtual host matches the authority.
    #[error("no virtual host for authority {authority:?} in route table {table}")]
    NoVirtualHost {
        /// The route table's name.
        table: String,
        /// The request's authority.
        authority: String,
    },
    /// The virtual host has no route matching the request.
    #[error("no route for {path:?} in virtual host {vhost} of route table {table}")]
    NoRoute {
        /// The route table's name.
        table: String,
        /// The virtual host's name.
        vhost: String,
        /// The request's path.
        path: String,
    },
}

impl CompiledRoutes {
    /// Builds the domain index of `table`.
    pub fn new(table: Arc<RouteTable>) -> Self {
        let mut exact = HashMap::new();
        let mut suffixes = Vec::new();
        let mut prefixes = Vec::new();
        let mut star = None;
        for (i, vh) in table.virtual_hosts.iter().enumerate() {
            for d in &vh.domains {
                if d == "*" {
                    star.get_or_insert(i);
                } else if let Some(suffix) = d.strip_prefix('*') {
                    suffixes.push((suffix.to_string(), i));
                } else if let Some(prefix) = d.strip_suffix('*') {
                    prefixes.push((prefix.to_string(), i));
                } else {
                    exact.entry(d.clone()).or_insert(i);
                }
            }
        }
        // Stable sorts: for equal lengths, the earlier virtual host wins.
        suffixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        CompiledRoutes {
            table,
            exact,
            suffixes,
            prefixes,
            star,
        }
    }

    /// The route table.
    pub fn table(&self) -> &Arc<RouteTable> {
        &self.table
    }

    /// Envoy's virtual-host selection: exact domain, then the longest `*.suffix`, then the
    /// longest `prefix.*`, then `*`. Case-insensitive; a `:port` is part of the domain.
    pub fn select_vhost(&self, authority: &str) -> Option<&VirtualHost> {
        let lower;
        let host = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = authority.to_ascii_lowercase();
            lower.as_str()
        } else {
            authority
        };
        let index = self
            .exact
            .get(host)
            .copied()
            .or_else(|| {
                self.suffixes
                    .iter()
                    .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
                    .map(|(_, i)| *i)
            })
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(p, _)| host.len() > p.len() && host.starts_with(p.as_str()))
                    .map(|(_, i)| *i)
            })
            .or(self.star)?;
        self.table.virtual_hosts.get(index)
    }

    /// Selects the virtual host, then the first matching route in it.
    pub fn route(&self, req: &RequestView<'_>) -> Result<(&VirtualHost, &Route), RouteError> {
        let vhost = self
            .select_vhost(req.authority)
            .ok_or_else(|| RouteError::NoVirtualHost {
                table: self.table.name.clone(),
                authority: req.authority.to_string(),
            })?;
        let route = match_route(vhost, req).ok_or_else(|| RouteError::NoRoute {
            table: self.table.name.clone(),
            vhost: vhost.name.clone(),
            path: req.path_and_query.to_string(),
        })?;
        Ok((vhost, route))
    }
}

/// The first route of `vhost` that matches the request.
pub fn match_route<'v>(vhost: &'v VirtualHost, req: &RequestView<'_>) -> Option<&'v Route> {
    vhost.routes.iter().find(|r| route_matches(r, req))
}

/// Whether one route matches: path condition (without the query) and every header condition.
pub fn route_matches(route: &Route, req: &RequestView<'_>) -> bool {
    let m = &route.matcher;
    let path = req
        .path_and_query
        .split_once('?')
        .map_or(req.path_and_query, |(p, _)| p);
    let path_ok = match &m.path {
        PathMatch::Prefix(p) if m.case_sensitive => path.starts_with(p.as_str()),
        PathMatch::Prefix(p) => {
            path.len() >= p.len()
                && path.is_char_boundary(p.len())
                && path[..p.len()].eq_ignore_ascii_case(p)
        }
        PathMatch::Path(p) if m.case_sensitive => path == p,
        PathMatch::Path(p) => path.eq_ignore_ascii_case(p),
        PathMatch::SafeRegex(re) => re.is_full_match(path),
    };
    path_ok
        && m.headers.iter().all(|h| header_matches(h, req))
        && m.query_parameters
            .iter()
            .all(|q| query_param_matches(q, req))
}

/// One query-parameter condition on the first occurrence of the (percent-decoded) parameter.
pub fn query_param_matches(q: &QueryParamMatcher, req: &RequestView<'_>) -> bool {
    let Some(value) = query_param(req.path_and_query, &q.name) else {
        return false;
    };
    match &q.kind {
        QueryParamMatchKind::Present(p) => *p,
        QueryParamMatchKind::String(sm) => sm.matches(&value),
    }
}

/// The decoded value of the first parameter named `name` in the query (`""` when it has no `=`).
pub fn query_param(path_and_query: &str, name: &str) -> Option<String> {
    let (_, query) = path_and_query.split_once('?')?;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| percent_decode(k) == name)
        .map(|(_, v)| percent_decode(v))
}

/// Decodes `%XX` escapes (invalid escapes are kept as is; `+` is not a space, as in Envoy).
pub fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// One header condition, with Envoy's semantics for missing headers and `invert_match`.
pub fn header_matches(h: &HeaderMatcher, req: &RequestView<'_>) -> bool {
    let value = header_value(&h.name, req);
    let Some(value) = value else {
        // Envoy: a missing header only satisfies `present_match: false` (or its inversion).
        return match h.kind {
            HeaderMatchKind::Present(present) => present == h.invert_match,
            _ => false,
        };
    };
    let matched = match &h.kind {
        HeaderMatchKind::Exact(s) => value == *s,
        HeaderMatchKind::Prefix(s) => value.starts_with(s.as_str()),
        HeaderMatchKind::Suffix(s) => value.ends_with(s.as_str()),
        HeaderMatchKind::SafeRegex(re) => re.is_full_match(&value),
        HeaderMatchKind::Present(present) => *present,
    };
    matched != h.invert_match
}

/// A header's value for matching: pseudo-headers from the request line, several values joined
/// with `,` as Envoy does. `None` when absent (or not valid text).
fn header_value<'a>(name: &str, req: &RequestView<'a>) -> Option<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow;
    match name {
        ":authority" => return Some(Cow::Borrowed(req.authority)),
        ":method" => return Some(Cow::Borrowed(req.method)),
        ":path" => return Some(Cow::Borrowed(req.path_and_query)),
        ":scheme" => return Some(Cow::Borrowed(req.scheme)),
        _ => {}
    }
    let mut values = req.headers.get_all(name).iter();
    let first = values.next()?.to_str().ok()?;
    let mut joined: Option<String> = None;
    for v in values {
        let s = joined.get_or_insert_with(|| first.to_string());
        s.push(',');
        s.push_str(v.to_str().ok()?);
    }
    Some(joined.map_or(Cow::Borrowed(first), Cow::Owned))
}

/// The cluster a request goes to: the single cluster, or a weighted random pick.
pub fn pick_cluster<'a, R: Rng + ?Sized>(target: &'a ClusterTarget, rng: &mut R) -> &'a str {
    match target {
        ClusterTarget::Cluster(name) => name,
        ClusterTarget::WeightedClusters(clusters) => {
            pick_weighted(clusters, rng).map_or("", |c| c.name.as_str())
        }
    }
}

/// A weighted random pick among `clusters` (the first when every weight is 0).
pub fn pick_weighted<'a, R: Rng + ?Sized>(
    clusters: &'a [WeightedCluster],
    rng: &mut R,
) -> Option<&'a WeightedCluster> {
    let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
    if total == 0 {
        return clusters.first();
    }
    let mut r = rng.random_range(0..total);
    for c in clusters {
        let w = u64::from(c.weight);
        if r < w {
            return Some(c);
        }
        r -= w;
    }
    clusters.last()
}

#[cfg(test)]
mod tests;

/// Route tables received over RDS, by name, in an `arc-swap` snapshot read per request.
#[derive(Debug, Default)]
pub struct RouteStore {
    tables: arc_swap::ArcSwap<HashMap<String, Arc<CompiledRoutes>>>,
}

impl RouteStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table named `name`, if received.
    pub fn get(&self, name: &str) -> Option<Arc<CompiledRoutes>> {
        self.tables.load().get(name).cloned()
    }

    /// Replaces every table at once.
    pub fn replace(&self, tables: &[Arc<RouteTable>]) {
        let map = tables
            .iter()
            .map(|t| (t.name.clone(), Arc::new(CompiledRoutes::new(t.clone()))))
            .collect();
        self.tables.store(Arc::new(map));
    }
}
