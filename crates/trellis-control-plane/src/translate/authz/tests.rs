//! AuthorizationPolicy → RBAC: selection, actions and order, empty-policy semantics, and the
//! generated matchers (in istiod's shape).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Principal, Rbac, permission, principal, rbac::Action,
};
use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, value_matcher};
use prost::Message;

use super::*;
use crate::model::MeshModel;
use crate::translate::test_support::{self, sidecar as node};

const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec: {address: 127.0.9.10, labels: {app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other, namespace: default}
spec: {address: 127.0.9.11, labels: {app: other}}
"#;

fn model(policies: &str) -> MeshModel {
    test_support::model(&format!("{SERVICES}---\n{policies}"))
}

/// The RBAC configs of the echo workload (127.0.9.10), in filter order.
fn filters_for(policies: &str, ip: &str) -> Vec<Rbac> {
    let m = model(policies);
    let n = node(ip, "default");
    let proxy = m.proxy_view(&n);
    http_filters(&m, &proxy)
        .into_iter()
        .map(|f| {
            assert_eq!(f.name, HTTP_RBAC);
            let Some(http_filter::ConfigType::TypedConfig(any)) = f.config_type else {
                panic!("typed config expected");
            };
            assert_eq!(any.type_url, HTTP_RBAC_TYPE);
            HttpRbac::decode(any.value.as_slice())
                .unwrap()
                .rules
                .unwrap()
        })
        .collect()
}

fn echo_filters(policies: &str) -> Vec<Rbac> {
    filters_for(policies, "127.0.9.10")
}

fn ap(name: &str, namespace: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}\n---\n"
    )
}

fn names(r: &Rbac) -> Vec<String> {
    let mut n: Vec<String> = r.policies.keys().cloned().collect();
    n.sort();
    n
}

#[test]
fn no_policy_means_no_filter() {
    assert!(echo_filters("").is_empty());
}

#[test]
fn deny_then_allow_then_audit_order_is_log_deny_allow() {
    let f = echo_filters(&format!(
        "{}{}{}",
        ap(
            "a",
            "default",
            "  rules: [{to: [{operation: {paths: [/a]}}]}]"
        ),
        ap(
            "d",
            "default",
            "  action: DENY\n  rules: [{to: [{operation: {methods: [DELETE]}}]}]"
        ),
        ap("l", "default", "  action: AUDIT\n  rules: [{}]"),
    ));
    let actions: Vec<i32> = f.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        vec![
            Action::Log as i32,
            Action::Deny as i32,
            Action::Allow as i32
        ]
    );
    assert_eq!(names(&f[1]), vec!["ns[default]-policy[d]-rule[0]"]);
    assert_eq!(names(&f[2]), vec!["ns[default]-policy[a]-rule[0]"]);
}

#[test]
fn allow_without_rules_never_matches_and_empty_rule_matches_all() {
    let f = echo_filters(&ap("nothing", "default", "  {}"));
    assert_eq!(f.len(), 1);
    let p = &f[0].policies["ns[default]-policy[nothing]-rule[0]"];
    assert_eq!(
        p.permissions[0].rule,
        Some(permission::Rule::NotRule(Box::new(Permission {
            rule: Some(permission::Rule::Any(true))
        })))
    );
    let f = echo_filters(&ap("all", "default", "  rules: [{}]"));
    let p = &f[0].policies["ns[default]-policy[all]-rule[0]"];
    assert_eq!(p.permissions[0].rule, Some(permission::Rule::Any(true)));
    assert_eq!(
        p.principals[0].identifier,
        Some(principal::Identifier::Any(true))
    );
}

#[test]
fn selector_root_namespace_and_other_namespaces() {
    let policies = format!(
        "{}{}{}{}",
        ap(
            "for-echo",
            "default",
            "  selector: {matchLabels: {app: echo}}\n  rules: [{}]"
        ),
        ap("ns-wide", "default", "  action: DENY\n  rules: [{}]"),
        ap("mesh", "istio-system", "  action: DENY\n  rules: [{}]"),
        ap("elsewhere", "prod", "  rules: [{}]"),
    );
    let echo = echo_filters(&policies);
    assert_eq!(echo.len(), 2);
    assert_eq!(
        names(&echo[0]),
        vec![
            "ns[default]-policy[ns-wide]-rule[0]",
            "ns[istio-system]-policy[mesh]-rule[0]"
        ]
    );
    assert_eq!(
        names(&echo[1]),
        vec!["ns[default]-policy[for-echo]-rule[0]"]
    );
    // The other workload: not selected by `for-echo`, so no ALLOW filter at all.
    let other = filters_for(&policies, "127.0.9.11");
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].action, Action::Deny as i32);
}

