//! The shadow metadata and the `filter_enabled_metadata` decision (Istio's CUSTOM scoping).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::config::{
    MetadataMatcher, Permission, Principal, Rbac, RbacAction, RbacPolicy, StringMatchKind,
    ValueMatcher,
};

fn shadow(path: &str) -> Arc<ShadowRbac> {
    Arc::new(ShadowRbac {
        rules: Rbac {
            action: RbacAction::Deny,
            policies: vec![RbacPolicy {
                name: "istio-ext-authz-ns[default]-policy[x]-rule[0]".into(),
                permissions: vec![Permission::UrlPath(StringMatch {
                    kind: StringMatchKind::Prefix(path.into()),
                    ignore_case: false,
                })],
                principals: vec![Principal::Any],
            }],
        },
        stat_prefix: "istio_ext_authz_".into(),
    })
}

fn attributes<'a>(headers: &'a HeaderMap, path: &'a str) -> RequestAttributes<'a> {
    RequestAttributes {
        headers,
        authority: "echo:9080",
        method: "GET",
        path_and_query: path,
        local: None,
        peer: None,
        peer_identity: None,
        sni: None,
        jwt: None,
    }
}

fn filter() -> ExtAuthz {
    ExtAuthz {
        service: ExtAuthzService::Grpc {
            cluster: "c".into(),
            authority: String::new(),
            timeout: std::time::Duration::from_secs(1),
        },
        failure_mode_allow: false,
        status_on_error: 403,
        filter_enabled_metadata: Some(MetadataMatcher {
            filter: RBAC_FILTER.into(),
            path: vec!["istio_ext_authz_shadow_effective_policy_id".into()],
            value: ValueMatcher::String(StringMatch {
                kind: StringMatchKind::Prefix("istio-ext-authz".into()),
                ignore_case: false,
            }),
            invert: false,
        }),
        allowed_headers: None,
        with_request_body: None,
    }
}

#[test]
fn only_requests_a_custom_rule_matches_are_checked() {
    let headers = HeaderMap::new();
    let filters = [shadow("/admin")];
    let admin = record_shadow(&filters, &attributes(&headers, "/admin/users?x=1"));
    assert_eq!(
        admin.0["istio_ext_authz_shadow_effective_policy_id"],
        "istio-ext-authz-ns[default]-policy[x]-rule[0]"
    );
    assert_eq!(admin.0["istio_ext_authz_shadow_engine_result"], "denied");
    assert!(enabled(&filter(), Some(&admin)));
    let public = record_shadow(&filters, &attributes(&headers, "/public"));
    assert!(
        !public
            .0
            .contains_key("istio_ext_authz_shadow_effective_policy_id")
    );
    assert_eq!(public.0["istio_ext_authz_shadow_engine_result"], "allowed");
    assert!(!enabled(&filter(), Some(&public)));
    assert!(!enabled(&filter(), None));
    let always = ExtAuthz {
        filter_enabled_metadata: None,
        ..filter()
    };
    assert!(enabled(&always, None));
}

#[test]
fn allowed_headers_select_what_the_check_carries() {
    let mut headers = HeaderMap::new();
    headers.insert("x-ext-authz", HeaderValue::from_static("allow"));
    headers.insert("cookie", HeaderValue::from_static("secret"));
    let all: Vec<_> = check_headers(&filter(), &headers)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(all.len(), 2);
    let only = ExtAuthz {
        allowed_headers: Some(vec![StringMatch {
            kind: StringMatchKind::Exact("X-Ext-Authz".into()),
            ignore_case: true,
        }]),
        ..filter()
    };
    let some: Vec<_> = check_headers(&only, &headers)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(some, ["x-ext-authz"]);
}
