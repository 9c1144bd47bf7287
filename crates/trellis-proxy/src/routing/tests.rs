use super::*;
use crate::config::{
    HeaderMatchKind, HeaderMatcher, PathMatch, Pattern, Route, RouteAction, RouteMatch, RouteTable,
    VirtualHost, WeightedCluster,
};
use http::HeaderValue;
use rand::SeedableRng;

/// A route action to `cluster` with nothing else set.
pub(crate) fn action(cluster: &str) -> RouteAction {
    RouteAction {
        target: ClusterTarget::Cluster(cluster.into()),
        timeout: None,
        prefix_rewrite: None,
        regex_rewrite: None,
        host_rewrite: None,
        retry_policy: None,
        mirrors: vec![],
        hash_policy: vec![],
    }
}

fn route(name: &str, path: PathMatch, headers: Vec<HeaderMatcher>) -> Route {
    Route {
        name: name.into(),
        matcher: RouteMatch {
            path,
            case_sensitive: true,
            headers,
            query_parameters: vec![],
        },
        action: crate::config::Action::Route(action(&format!("c-{name}"))),
        request_headers: Default::default(),
        response_headers: Default::default(),
        fault: None,
        cors: None,
    }
}

fn vhost(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
        include_request_attempt_count: false,
        include_attempt_count_in_response: false,
    }
}

fn catch_all(name: &str, domains: &[&str]) -> VirtualHost {
    vhost(
        name,
        domains,
        vec![route(name, PathMatch::Prefix("/".into()), vec![])],
    )
}

fn view<'a>(authority: &'a str, path: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
    RequestView {
        authority,
        method: "GET",
        path_and_query: path,
        scheme: "http",
        headers,
    }
}

fn header(name: &str, kind: HeaderMatchKind, invert: bool) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        kind,
        invert_match: invert,
    }
}

#[test]
fn vhost_precedence_is_exact_then_suffix_then_prefix_then_star() {
    let table = CompiledRoutes::new(Arc::new(RouteTable {
        name: "outbound".into(),
        virtual_hosts: vec![
            catch_all("star", &["*"]),
            catch_all("prefix", &["api.*"]),
            catch_all("short-suffix", &["*.com"]),
            catch_all("suffix", &["*.example.com"]),
            catch_all("exact", &["api.example.com", "reviews:9080"]),
        ],
    }));
    let pick = |a: &str| table.select_vhost(a).map(|v| v.name.clone());
    assert_eq!(pick("api.example.com").as_deref(), Some("exact"));
    assert_eq!(
        pick("API.Example.COM").as_deref(),
        Some("exact"),
        "case-insensitive"
    );
    assert_eq!(
        pick("reviews:9080").as_deref(),
        Some("exact"),
        "host:port domains"
    );
    assert_eq!(
        pick("reviews").as_deref(),
        Some("star"),
        "the port is part of the domain"
    );
    assert_eq!(
        pick("www.example.com").as_deref(),
        Some("suffix"),
        "longest suffix wins"
    );
    assert_eq!(pick("www.other.com").as_deref(), Some("short-suffix"));
    assert_eq!(
        pick("api.other.org").as_deref(),
        Some("prefix"),
        "suffix before prefix"
    );
    assert_eq!(
        pick("api.example.com:80").as_deref(),
        Some("prefix"),
        "the port defeats exact and suffix"
    );
    assert_eq!(
        pick("example.com").as_deref(),
        Some("short-suffix"),
        "*.example.com needs a label"
    );
    assert_eq!(pick("nothing").as_deref(), Some("star"));

    let no_star = CompiledRoutes::new(Arc::new(RouteTable {
        name: "t".into(),
        virtual_hosts: vec![catch_all("only", &["a"])],
    }));
    let headers = HeaderMap::new();
    assert_eq!(
        no_star
            .route(&view("b", "/", &headers))
            .map(|(v, _)| v.name.clone()),
        Err(RouteError::NoVirtualHost {
            table: "t".into(),
            authority: "b".into()
        })
    );
}