#[test]
fn sidecars_ignore_policies_bound_with_target_refs_as_istio() {
    // Even when the ServiceEntry named is the sidecar's own (that kind is for waypoints).
    for refs in [
        "targetRefs: [{kind: ServiceEntry, group: networking.istio.io, name: echo}]",
        "targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: echo}",
    ] {
        let policies = ap("by-ref", "default", &format!("  {refs}\n  rules: [{{}}]"));
        assert!(echo_filters(&policies).is_empty(), "{refs}");
        assert!(filters_for(&policies, "127.0.9.11").is_empty(), "{refs}");
    }
}

#[test]
fn custom_fails_closed_as_deny() {
    let f = echo_filters(&ap(
        "ext",
        "default",
        "  action: CUSTOM\n  provider: {name: authz}\n  rules: [{to: [{operation: {paths: [/x]}}]}]",
    ));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].action, Action::Deny as i32);
}

fn and_rules(p: &Permission) -> &Vec<Permission> {
    match &p.rule {
        Some(permission::Rule::AndRules(s)) => &s.rules,
        other => panic!("and_rules expected, got {other:?}"),
    }
}

fn and_ids(p: &Principal) -> &Vec<Principal> {
    match &p.identifier {
        Some(principal::Identifier::AndIds(s)) => &s.ids,
        other => panic!("and_ids expected, got {other:?}"),
    }
}

fn or_ids(p: &Principal) -> &Vec<Principal> {
    match &p.identifier {
        Some(principal::Identifier::OrIds(s)) => &s.ids,
        other => panic!("or_ids expected, got {other:?}"),
    }
}

fn principal_name(p: &Principal) -> MatchPattern {
    match &p.identifier {
        Some(principal::Identifier::Authenticated(a)) => {
            a.principal_name.clone().unwrap().match_pattern.unwrap()
        }
        other => panic!("authenticated expected, got {other:?}"),
    }
}

#[test]
fn operation_fields_in_istio_order() {
    let f = echo_filters(&ap(
        "op",
        "default",
        "  rules:\n  - to:\n    - operation: {hosts: [Echo.Example], notMethods: [POST], paths: ['/api/*', '*.html', '*', '/v/{*}/x/{**}'], ports: ['9080']}",
    ));
    let p = &f[0].policies["ns[default]-policy[op]-rule[0]"];
    let items = and_rules(&p.permissions[0]);
    assert_eq!(items.len(), 4);
    // hosts: `:authority`, case-insensitive exact.
    let Some(permission::Rule::OrRules(hosts)) = &items[0].rule else {
        panic!()
    };
    let Some(permission::Rule::Header(h)) = &hosts.rules[0].rule else {
        panic!()
    };
    assert_eq!(h.name, ":authority");
    let Some(HeaderMatchSpecifier::StringMatch(sm)) = &h.header_match_specifier else {
        panic!()
    };
    assert!(sm.ignore_case);
    assert_eq!(
        sm.match_pattern,
        Some(MatchPattern::Exact("Echo.Example".into()))
    );
    // notMethods: a not_rule of the OR.
    assert!(matches!(items[1].rule, Some(permission::Rule::NotRule(_))));
    // paths: prefix, suffix, `.+` and a template as a regex.
    let Some(permission::Rule::OrRules(paths)) = &items[2].rule else {
        panic!()
    };
    let patterns: Vec<MatchPattern> = paths
        .rules
        .iter()
        .map(|r| match &r.rule {
            Some(permission::Rule::UrlPath(p)) => match &p.rule {
                Some(envoy_types::pb::envoy::r#type::matcher::v3::path_matcher::Rule::Path(s)) => {
                    s.match_pattern.clone().unwrap()
                }
                None => panic!(),
            },
            _ => panic!(),
        })
        .collect();
    assert_eq!(patterns[0], MatchPattern::Prefix("/api/".into()));
    assert_eq!(patterns[1], MatchPattern::Suffix(".html".into()));
    let MatchPattern::SafeRegex(any) = &patterns[2] else {
        panic!()
    };
    assert_eq!(any.regex, ".+");
    let MatchPattern::SafeRegex(t) = &patterns[3] else {
        panic!()
    };
    assert_eq!(t.regex, "/v/[^/]+/x/.+");
    let Some(permission::Rule::OrRules(ports)) = &items[3].rule else {
        panic!()
    };
    assert_eq!(
        ports.rules[0].rule,
        Some(permission::Rule::DestinationPort(9080))
    );
}

