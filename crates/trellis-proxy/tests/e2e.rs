//! End to end: an in-test ADS server configures the proxy, requests flow through it to in-test
//! upstreams. Everything binds 127.0.0.1 port 0; waits poll with deadlines.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteMatch, route, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager,
};
use envoy_types::pb::google::protobuf::Any;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;
use trellis_xds::{to_any, type_url};

mod common;

use common::*;

/// An upstream that answers with what it saw (HTTP/1.1 and h2c on one port).
async fn echo_upstream(name: &'static str) -> SocketAddr {
    serve_http(
        "upstream",
        move |req: http::Request<hyper::body::Incoming>| async move {
            let h = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            };
            let authority = req
                .uri()
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_else(|| h("host"));
            let text = format!(
                "upstream={name} version={:?} method={} path={} authority={} xfp={} rid={}",
                req.version(),
                req.method(),
                req.uri().path_and_query().map_or("/", |p| p.as_str()),
                authority,
                h("x-forwarded-proto"),
                if h("x-request-id") == "-" {
                    "no"
                } else {
                    "yes"
                },
            );
            text_response(200, text)
        },
    )
    .await
}

// ---------------------------------------------------------------- resource builders

fn eds_cluster(name: &str, kind: cluster::DiscoveryType) -> Any {
    to_any(
        type_url::CLUSTER,
        &Cluster {
            name: name.into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(kind as i32)),
            eds_cluster_config: Some(cluster::EdsClusterConfig {
                eds_config: Some(ads_source()),
                service_name: name.into(),
            }),
            ..Default::default()
        },
    )
}