#[test]
fn first_matching_route_wins_in_order() {
    let vh = vhost(
        "v",
        &["*"],
        vec![
            route("exact", PathMatch::Path("/api/v1".into()), vec![]),
            route("prefix", PathMatch::Prefix("/api".into()), vec![]),
            route("shadowed", PathMatch::Path("/api/v2".into()), vec![]),
            route(
                "regex",
                PathMatch::SafeRegex(Pattern::new("/items/[0-9]+").expect("regex")),
                vec![],
            ),
        ],
    );
    let headers = HeaderMap::new();
    let name = |path: &str| match_route(&vh, &view("h", path, &headers)).map(|r| r.name.clone());
    assert_eq!(name("/api/v1").as_deref(), Some("exact"));
    assert_eq!(
        name("/api/v1?x=1").as_deref(),
        Some("exact"),
        "the query is ignored"
    );
    assert_eq!(name("/api/v1/x").as_deref(), Some("prefix"));
    assert_eq!(
        name("/api/v2").as_deref(),
        Some("prefix"),
        "an earlier prefix shadows a later exact"
    );
    assert_eq!(name("/items/42").as_deref(), Some("regex"));
    assert_eq!(
        name("/items/42/x").as_deref(),
        None,
        "regexes match the whole path"
    );
    assert_eq!(
        name("/API/v1").as_deref(),
        None,
        "case-sensitive by default"
    );
}

#[test]
fn case_insensitive_prefix_and_path() {
    let mut r = route("p", PathMatch::Prefix("/Api".into()), vec![]);
    r.matcher.case_sensitive = false;
    let mut e = route("e", PathMatch::Path("/Exact".into()), vec![]);
    e.matcher.case_sensitive = false;
    let vh = vhost("v", &["*"], vec![r, e]);
    let headers = HeaderMap::new();
    let name = |path: &str| match_route(&vh, &view("h", path, &headers)).map(|r| r.name.clone());
    assert_eq!(name("/aPI/x").as_deref(), Some("p"));
    assert_eq!(name("/EXACT").as_deref(), Some("e"));
    assert_eq!(name("/ap").as_deref(), None);
}

#[test]
fn header_matchers_all_must_hold() {
    let vh = vhost(
        "v",
        &["*"],
        vec![
            route(
                "canary",
                PathMatch::Prefix("/".into()),
                vec![
                    header("x-user", HeaderMatchKind::Exact("jason".into()), false),
                    header("x-env", HeaderMatchKind::Prefix("stag".into()), false),
                ],
            ),
            route(
                "suffix-regex",
                PathMatch::Prefix("/".into()),
                vec![
                    header("x-host", HeaderMatchKind::Suffix(".internal".into()), false),
                    header(
                        "x-id",
                        HeaderMatchKind::SafeRegex(Pattern::new("[a-f0-9]{4}").expect("regex")),
                        false,
                    ),
                ],
            ),
            route(
                "has-debug",
                PathMatch::Prefix("/".into()),
                vec![header("x-debug", HeaderMatchKind::Present(true), false)],
            ),
            route(
                "not-beta",
                PathMatch::Prefix("/".into()),
                vec![header("x-beta", HeaderMatchKind::Exact("1".into()), true)],
            ),
            route(
                "method",
                PathMatch::Prefix("/".into()),
                vec![header(
                    ":method",
                    HeaderMatchKind::Exact("GET".into()),
                    false,
                )],
            ),
        ],
    );
    let name = |pairs: &[(&'static str, &'static str)]| {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(*k, HeaderValue::from_static(v));
        }
        match_route(&vh, &view("h", "/", &headers)).map(|r| r.name.clone())
    };
    assert_eq!(
        name(&[("x-user", "jason"), ("x-env", "staging")]).as_deref(),
        Some("canary")
    );
    assert_eq!(
        name(&[("x-user", "jason"), ("x-beta", "1")]).as_deref(),
        Some("method")
    );
    assert_eq!(
        name(&[("x-host", "a.internal"), ("x-id", "beef")]).as_deref(),
        Some("suffix-regex")
    );
    assert_eq!(
        name(&[("x-host", "a.internal"), ("x-id", "beefy")]).as_deref(),
        Some("method")
    );
    assert_eq!(
        name(&[("x-debug", ""), ("x-beta", "1")]).as_deref(),
        Some("has-debug")
    );
    assert_eq!(name(&[("x-beta", "1")]).as_deref(), Some("method"));
    assert_eq!(name(&[("x-beta", "2")]).as_deref(), Some("not-beta"));
    assert_eq!(name(&[]).as_deref(), Some("method"));
}