#[test]
fn source_fields_in_istio_order() {
    let f = echo_filters(&ap(
        "src",
        "default",
        "  rules:\n  - from:\n    - source: {principals: [cluster.local/ns/default/sa/client, 'spiffe://x/*', '*/sa/admin'], requestPrincipals: ['https://iss/sub'], notNamespaces: [prod], ipBlocks: [127.0.0.0/8, 10.1.2.3]}",
    ));
    let p = &f[0].policies["ns[default]-policy[src]-rule[0]"];
    let items = and_ids(&p.principals[0]);
    assert_eq!(items.len(), 4);
    let principals = or_ids(&items[0]);
    assert_eq!(
        principal_name(&principals[0]),
        MatchPattern::Exact("spiffe://cluster.local/ns/default/sa/client".into())
    );
    assert_eq!(
        principal_name(&principals[1]),
        MatchPattern::Prefix("spiffe://x/".into())
    );
    let MatchPattern::SafeRegex(re) = principal_name(&principals[2]) else {
        panic!()
    };
    assert_eq!(re.regex, "spiffe://.*/sa/admin");
    // requestPrincipals: and_ids[iss, sub] on the JWT payload.
    let jwt = and_ids(&items[1]);
    let Some(principal::Identifier::SourcedMetadata(iss)) = &jwt[0].identifier else {
        panic!()
    };
    let iss = iss.metadata_matcher.as_ref().unwrap();
    assert_eq!(iss.filter, rule::JWT_FILTER);
    let keys: Vec<_> = iss
        .path
        .iter()
        .map(|s| match &s.segment {
            Some(
                envoy_types::pb::envoy::r#type::matcher::v3::metadata_matcher::path_segment::Segment::Key(k),
            ) => k.clone(),
            None => panic!(),
        })
        .collect();
    assert_eq!(keys, vec!["payload", "iss"]);
    let Some(value_matcher::MatchPattern::StringMatch(sm)) =
        iss.value.as_ref().unwrap().match_pattern.clone()
    else {
        panic!()
    };
    assert_eq!(
        sm.match_pattern,
        Some(MatchPattern::Exact("https://iss".into()))
    );
    // notNamespaces: not_id of the namespace regex.
    let Some(principal::Identifier::NotId(ns)) = &items[2].identifier else {
        panic!()
    };
    let MatchPattern::SafeRegex(re) = principal_name(&or_ids(ns)[0]) else {
        panic!()
    };
    assert_eq!(re.regex, ".*/ns/prod/.*");
    // ipBlocks: direct_remote_ip, a bare address as /32.
    let ips = or_ids(&items[3]);
    let Some(principal::Identifier::DirectRemoteIp(c)) = &ips[1].identifier else {
        panic!()
    };
    assert_eq!(c.address_prefix, "10.1.2.3");
    assert_eq!(c.prefix_len.unwrap().value, 32);
}

#[test]
fn when_conditions_split_between_permissions_and_principals() {
    let f = echo_filters(&ap(
        "when",
        "default",
        "  rules:\n  - to: [{operation: {methods: [GET]}}]\n    when:\n    - {key: 'request.headers[x-user]', values: [alice]}\n    - {key: destination.port, values: ['9080']}\n    - {key: 'request.auth.claims[groups][team]', values: [a, b]}\n    - {key: source.namespace, notValues: [prod]}",
    ));
    let p = &f[0].policies["ns[default]-policy[when]-rule[0]"];
    // The operation's method, then destination.port.
    assert_eq!(and_rules(&p.permissions[0]).len(), 2);
    // No `from`: one principal made of the three principal conditions.
    let ids = and_ids(&p.principals[0]);
    assert_eq!(ids.len(), 3);
    let Some(principal::Identifier::Header(h)) = &or_ids(&ids[0])[0].identifier else {
        panic!()
    };
    assert_eq!(h.name, "x-user");
    let Some(principal::Identifier::SourcedMetadata(claims)) = &ids[1].identifier else {
        panic!()
    };
    let claims = claims.metadata_matcher.as_ref().unwrap();
    assert_eq!(claims.path.len(), 3);
    // A string claim or a list containing one of the values.
    assert!(matches!(
        claims.value.as_ref().unwrap().match_pattern,
        Some(value_matcher::MatchPattern::OrMatch(_))
    ));
    assert!(matches!(
        ids[2].identifier,
        Some(principal::Identifier::NotId(_))
    ));
}

