//! Forwarding a routed request: cluster choice, request mutations, mirrors, attempts with
//! retries and timeouts, and the response mutations.

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use tokio::time::Instant;

use super::Shared;
use super::http::{
    BoxError, Outcome, ProxyBody, local_reply_flags, prepare_upstream_headers, strip_hop_by_hop,
};
use super::prefetched::Prefetched;
use super::replay::{REPLAY_LIMIT, ReplayBody};
use crate::config::{
    ClusterTarget, HeaderMutations, MirrorPolicy, Route, RouteAction, VirtualHost, WeightedCluster,
};
use crate::routing::retry::{self, AttemptResult};
use crate::routing::{pick_weighted, rewrite};
use crate::upstream::{
    HashRequest, LbContext, RequestBody, ResponseBody, UpstreamCluster, UpstreamEndpoint,
    UpstreamError, request_hash,
};

/// How long a mirror copy may take when the route has no timeout.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

/// What the forwarding step needs from the routed request.
pub(crate) struct Routed<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) vhost: &'a VirtualHost,
    pub(crate) route: &'a Route,
    pub(crate) action: &'a RouteAction,
    pub(crate) authority: String,
    pub(crate) path_and_query: String,
    /// Flags already set (e.g. `DI`).
    pub(crate) flags: Vec<&'static str>,
    /// CORS headers to add to the response.
    pub(crate) cors: Vec<(&'static str, HeaderValue)>,
    /// The downstream peer (for `connection_properties.source_ip` hashing).
    pub(crate) remote: Option<SocketAddr>,
    /// The downstream connection's original destination (ORIGINAL_DST clusters).
    pub(crate) original_dst: Option<SocketAddr>,
    /// `original_dst` came from a redirected (captured) connection: connecting to it does not
    /// loop back into this proxy.
    pub(crate) redirected: bool,
    /// `https` for TLS downstream connections, else `http` (`x-forwarded-proto`).
    pub(crate) scheme: &'static str,
}

/// The header ORIGINAL_DST clusters with `use_http_header` take the destination from.
pub const ORIGINAL_DST_HEADER: &str = "x-envoy-original-dst-host";

/// The cluster a request goes to and, for a weighted choice, the entry picked (its header
/// changes apply); `""` when a weighted choice has no clusters.
pub(super) fn pick_target(target: &ClusterTarget) -> (&str, Option<&WeightedCluster>) {
    match target {
        ClusterTarget::Cluster(name) => (name.as_str(), None),
        ClusterTarget::WeightedClusters(cs) => match pick_weighted(cs, &mut rand::rng()) {
            Some(c) => (c.name.as_str(), Some(c)),
            None => ("", None),
        },
    }
}

enum Failure {
    Overflow(UpstreamError),
    Connect(UpstreamError),
    Reset(UpstreamError, bool),
    PerTry(Duration),
    Global(Duration),
}