/// CDS with one static cluster and LDS with an inline-routed listener; waits for both ACKs and
/// readiness; returns the listener's bound address.
async fn configure_static(h: &mut Harness, upstream: SocketAddr, http2: bool) -> SocketAddr {
    let first = h.request_where(type_url::CLUSTER, |_| true).await;
    assert!(first.node.is_some(), "the first request carries the node");
    assert!(
        first.resource_names.is_empty(),
        "CDS is a wildcard subscription"
    );
    let nonce = h.push(
        type_url::CLUSTER,
        "1",
        vec![static_cluster_with_options(
            "inbound|8080||",
            upstream,
            if http2 { h2_options() } else { HashMap::new() },
        )],
    );
    let ack = h.reply_to(type_url::CLUSTER, &nonce).await;
    assert_eq!(ack.version_info, "1");
    assert!(ack.error_detail.is_none());
    let table = route_table(
        "inbound|8080",
        vec![
            route_to("/missing", "no-such-cluster"),
            route_to("/", "inbound|8080||"),
        ],
    );
    let nonce = h.push(
        type_url::LISTENER,
        "1",
        vec![listener("inbound|8080", inline(table))],
    );
    let ack = h.reply_to(type_url::LISTENER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    h.wait_ready().await;
    h.listener_port("inbound|8080").await
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_flows_through_proxy_to_static_cluster() {
    let upstream = echo_upstream("app").await;
    let mut h = Harness::start().await;
    let proxy = configure_static(&mut h, upstream, false).await;

    assert_ok_containing(
        proxy,
        "GET /hello?x=1 HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n",
        "upstream=app version=HTTP/1.1 method=GET path=/hello?x=1 authority=echo xfp=http rid=yes",
    )
    .await;

    // Absolute-form, as an app using HTTP_PROXY sends it: routed and forwarded in origin-form.
    assert_ok_containing(
        proxy,
        "GET http://reviews:9080/abs HTTP/1.1\r\nHost: reviews:9080\r\nConnection: close\r\n\r\n",
        "path=/abs authority=reviews:9080",
    )
    .await;

    // A mesh-generated 503 says so.
    let (status, headers, body) = get(proxy, "/missing").await.expect("response");
    assert_eq!(status, 503);
    assert_eq!(
        trellis_reason(&headers),
        Some("NC cluster no-such-cluster is not configured")
    );
    assert_eq!(body.trim(), "NC cluster no-such-cluster is not configured");

    let (_, _, metrics) = get(h.admin, "/stats/prometheus").await.expect("metrics");
    assert!(
        metrics.contains(
            r#"trellis_requests_total{listener="inbound|8080",cluster="inbound|8080||",response_code="200",response_flags="-"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"trellis_xds_updates_total{type="CDS",result="ack"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("trellis_xds_connected 1"), "{metrics}");
    assert!(
        metrics.contains(r#"istio_requests_total{reporter="destination""#),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upstream_and_downstream() {
    let upstream = echo_upstream("h2app").await;
    let mut h = Harness::start().await;
    let proxy = configure_static(&mut h, upstream, true).await;

    // HTTP/1.1 downstream → HTTP/2 upstream.
    assert_ok_containing(
        proxy,
        "GET /h1 HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n",
        "version=HTTP/2.0 method=GET path=/h1 authority=echo",
    )
    .await;

    // h2c (prior knowledge) downstream on the same port.
    let mut sender = h2c(proxy).await;
    let req = http::Request::builder()
        .uri("http://echo.h2/h2?y=2")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("h2 response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("version=HTTP/2.0 method=GET path=/h2?y=2 authority=echo.h2"),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_keeps_previous_config() {
    let upstream = echo_upstream("app").await;
    let mut h = Harness::start().await;
    let proxy = configure_static(&mut h, upstream, false).await;

    let bad = "outbound|80||echo.default.svc.cluster.local";
    let nonce = h.push(
        type_url::CLUSTER,
        "2",
        vec![
            static_cluster("inbound|8080||", upstream),
            eds_cluster(bad, cluster::DiscoveryType::OriginalDst),
        ],
    );
    let nack = h.reply_to(type_url::CLUSTER, &nonce).await;
    assert_eq!(
        nack.version_info, "1",
        "a NACK carries the previous version"
    );
    assert_eq!(
        nack.error_detail.map(|s| s.message).as_deref(),
        Some(
            "Cluster outbound|80||echo.default.svc.cluster.local: eds_cluster_config: is only allowed with type: EDS"
        )
    );

    let (status, _, body) = get(proxy, "/still-works").await.expect("response");
    assert_eq!(status, 200, "{body}");

    let (_, _, dump) = get(h.admin, "/config_dump").await.expect("dump");
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("json");
    assert_eq!(dump["xds"]["CDS"]["version"], "1");
    assert_eq!(dump["xds"]["CDS"]["last_nack"]["version"], "2");
    assert_eq!(dump["clusters"].as_array().map(Vec::len), Some(1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eds_and_rds_follow_cds_and_lds() {
    let upstream = echo_upstream("eds-app").await;
    let mut h = Harness::start().await;
    let name = "outbound|80||echo.default.svc.cluster.local";

    let nonce = h.push(
        type_url::CLUSTER,
        "c1",
        vec![eds_cluster(name, cluster::DiscoveryType::Eds)],
    );
    h.reply_to(type_url::CLUSTER, &nonce).await;
    let eds = h.request_where(type_url::ENDPOINT, |_| true).await;
    assert_eq!(eds.resource_names, [name]);

    let rds = http_connection_manager::RouteSpecifier::Rds(Rds {
        config_source: Some(ads_source()),
        route_config_name: "outbound".into(),
    });
    let nonce = h.push(
        type_url::LISTENER,
        "l1",
        vec![listener("virtualOutbound", rds)],
    );
    h.reply_to(type_url::LISTENER, &nonce).await;
    let rds_req = h.request_where(type_url::ROUTE, |_| true).await;
    assert_eq!(rds_req.resource_names, ["outbound"]);
    // Not ready until the RDS and EDS resources CDS and LDS name have arrived.
    let (status, _, _) = get(h.admin, "/ready").await.expect("admin /ready");
    assert_eq!(status, 503);
    let proxy = h.listener_port("virtualOutbound").await;

    // Before RDS arrives the listener answers with a reason.
    let (status, headers, _) = get(proxy, "/").await.expect("response");
    assert_eq!(status, 503);
    assert!(trellis_reason(&headers).is_some_and(|r| r.starts_with("NR route table outbound")));

    let nonce = h.push(
        type_url::ROUTE,
        "r1",
        vec![to_any(
            type_url::ROUTE,
            &route_table("outbound", vec![route_to("/", name)]),
        )],
    );
    let ack = h.reply_to(type_url::ROUTE, &nonce).await;
    assert_eq!(ack.version_info, "r1");
    assert_eq!(ack.resource_names, ["outbound"]);

    // No endpoints yet: UH naming the cluster.
    let (status, headers, _) = get(proxy, "/").await.expect("response");
    assert_eq!(status, 503);
    assert_eq!(
        trellis_reason(&headers),
        Some("UH no healthy endpoints in cluster outbound|80||echo.default.svc.cluster.local")
    );

    let nonce = h.push(
        type_url::ENDPOINT,
        "e1",
        vec![to_any(type_url::ENDPOINT, &assignment(name, &[upstream]))],
    );
    h.reply_to(type_url::ENDPOINT, &nonce).await;
    h.wait_ready().await;
    assert_ok_containing(proxy, &get_request("/via-eds"), "upstream=eds-app").await;

    // A dead endpoint: connect failure is UF.
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        l.local_addr().expect("addr")
    };
    let nonce = h.push(
        type_url::ENDPOINT,
        "e2",
        vec![to_any(type_url::ENDPOINT, &assignment(name, &[dead]))],
    );
    h.reply_to(type_url::ENDPOINT, &nonce).await;
    let (status, headers, _) = get(proxy, "/").await.expect("response");
    assert_eq!(status, 503);
    assert!(
        trellis_reason(&headers).is_some_and(|r| r.starts_with("UF cannot connect to")),
        "{headers:?}"
    );
    h.stop().await;
}

// ---------------------------------------------------------------- route-level traffic management

/// An upstream that answers every request with `status`, reporting each request's
/// `authority path` on `seen`.
async fn recording_upstream(status: u16, seen: mpsc::UnboundedSender<String>) -> SocketAddr {
    serve_http(
        "upstream",
        move |req: http::Request<hyper::body::Incoming>| {
            let seen = seen.clone();
            async move {
                let authority = req
                    .headers()
                    .get("host")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                let path = req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let _ = seen.send(format!(
                    "{authority} {path} {}",
                    String::from_utf8_lossy(&body)
                ));
                text_response(status, format!("status={status}"))
            }
        },
    )
    .await
}

fn with_action(prefix: &str, f: impl FnOnce(&mut RouteAction)) -> Route {
    let mut r = route_to(prefix, "app");
    if let Some(route::Action::Route(a)) = r.action.as_mut() {
        f(a);
    }
    r
}

fn header_option(key: &str, value: &str, overwrite: bool) -> core::HeaderValueOption {
    use core::header_value_option::HeaderAppendAction as A;
    core::HeaderValueOption {
        header: Some(core::HeaderValue {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }),
        append_action: if overwrite {
            A::OverwriteIfExistsOrAdd
        } else {
            A::AppendIfExistsOrAdd
        } as i32,
        ..Default::default()
    }
}

fn fault_config(delay_ms: Option<u32>, abort: Option<u32>, percent: u32) -> Any {
    use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{FaultDelay, fault_delay};
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
        FaultAbort, HttpFault, fault_abort,
    };
    use envoy_types::pb::envoy::r#type::v3::FractionalPercent;
    let pct = FractionalPercent {
        numerator: percent,
        denominator: 0,
    };
    to_any(
        "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
        &HttpFault {
            delay: delay_ms.map(|ms| FaultDelay {
                percentage: Some(pct),
                fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(
                    envoy_types::pb::google::protobuf::Duration {
                        seconds: 0,
                        nanos: (ms * 1_000_000) as i32,
                    },
                )),
            }),
            abort: abort.map(|s| FaultAbort {
                percentage: Some(pct),
                error_type: Some(fault_abort::ErrorType::HttpStatus(s)),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_level_traffic_management() {
    use envoy_types::pb::envoy::config::route::v3::{
        RedirectAction, RetryPolicy, redirect_action, retry_policy,
    };
    use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
    use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let app = recording_upstream(200, seen_tx.clone()).await;
    let broken = recording_upstream(503, seen_tx.clone()).await;
    let (mirror_tx, mut mirrored) = mpsc::unbounded_channel();
    let mirror = recording_upstream(200, mirror_tx).await;
    let slow = {
        // Accepts and never answers: per-try timeouts fire.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let a = l.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        a
    };

    let mut h = Harness::start().await;
    let nonce = h.push(
        type_url::CLUSTER,
        "1",
        vec![
            static_cluster("app", app),
            static_cluster("mirror", mirror),
            static_cluster("slow", slow),
            eds_cluster("flaky", cluster::DiscoveryType::Eds),
        ],
    );
    h.reply_to(type_url::CLUSTER, &nonce).await;
    let nonce = h.push(
        type_url::ENDPOINT,
        "1",
        vec![to_any(
            type_url::ENDPOINT,
            &assignment("flaky", &[broken, app]),
        )],
    );
    h.reply_to(type_url::ENDPOINT, &nonce).await;

    let previous_hosts = retry_policy::RetryHostPredicate {
        name: "envoy.retry_host_predicates.previous_hosts".into(),
        config_type: None,
    };
    let mut retry = with_action("/retry", |a| {
        a.cluster_specifier = Some(route_action::ClusterSpecifier::Cluster("flaky".into()));
        a.retry_policy = Some(RetryPolicy {
            retry_on: "gateway-error".into(),
            num_retries: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 2 }),
            retry_host_predicate: vec![previous_hosts.clone()],
            host_selection_retry_max_attempts: 5,
            ..Default::default()
        });
    });
    retry.name = "retry".into();
    let per_try = with_action("/per-try", |a| {
        a.cluster_specifier = Some(route_action::ClusterSpecifier::Cluster("slow".into()));
        a.retry_policy = Some(RetryPolicy {
            retry_on: "5xx".into(),
            num_retries: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 1 }),
            per_try_timeout: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: 0,
                nanos: 100_000_000,
            }),
            ..Default::default()
        });
    });
    let mut abort = route_to("/abort", "app");
    abort.name = "abort-route".into();
    abort.typed_per_filter_config.insert(
        "envoy.filters.http.fault".into(),
        fault_config(None, Some(418), 100),
    );
    let mut half = route_to("/half", "app");
    half.typed_per_filter_config.insert(
        "envoy.filters.http.fault".into(),
        fault_config(None, Some(503), 50),
    );
    let mut delay = route_to("/delay", "app");
    delay.typed_per_filter_config.insert(
        "envoy.filters.http.fault".into(),
        fault_config(Some(200), None, 100),
    );
    let redirect = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/old".into())),
            ..Default::default()
        }),
        action: Some(route::Action::Redirect(RedirectAction {
            host_redirect: "new.example".into(),
            path_rewrite_specifier: Some(redirect_action::PathRewriteSpecifier::PrefixRewrite(
                "/new".into(),
            )),
            response_code: redirect_action::RedirectResponseCode::Found as i32,
            ..Default::default()
        })),
        ..Default::default()
    };
    let direct = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Path("/direct".into())),
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(
            envoy_types::pb::envoy::config::route::v3::DirectResponseAction {
                status: 418,
                body: Some(core::DataSource {
                    specifier: Some(core::data_source::Specifier::InlineString(
                        "short and stout".into(),
                    )),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let mut rewrite = with_action("/api/", |a| {
        a.prefix_rewrite = "/v2/".into();
        a.host_rewrite_specifier = Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "rewritten.host".into(),
        ));
        a.request_mirror_policies = vec![route_action::RequestMirrorPolicy {
            cluster: "mirror".into(),
            ..Default::default()
        }];
    });
    rewrite.request_headers_to_add = vec![header_option("x-set", "route", true)];
    rewrite.request_headers_to_remove = vec!["x-drop".into()];
    rewrite.response_headers_to_add = vec![header_option("x-resp", "added", false)];
    let mut cors = route_to("/cors", "app");
    cors.typed_per_filter_config.insert(
        "envoy.filters.http.cors".into(),
        to_any(
            "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
            &CorsPolicy {
                allow_origin_string_match: vec![StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(
                        "https://ok.example".into(),
                    )),
                    ..Default::default()
                }],
                allow_methods: "GET,POST".into(),
                max_age: "600".into(),
                ..Default::default()
            },
        ),
    );
    let table = route_table(
        "inbound|8080",
        vec![
            retry,
            per_try,
            abort,
            half,
            delay,
            redirect,
            direct,
            rewrite,
            cors,
            route_to("/", "app"),
        ],
    );
    let filter = |name: &str, type_url: &str, value: Any| {
        HttpFilter {
        name: name.into(),
        config_type: Some(envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType::TypedConfig(
            Any { type_url: type_url.into(), value: value.value },
        )),
        ..Default::default()
    }
    };
    let hcm = HttpConnectionManager {
        stat_prefix: "inbound".into(),
        http_filters: vec![
            filter(
                "envoy.filters.http.fault",
                "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                Any::default(),
            ),
            filter(
                "envoy.filters.http.cors",
                "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors",
                Any::default(),
            ),
            HttpFilter {
                name: type_url::names::ROUTER.into(),
                ..Default::default()
            },
        ],
        route_specifier: Some(inline(table)),
        ..Default::default()
    };
    let l = hcm_listener("inbound|8080", &hcm);
    let nonce = h.push(type_url::LISTENER, "1", vec![l]);
    let ack = h.reply_to(type_url::LISTENER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    h.wait_ready().await;
    let proxy = h.listener_port("inbound|8080").await;

    // Retries: a 503 from one endpoint is retried on the other (previous_hosts).
    for i in 0..10 {
        let (status, _, body) = get(proxy, &format!("/retry/{i}")).await.expect("response");
        assert_eq!((status, body.as_str()), (200, "status=200"), "request {i}");
    }
    while seen.try_recv().is_ok() {}

    // Per-try timeout: both attempts time out; the proxy answers 504 UT,URX.
    let (status, headers, _) = get(proxy, "/per-try").await.expect("response");
    assert_eq!(status, 504);
    let reason = trellis_reason(&headers).unwrap_or_default();
    assert!(reason.starts_with("UT,URX upstream"), "{reason}");

    // Fault abort at 100 %.
    let (status, headers, _) = get(proxy, "/abort").await.expect("response");
    assert_eq!(status, 418);
    assert_eq!(
        trellis_reason(&headers),
        Some("FI fault abort 418 injected by route abort-route")
    );
    // At 50 %: 200 requests abort between 60 and 140 times (p ≈ 1e-8 of failing by chance).
    let mut aborted = 0;
    for _ in 0..200 {
        let (status, _, _) = get(proxy, "/half").await.expect("response");
        aborted += usize::from(status == 503);
    }
    assert!((60..=140).contains(&aborted), "{aborted}");
    // Delay at 100 %: at least the delay.
    let started = std::time::Instant::now();
    let (status, _, _) = get(proxy, "/delay").await.expect("response");
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    // Redirect and direct response.
    let (status, headers, _) = get(proxy, "/old/page?q=1").await.expect("response");
    assert_eq!(status, 302);
    assert_eq!(
        headers.get("location").map(String::as_str),
        Some("http://new.example/new/page?q=1")
    );
    let (status, _, body) = get(proxy, "/direct").await.expect("response");
    assert_eq!((status, body.as_str()), (418, "short and stout"));

    // Rewrite, header mutations, mirror.
    while seen.try_recv().is_ok() {}
    let (status, headers, _) = raw_http(
        proxy,
        "POST /api/items?x=1 HTTP/1.1\r\nHost: orig:8080\r\nx-drop: 1\r\nx-set: client\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await
    .expect("response");
    assert_eq!(status, 200);
    assert_eq!(headers.get("x-resp").map(String::as_str), Some("added"));
    let primary = tokio::time::timeout(DEADLINE, seen.recv())
        .await
        .expect("primary")
        .expect("open");
    assert_eq!(primary, "rewritten.host /v2/items?x=1 hello");
    let copy = tokio::time::timeout(DEADLINE, mirrored.recv())
        .await
        .expect("mirror")
        .expect("open");
    assert_eq!(copy, "rewritten.host-shadow /v2/items?x=1 hello");

    // CORS preflight and simple request.
    let (status, headers, _) = raw_http(
        proxy,
        "OPTIONS /cors HTTP/1.1\r\nHost: a\r\nOrigin: https://ok.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("response");
    assert_eq!(status, 200);
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("https://ok.example")
    );
    assert_eq!(
        headers
            .get("access-control-allow-methods")
            .map(String::as_str),
        Some("GET,POST")
    );
    assert_eq!(
        headers.get("access-control-max-age").map(String::as_str),
        Some("600")
    );
    let (status, headers, _) = raw_http(
        proxy,
        "GET /cors HTTP/1.1\r\nHost: a\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("response");
    assert_eq!(status, 200);
    assert!(!headers.contains_key("access-control-allow-origin"));
    h.stop().await;
}