#[test]
fn request_principal_wildcards() {
    let f = echo_filters(&ap(
        "rp",
        "default",
        "  rules: [{from: [{source: {requestPrincipals: ['*', 'iss/*', '*/sub']}}]}]",
    ));
    let p = &f[0].policies["ns[default]-policy[rp]-rule[0]"];
    let alternatives = or_ids(&and_ids(&p.principals[0])[0]);
    let pair = |i: usize| -> (MatchPattern, MatchPattern) {
        let ids = and_ids(&alternatives[i]);
        let m = |p: &Principal| match &p.identifier {
            Some(principal::Identifier::SourcedMetadata(m)) => {
                match m
                    .metadata_matcher
                    .clone()
                    .unwrap()
                    .value
                    .clone()
                    .unwrap()
                    .match_pattern
                    .unwrap()
                {
                    value_matcher::MatchPattern::StringMatch(s) => s.match_pattern.unwrap(),
                    _ => panic!(),
                }
            }
            _ => panic!(),
        };
        (m(&ids[0]), m(&ids[1]))
    };
    let re = |r: &str| {
        MatchPattern::SafeRegex(envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher {
            regex: r.into(),
            ..Default::default()
        })
    };
    assert_eq!(pair(0), (re(".+"), re(".+")));
    assert_eq!(pair(1), (MatchPattern::Exact("iss".into()), re(".+")));
    assert_eq!(pair(2), (re(".+"), MatchPattern::Exact("sub".into())));
}

#[test]
fn tcp_drops_http_only_allow_rules_and_tightens_deny_rules() {
    let m = model(&format!(
        "{}{}",
        ap(
            "allow-get",
            "default",
            "  rules: [{to: [{operation: {methods: [GET]}}]}, {to: [{operation: {ports: ['9080']}}]}]"
        ),
        ap(
            "deny-post",
            "default",
            "  action: DENY\n  rules: [{to: [{operation: {methods: [POST], ports: ['9090']}}]}]"
        ),
    ));
    let n = node("127.0.9.10", "default");
    let proxy = m.proxy_view(&n);
    let filters = network_filters(&m, &proxy);
    assert_eq!(filters.len(), 2);
    let decode = |f: &envoy_types::pb::envoy::config::listener::v3::Filter| {
        use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
        use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
        let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
            panic!()
        };
        NetworkRbac::decode(any.value.as_slice()).unwrap()
    };
    let deny = decode(&filters[0]);
    assert_eq!(deny.stat_prefix, "tcp.");
    let rules = deny.rules.unwrap();
    // The method is dropped: only the port is left, so more is denied.
    let p = &rules.policies["ns[default]-policy[deny-post]-rule[0]"];
    assert_eq!(and_rules(&p.permissions[0]).len(), 1);
    let allow = decode(&filters[1]).rules.unwrap();
    assert_eq!(names(&allow), vec!["ns[default]-policy[allow-get]-rule[1]"]);
}

#[test]
fn identical_configs_encode_identically() {
    let policies = (0..12)
        .map(|i| ap(&format!("p{i}"), "default", "  rules: [{}]"))
        .collect::<String>();
    let m = model(&policies);
    let n = node("127.0.9.10", "default");
    let proxy = m.proxy_view(&n);
    let a = http_filters(&m, &proxy);
    let b = http_filters(&m, &proxy);
    assert_eq!(a, b);
}

#[test]
fn path_normalization_follows_the_mesh_config_as_istiod() {
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::PathWithEscapedSlashesAction as A;
    let hcm = |yaml: &str| {
        let mesh = trellis_api::mesh_config::MeshConfig::parse(yaml).expect("valid mesh config");
        let (normalize, merge, action) = path_normalization(&mesh);
        (normalize.map(|b| b.value), merge, action)
    };
    let mode = |m: &str| hcm(&format!("pathNormalization: {{normalization: {m}}}"));
    let keep = A::KeepUnchanged as i32;
    assert_eq!(hcm(""), (Some(true), false, keep));
    assert_eq!(mode("DEFAULT"), (Some(true), false, keep));
    assert_eq!(mode("NONE"), (Some(false), false, keep));
    assert_eq!(mode("BASE"), (Some(true), false, keep));
    assert_eq!(mode("MERGE_SLASHES"), (Some(true), true, keep));
    assert_eq!(
        mode("DECODE_AND_MERGE_SLASHES"),
        (Some(true), true, A::UnescapeAndForward as i32)
    );
}

#[test]
fn every_connection_manager_normalizes_paths_as_istiod_sets_it() {
    use envoy_types::pb::envoy::config::listener::v3::filter;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    let mesh = trellis_api::MeshConfig::parse("pathNormalization: {normalization: MERGE_SLASHES}")
        .expect("mesh config");
    let m = model("").with_mesh_config(std::sync::Arc::new(mesh));
    let n = node("127.0.9.2", "default");
    let proxy = m.proxy_view(&n);
    let listeners = crate::translate::listeners::all(&m, &proxy, &[]);
    let outbound = listeners
        .iter()
        .find(|l| l.name == "virtualOutbound")
        .expect("outbound listener");
    let Some(filter::ConfigType::TypedConfig(any)) =
        &outbound.filter_chains[0].filters[0].config_type
    else {
        panic!("typed config expected");
    };
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("hcm");
    assert_eq!(hcm.normalize_path.map(|b| b.value), Some(true));
    assert!(hcm.merge_slashes);
}