pub(crate) async fn forward(
    r: Routed<'_>,
    req: Request<Incoming>,
) -> (Response<ProxyBody>, Outcome) {
    let Routed {
        shared,
        vhost,
        route,
        action,
        mut authority,
        path_and_query,
        mut flags,
        cors,
        remote,
        original_dst: connection_dst,
        redirected,
        scheme,
    } = r;
    let (cluster_name, entry) = pick_target(&action.target);
    let cluster_label = Some(cluster_name.to_string());
    let fail = |flags: &[&'static str], status, cause: &str| {
        let (resp, mut outcome) = local_reply_flags(status, flags, cause);
        outcome.cluster = cluster_label.clone();
        (resp, outcome)
    };
    let Some(cluster) = shared.clusters.get(cluster_name) else {
        flags.push("NC");
        return fail(
            &flags,
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cluster {cluster_name} is not configured"),
        );
    };

    let hash = (!action.hash_policy.is_empty()).then(|| {
        request_hash(
            &action.hash_policy,
            &HashRequest {
                headers: req.headers(),
                path_and_query: &path_and_query,
                remote,
            },
        )
    });
    let original_dst = match cluster.config().discovery {
        crate::config::Discovery::OriginalDst { use_http_header } => {
            let from_header = use_http_header
                .then(|| {
                    req.headers()
                        .get(ORIGINAL_DST_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<SocketAddr>().ok())
                })
                .flatten();
            let target = from_header.or(connection_dst);
            match target {
                Some(t) if redirected || Some(t) != connection_dst => Some(t),
                Some(t) => {
                    flags.push("UH");
                    return fail(
                        &flags,
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!(
                            "original destination {t} of cluster {cluster_name} is this proxy's own listener (the connection was not redirected to it); not looping"
                        ),
                    );
                }
                None => {
                    flags.push("UH");
                    return fail(
                        &flags,
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("no original destination for cluster {cluster_name}"),
                    );
                }
            }
        }
        _ => None,
    };
    let (mut parts, body) = req.into_parts();
    // A filter (ext_authz's `with_request_body`) may have read the start of the body already.
    let body: RequestBody = match parts.extensions.remove::<Prefetched>() {
        Some(prefetched) => prefetched.into_body(body),
        None => body.map_err(Into::into).boxed_unsync(),
    };
    prepare_upstream_headers(&mut parts.headers, scheme);
    if let Some(e) = entry {
        rewrite::apply_header_mutations(&mut parts.headers, &e.request_headers);
    }
    rewrite::apply_header_mutations(&mut parts.headers, &route.request_headers);
    let upstream_path = rewrite::rewrite_path(action, &route.matcher.path, &path_and_query)
        .unwrap_or(path_and_query);
    if let Ok(uri) = upstream_path.parse() {
        parts.uri = uri;
    }
    if let Some(host) = &action.host_rewrite {
        authority = host.clone();
    }
    let deadline = action.timeout.map(|t| Instant::now() + t);

    let mirrors: Vec<&MirrorPolicy> = action
        .mirrors
        .iter()
        .filter(|m| m.fraction.is_none_or(|f| f.sample(&mut rand::rng())))
        .collect();
    let policy = action.retry_policy.as_ref();
    let (replay, mut direct) = if policy.is_some_and(|p| p.num_retries > 0) || !mirrors.is_empty() {
        (Some(ReplayBody::new(body, REPLAY_LIMIT)), None)
    } else {
        (None, Some(body))
    };
    for m in &mirrors {
        if let Some(replay) = &replay {
            spawn_mirror(
                shared,
                m,
                &parts,
                &authority,
                replay.mirror(),
                action.timeout,
            );
        }
    }

    let max_attempts = 1 + policy.map_or(0, |p| p.num_retries);
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut attempt: u32 = 0;
    // The `max_retries` slot of the retry in progress (released when the request ends).
    let mut retry_guard = None;
    let started = std::time::Instant::now();
    loop {
        attempt += 1;
        let exclude: &[SocketAddr] = if policy.is_some_and(|p| p.previous_hosts) {
            &tried
        } else {
            &[]
        };
        let ctx = LbContext {
            hash: hash.as_ref().and_then(|h| h.hash),
            exclude,
            original_dst,
        };
        let Some(endpoint) = pick_endpoint(&cluster, &ctx, policy) else {
            flags.push("UH");
            return fail(
                &flags,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("no healthy endpoints in cluster {cluster_name}"),
            );
        };
        tried.push(endpoint.address);
        let body = match (&replay, direct.take()) {
            (Some(r), _) => r.attempt(),
            (None, Some(b)) => b,
            (None, None) => http_body_util::Empty::new()
                .map_err(|e| match e {})
                .boxed_unsync(),
        };
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
        *req.version_mut() = parts.version;
        *req.headers_mut() = parts.headers.clone();
        // hyper keeps an HTTP/1.1 request's original header-name case in its extensions; the
        // upstream connection writes the names that way when the cluster preserves case.
        *req.extensions_mut() = parts.extensions.clone();
        if vhost.include_request_attempt_count {
            req.headers_mut()
                .insert("x-envoy-attempt-count", HeaderValue::from(attempt));
        }
        let per_try = policy.and_then(|p| p.per_try_timeout);
        let try_deadline = per_try.map(|t| Instant::now() + t);
        let attempt_deadline = match (deadline, try_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let send = cluster.send(endpoint.clone(), req, &authority);
        let result = match attempt_deadline {
            Some(at) => match tokio::time::timeout_at(at, send).await {
                Ok(r) => r.map_err(classify),
                Err(_) if Some(at) == deadline => {
                    Err(Failure::Global(action.timeout.unwrap_or_default()))
                }
                Err(_) => Err(Failure::PerTry(per_try.unwrap_or_default())),
            },
            None => send.await.map_err(classify),
        };
        let view = match &result {
            Ok(resp) => AttemptResult::Response {
                status: resp.status().as_u16(),
                headers: resp.headers(),
            },
            Err(Failure::Overflow(e)) => {
                flags.push("UO");
                let cause = format!("cluster {cluster_name}: {e}");
                return fail(&flags, StatusCode::SERVICE_UNAVAILABLE, &cause);
            }
            Err(Failure::Connect(_)) => AttemptResult::ConnectFailure,
            Err(Failure::Reset(_, refused)) => AttemptResult::Reset { refused: *refused },
            Err(Failure::PerTry(_)) => AttemptResult::PerTryTimeout,
            Err(Failure::Global(t)) => {
                flags.push("UT");
                return fail(
                    &flags,
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "upstream {} of cluster {cluster_name} did not respond within the route timeout {t:?}",
                        endpoint.address
                    ),
                );
            }
        };
        // The attempt is over: its retry slot (if it was a retry) is free again.
        drop(retry_guard.take());
        if matches!(view, AttemptResult::PerTryTimeout) {
            cluster.report_outcome(&endpoint, crate::upstream::Outcome::Timeout);
        }
        let retriable = policy.is_some_and(|p| retry::is_retriable(p, view));
        let replayable = replay.as_ref().is_some_and(ReplayBody::replayable);
        let budget = if retriable && attempt < max_attempts && replayable {
            cluster.try_acquire_retry()
        } else {
            None
        };
        if let Some(slot) = budget {
            drop(result);
            let pause = retry::backoff(attempt, &mut rand::rng());
            if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                flags.push("UT");
                return fail(
                    &flags,
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "cluster {cluster_name} did not respond within the route timeout {:?} ({attempt} attempts)",
                        action.timeout.unwrap_or_default()
                    ),
                );
            }
            tokio::time::sleep(pause).await;
            retry_guard = Some(slot);
            continue;
        }
        let exhausted = retriable && attempt >= max_attempts;
        let flag = |f: &'static str, flags: &mut Vec<&'static str>| {
            flags.push(f);
            if exhausted {
                flags.push("URX");
            }
        };
        let attempts = if attempt > 1 {
            format!(" after {attempt} attempts")
        } else {
            String::new()
        };
        return match result {
            Ok(response) => {
                if exhausted {
                    flags.push("URX");
                }
                let (mut p, body) = response.into_parts();
                strip_hop_by_hop(&mut p.headers);
                // A cookie a hash policy generated goes back with the upstream's answer, before
                // the response header changes (as Envoy's router adds it).
                if let Some(cookie) = hash.as_ref().and_then(|h| h.set_cookie.clone()) {
                    p.headers.append(http::header::SET_COOKIE, cookie);
                }
                p.extensions
                    .insert(crate::telemetry::UpstreamPeer(endpoint.peer.clone()));
                p.extensions
                    .insert(crate::access_log::UpstreamHost(endpoint.address));
                p.extensions
                    .insert(crate::access_log::RouteName(route.name.as_str().into()));
                if let Ok(v) = HeaderValue::from_str(&started.elapsed().as_millis().to_string()) {
                    p.headers.insert("x-envoy-upstream-service-time", v);
                }
                finish_headers(
                    &mut p.headers,
                    entry.map(|e| &e.response_headers),
                    &route.response_headers,
                    &cors,
                );
                if vhost.include_attempt_count_in_response {
                    p.headers
                        .insert("x-envoy-attempt-count", HeaderValue::from(attempt));
                }
                let body = match attempt_deadline {
                    Some(at) => DeadlineBody {
                        inner: body,
                        sleep: Box::pin(tokio::time::sleep_until(at)),
                    }
                    .boxed(),
                    None => body.map_err(Into::into).boxed(),
                };
                let outcome = Outcome {
                    cluster: cluster_label,
                    flags,
                };
                (Response::from_parts(p, body), outcome)
            }
            Err(Failure::Connect(e)) => {
                flag("UF", &mut flags);
                let cause = match &e {
                    UpstreamError::Connect { addr, source }
                    | UpstreamError::Reset { addr, source } => {
                        format!(
                            "cannot connect to {addr} in cluster {cluster_name}{attempts}: {source}"
                        )
                    }
                    other => format!("cluster {cluster_name}{attempts}: {other}"),
                };
                fail(&flags, StatusCode::SERVICE_UNAVAILABLE, &cause)
            }
            Err(Failure::Reset(e, _)) if is_protocol_error(&e) => {
                // The upstream answered something that is not HTTP (e.g. a TLS server spoken
                // to in plaintext): Envoy's 502 with `UPE`.
                flag("UPE", &mut flags);
                fail(
                    &flags,
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "upstream {} in cluster {cluster_name} sent an invalid HTTP response{attempts}: {e}",
                        endpoint.address
                    ),
                )
            }
            Err(Failure::Reset(e, _)) => {
                flag("UR", &mut flags);
                let cause = match &e {
                    UpstreamError::Connect { addr, source }
                    | UpstreamError::Reset { addr, source } => {
                        format!(
                            "upstream {addr} in cluster {cluster_name} reset the request{attempts}: {source}"
                        )
                    }
                    other => format!("cluster {cluster_name}{attempts}: {other}"),
                };
                fail(&flags, StatusCode::SERVICE_UNAVAILABLE, &cause)
            }
            Err(Failure::PerTry(t)) => {
                flag("UT", &mut flags);
                fail(
                    &flags,
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "upstream {} of cluster {cluster_name} did not respond within the per-try timeout {t:?}{attempts}",
                        endpoint.address
                    ),
                )
            }
            Err(Failure::Global(_) | Failure::Overflow(_)) => unreachable_global(&flags),
        };
    }
}