#[test]
fn missing_headers_follow_envoy_semantics() {
    let headers = HeaderMap::new();
    let req = view("h", "/", &headers);
    let m = |kind, invert| header_matches(&header("x-a", kind, invert), &req);
    assert!(!m(HeaderMatchKind::Exact("v".into()), false));
    assert!(
        !m(HeaderMatchKind::Exact("v".into()), true),
        "a missing header never matches a string"
    );
    assert!(!m(HeaderMatchKind::Present(true), false));
    assert!(m(HeaderMatchKind::Present(true), true));
    assert!(m(HeaderMatchKind::Present(false), false));
    assert!(!m(HeaderMatchKind::Present(false), true));

    let mut multi = HeaderMap::new();
    multi.append("x-a", HeaderValue::from_static("1"));
    multi.append("x-a", HeaderValue::from_static("2"));
    let req = view("h", "/", &multi);
    assert!(header_matches(
        &header("x-a", HeaderMatchKind::Exact("1,2".into()), false),
        &req
    ));
}

#[test]
fn weighted_pick_follows_weights() {
    let target = ClusterTarget::WeightedClusters(vec![
        WeightedCluster {
            name: "v1".into(),
            weight: 80,
            ..wc()
        },
        WeightedCluster {
            name: "v2".into(),
            weight: 20,
            ..wc()
        },
        WeightedCluster {
            name: "never".into(),
            weight: 0,
            ..wc()
        },
    ]);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
    let n = 10_000;
    let mut v1 = 0;
    for _ in 0..n {
        match pick_cluster(&target, &mut rng) {
            "v1" => v1 += 1,
            "v2" => {}
            other => panic!("picked {other}"),
        }
    }
    // 8000 expected; 5 standard deviations is 200.
    assert!(
        (7800..=8200).contains(&v1),
        "v1 picked {v1} times out of {n}"
    );
    assert_eq!(
        pick_cluster(&ClusterTarget::Cluster("only".into()), &mut rng),
        "only"
    );
}

fn wc() -> WeightedCluster {
    WeightedCluster {
        name: String::new(),
        weight: 0,
        request_headers: Default::default(),
        response_headers: Default::default(),
    }
}

#[test]
fn query_parameters_match_decoded_values() {
    use crate::config::{QueryParamMatchKind, QueryParamMatcher, StringMatch, StringMatchKind};
    let mut r = route("q", PathMatch::Prefix("/".into()), vec![]);
    r.matcher.query_parameters = vec![
        QueryParamMatcher {
            name: "user".into(),
            kind: QueryParamMatchKind::String(StringMatch {
                kind: StringMatchKind::Exact("a b".into()),
                ignore_case: false,
            }),
        },
        QueryParamMatcher {
            name: "debug".into(),
            kind: QueryParamMatchKind::Present(true),
        },
    ];
    let h = HeaderMap::new();
    assert!(route_matches(&r, &view("x", "/p?debug&user=a%20b", &h)));
    assert!(route_matches(
        &r,
        &view("x", "/p?user=a%20b&user=c&debug=", &h)
    ));
    assert!(
        !route_matches(&r, &view("x", "/p?user=c&user=a%20b&debug", &h)),
        "first value counts"
    );
    assert!(!route_matches(&r, &view("x", "/p?user=a%20b", &h)));
    assert!(!route_matches(&r, &view("x", "/p", &h)));
    assert_eq!(query_param("/p?a=%41%zz", "a").as_deref(), Some("A%zz"));
}
