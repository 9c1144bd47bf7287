//! Conversion of the route-level traffic-management fields: accepted shapes and precise errors.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::{
    self as core, HeaderValue, HeaderValueOption, RuntimeFractionalPercent, header_value_option,
};
use envoy_types::pb::envoy::config::route::v3::{
    self as proto, QueryParameterMatcher, RedirectAction, RetryPolicy, RouteConfiguration,
    RouteMatch, VirtualHost, query_parameter_matcher, redirect_action, retry_policy, route,
    route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{FaultDelay, fault_delay};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf::{Any, Duration as PDuration, UInt32Value};
use trellis_xds::to_any;

use super::super::filters::{CORS_POLICY_TYPE, FAULT_TYPE};
use crate::config::{
    self, AbortKind, Action, AppendAction, Fraction, QueryParamMatchKind, RetryOn,
};

fn table(routes: Vec<proto::Route>) -> RouteConfiguration {
    RouteConfiguration {
        name: "outbound".into(),
        virtual_hosts: vec![VirtualHost {
            name: "vh".into(),
            domains: vec!["*".into()],
            routes,
            include_request_attempt_count: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn prefix() -> Option<RouteMatch> {
    Some(RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
        ..Default::default()
    })
}

fn to(action: proto::RouteAction) -> proto::Route {
    proto::Route {
        r#match: prefix(),
        action: Some(route::Action::Route(proto::RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster("c".into())),
            ..action
        })),
        ..Default::default()
    }
}

fn convert(routes: Vec<proto::Route>) -> Result<config::RouteTable, String> {
    config::RouteTable::try_from(&table(routes)).map_err(|e| e.to_string())
}

fn convert_err(routes: Vec<proto::Route>) -> String {
    match convert(routes) {
        Ok(t) => panic!("accepted {t:?}"),
        Err(e) => e,
    }
}

fn first(t: &config::RouteTable) -> &config::Route {
    &t.virtual_hosts[0].routes[0]
}

fn header(
    key: &str,
    value: &str,
    action: header_value_option::HeaderAppendAction,
) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

fn pct(n: u32) -> FractionalPercent {
    FractionalPercent {
        numerator: n,
        denominator: fractional_percent::DenominatorType::Hundred as i32,
    }
}

#[test]
fn route_level_fields_convert() {
    use header_value_option::HeaderAppendAction as H;
    let mut per_filter: HashMap<String, Any> = HashMap::new();
    per_filter.insert(
        "envoy.filters.http.fault".into(),
        to_any(
            FAULT_TYPE,
            &HttpFault {
                delay: Some(FaultDelay {
                    percentage: Some(pct(50)),
                    fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(
                        PDuration {
                            seconds: 1,
                            nanos: 0,
                        },
                    )),
                }),
                abort: Some(FaultAbort {
                    percentage: Some(pct(100)),
                    error_type: Some(fault_abort::ErrorType::GrpcStatus(14)),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    );
    per_filter.insert(
        "envoy.filters.http.cors".into(),
        to_any(
            CORS_POLICY_TYPE,
            &CorsPolicy {
                allow_origin_string_match: vec![StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Prefix("https://".into())),
                    ..Default::default()
                }],
                allow_methods: "GET".into(),
                max_age: "60".into(),
                filter_enabled: Some(RuntimeFractionalPercent {
                    default_value: Some(pct(100)),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    );
    let mut r = to(proto::RouteAction {
        prefix_rewrite: "/v2/".into(),
        host_rewrite_specifier: Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "new.host".into(),
        )),
        retry_policy: Some(RetryPolicy {
            retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes".into(),
            num_retries: Some(UInt32Value { value: 2 }),
            per_try_timeout: Some(PDuration { seconds: 0, nanos: 250_000_000 }),
            retriable_status_codes: vec![503],
            retry_host_predicate: vec![retry_policy::RetryHostPredicate {
                name: "envoy.retry_host_predicates.previous_hosts".into(),
                config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                    to_any(super::PREVIOUS_HOSTS_TYPE, &envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate {}),
                )),
            }],
            host_selection_retry_max_attempts: 5,
            ..Default::default()
        }),
        request_mirror_policies: vec![route_action::RequestMirrorPolicy {
            cluster: "mirror".into(),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(pct(25)),
                ..Default::default()
            }),
            ..Default::default()
        }],
        hash_policy: vec![route_action::HashPolicy {
            policy_specifier: Some(route_action::hash_policy::PolicySpecifier::Cookie(
                route_action::hash_policy::Cookie {
                    name: "session".into(),
                    ttl: Some(PDuration { seconds: 10, nanos: 0 }),
                    path: "/".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }],
        ..Default::default()
    });
    r.typed_per_filter_config = per_filter;
    r.request_headers_to_add = vec![header("x-set", "1", H::OverwriteIfExistsOrAdd)];
    r.request_headers_to_remove = vec!["X-Gone".into()];
    r.response_headers_to_add = vec![header("x-add", "2", H::AppendIfExistsOrAdd)];
    r.r#match = Some(RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/api/".into())),
        query_parameters: vec![QueryParameterMatcher {
            name: "debug".into(),
            query_parameter_match_specifier: Some(
                query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
            ),
        }],
        ..Default::default()
    });
    let t = convert(vec![r]).expect("converts");
    assert!(t.virtual_hosts[0].include_request_attempt_count);
    let route = first(&t);
    assert_eq!(
        route.matcher.query_parameters[0].kind,
        QueryParamMatchKind::Present(true)
    );
    assert_eq!(
        route.request_headers.add[0].action,
        AppendAction::OverwriteIfExistsOrAdd
    );
    assert_eq!(route.request_headers.remove, ["x-gone"]);
    assert_eq!(
        route.response_headers.add[0].action,
        AppendAction::AppendIfExistsOrAdd
    );
    let fault = route.fault.as_ref().expect("fault");
    assert_eq!(
        fault.delay.as_ref().map(|d| d.percentage.numerator),
        Some(50)
    );
    assert_eq!(
        fault.abort.as_ref().map(|a| a.kind),
        Some(AbortKind::GrpcStatus(14))
    );
    let cors = route.cors.as_ref().expect("cors");
    assert_eq!(cors.filter_enabled, Some(Fraction::ALL));
    assert!(cors.forward_not_matching_preflights);
    let Action::Route(a) = &route.action else {
        panic!("{route:?}")
    };
    assert_eq!(a.prefix_rewrite.as_deref(), Some("/v2/"));
    assert_eq!(a.host_rewrite.as_deref(), Some("new.host"));
    let retry = a.retry_policy.as_ref().expect("retry");
    assert_eq!(retry.num_retries, 2);
    assert!(retry.previous_hosts);
    assert_eq!(retry.host_selection_max_attempts, 5);
    assert_eq!(retry.retry_on[0], RetryOn::ConnectFailure);
    assert_eq!(
        retry.per_try_timeout,
        Some(std::time::Duration::from_millis(250))
    );
    assert_eq!(a.mirrors[0].fraction.map(|f| f.numerator), Some(25));
    assert!(
        matches!(&a.hash_policy[0], config::HashPolicy::Cookie { name, .. } if name == "session")
    );

    let redirect = proto::Route {
        r#match: prefix(),
        action: Some(route::Action::Redirect(RedirectAction {
            host_redirect: "b.com".into(),
            port_redirect: 8443,
            response_code: redirect_action::RedirectResponseCode::PermanentRedirect as i32,
            scheme_rewrite_specifier: Some(
                redirect_action::SchemeRewriteSpecifier::SchemeRedirect("HTTPS".into()),
            ),
            path_rewrite_specifier: Some(redirect_action::PathRewriteSpecifier::PathRedirect(
                "/x".into(),
            )),
            ..Default::default()
        })),
        ..Default::default()
    };
    let direct = proto::Route {
        r#match: prefix(),
        action: Some(route::Action::DirectResponse(proto::DirectResponseAction {
            status: 418,
            body: Some(core::DataSource {
                specifier: Some(core::data_source::Specifier::InlineString("teapot".into())),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let t = convert(vec![redirect, direct]).expect("converts");
    let routes = &t.virtual_hosts[0].routes;
    let Action::Redirect(r) = &routes[0].action else {
        panic!()
    };
    assert_eq!(
        (r.scheme.as_deref(), r.port, r.response_code),
        (Some("https"), Some(8443), 308)
    );
    let Action::DirectResponse(d) = &routes[1].action else {
        panic!()
    };
    assert_eq!((d.status, d.body.as_deref()), (418, Some(&b"teapot"[..])));
}

#[test]
fn route_level_rejections_are_precise() {
    use header_value_option::HeaderAppendAction as H;
    let base = "RouteConfiguration outbound: virtual_hosts[0].routes[0]";
    let mut r = to(Default::default());
    r.request_headers_to_add = vec![header(":path", "/x", H::OverwriteIfExistsOrAdd)];
    assert_eq!(
        convert_err(vec![r]),
        format!(
            "{base}.request_headers_to_add[0].header.key: pseudo-header \":path\" cannot be added or removed"
        )
    );

    let mut r = to(Default::default());
    r.response_headers_to_remove = vec!["host".into()];
    assert_eq!(
        convert_err(vec![r]),
        format!("{base}.response_headers_to_remove[0]: host is not supported")
    );

    let r = to(proto::RouteAction {
        retry_policy: Some(RetryPolicy {
            retry_on: "5xx".into(),
            retry_host_predicate: vec![retry_policy::RetryHostPredicate {
                name: "envoy.retry_host_predicates.omit_canary_hosts".into(),
                config_type: None,
            }],
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        convert_err(vec![r]),
        format!(
            "{base}.route.retry_policy.retry_host_predicate[0].name: envoy.retry_host_predicates.omit_canary_hosts is not supported"
        )
    );

    let r = to(proto::RouteAction {
        request_mirror_policies: vec![route_action::RequestMirrorPolicy {
            cluster: "m".into(),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(pct(5)),
                runtime_key: "k".into(),
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    assert_eq!(
        convert_err(vec![r]),
        format!(
            "{base}.route.request_mirror_policies[0].runtime_fraction.runtime_key: field is not supported"
        )
    );

    let mut r = to(Default::default());
    r.typed_per_filter_config.insert(
        "envoy.filters.http.fault".into(),
        to_any(
            FAULT_TYPE,
            &HttpFault {
                abort: Some(FaultAbort {
                    error_type: Some(fault_abort::ErrorType::HttpStatus(700)),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    );
    assert_eq!(
        convert_err(vec![r]),
        format!(
            "{base}.typed_per_filter_config[\"envoy.filters.http.fault\"].abort.http_status: 700 is not between 200 and 599"
        )
    );

    let mut r = to(Default::default());
    r.typed_per_filter_config
        .insert("envoy.filters.http.lua".into(), Any::default());
    assert_eq!(
        convert_err(vec![r]),
        format!(
            "{base}.typed_per_filter_config[\"envoy.filters.http.lua\"]: filter is not supported"
        )
    );

    let r = to(proto::RouteAction {
        hash_policy: vec![route_action::HashPolicy {
            policy_specifier: Some(route_action::hash_policy::PolicySpecifier::FilterState(
                Default::default(),
            )),
            ..Default::default()
        }],
        ..Default::default()
    });
    assert_eq!(
        convert_err(vec![r]),
        format!("{base}.route.hash_policy[0].filter_state: field is not supported")
    );

    let r = proto::Route {
        r#match: prefix(),
        action: Some(route::Action::DirectResponse(proto::DirectResponseAction {
            status: 99,
            ..Default::default()
        })),
        ..Default::default()
    };
    assert_eq!(
        convert_err(vec![r]),
        format!("{base}.direct_response.status: 99 is not between 200 and 599")
    );
}