fn unreachable_global(flags: &[&'static str]) -> (Response<ProxyBody>, Outcome) {
    // The global timeout returns before this point; answer sensibly anyway.
    local_reply_flags(StatusCode::GATEWAY_TIMEOUT, flags, "route timeout")
}

/// Applies the weighted entry's then the route's response headers (Envoy's order), then CORS.
pub(crate) fn finish_headers(
    headers: &mut HeaderMap,
    entry: Option<&HeaderMutations>,
    route: &HeaderMutations,
    cors: &[(&'static str, HeaderValue)],
) {
    if let Some(e) = entry {
        rewrite::apply_header_mutations(headers, e);
    }
    rewrite::apply_header_mutations(headers, route);
    super::cors::apply(headers, cors);
}

fn classify(e: UpstreamError) -> Failure {
    match e {
        e @ UpstreamError::Connect { .. } => Failure::Connect(e),
        e @ UpstreamError::Overflow { .. } => Failure::Overflow(e),
        e @ UpstreamError::Reset { .. } => {
            let refused = is_refused_stream(&e);
            Failure::Reset(e, refused)
        }
    }
}

/// HTTP/2 REFUSED_STREAM, recognised by its description anywhere in the error chain (hyper does
/// not expose the h2 reason).
fn is_refused_stream(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if text.contains("refused stream") || text.contains("REFUSED_STREAM") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// An upstream response that could not be parsed as HTTP (hyper's parse errors), anywhere in
/// the error chain.
fn is_protocol_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Picks an endpoint; with `previous_hosts`, the load balancer avoids endpoints already tried
/// when others are available, and the pick is repeated up to `host_selection_max_attempts`
/// times should it still land on one.
fn pick_endpoint(
    cluster: &UpstreamCluster,
    ctx: &LbContext<'_>,
    policy: Option<&crate::config::RetryPolicy>,
) -> Option<Arc<UpstreamEndpoint>> {
    let mut pick = cluster.pick_with(ctx)?;
    let attempts = policy.map_or(1, |p| p.host_selection_max_attempts.max(1));
    for _ in 1..attempts {
        if !ctx.exclude.contains(&pick.address) {
            break;
        }
        pick = cluster.pick_with(ctx)?;
    }
    Some(pick)
}

/// Envoy's shadow host: `-shadow` appended to the host, before any port.
pub(crate) fn shadow_authority(authority: &str) -> String {
    match authority.rfind(':') {
        Some(i)
            if !authority[i..].contains(']')
                && authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{}-shadow{}", &authority[..i], &authority[i..])
        }
        _ => format!("{authority}-shadow"),
    }
}

fn spawn_mirror(
    shared: &Shared,
    m: &MirrorPolicy,
    parts: &http::request::Parts,
    authority: &str,
    body: RequestBody,
    timeout: Option<Duration>,
) {
    let Some(cluster) = shared.clusters.get(&m.cluster) else {
        tracing::debug!(cluster = %m.cluster, "mirror cluster is not configured");
        return;
    };
    let Some(endpoint) = cluster.pick() else {
        tracing::debug!(cluster = %m.cluster, "mirror cluster has no endpoints");
        return;
    };
    let authority = if m.disable_shadow_host_suffix {
        authority.to_string()
    } else {
        shadow_authority(authority)
    };
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    let limit = timeout.unwrap_or(MIRROR_TIMEOUT);
    let name = m.cluster.clone();
    tokio::spawn(async move {
        let run = async {
            let resp = cluster.send(endpoint, req, &authority).await?;
            // Read the answer so the connection can be reused; it is discarded.
            let _ = resp.into_body().collect().await;
            Ok::<_, UpstreamError>(())
        };
        match tokio::time::timeout(limit, run).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(cluster = %name, error = %e, "mirror request failed"),
            Err(_) => tracing::debug!(cluster = %name, "mirror request timed out"),
        }
    });
}

/// A response body that fails once the route (or per-try) deadline passes: the downstream
/// stream is then reset, as Envoy does when the timeout fires after the headers were sent.
struct DeadlineBody {
    inner: ResponseBody,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            // An error makes hyper reset the downstream stream (or close the connection).
            return Poll::Ready(Some(Err(
                "UT route timeout while streaming the response".into()
            )));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
