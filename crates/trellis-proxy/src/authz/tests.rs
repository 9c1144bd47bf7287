//! The RBAC evaluator on hand-built configs: actions, combinators and each matcher kind.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use serde_json::json;

use super::*;
use crate::config::{Cidr, RbacPolicy, StringMatch, StringMatchKind};

fn exact(s: &str) -> StringMatch {
    StringMatch {
        kind: StringMatchKind::Exact(s.into()),
        ignore_case: false,
    }
}

fn prefix(s: &str) -> StringMatch {
    StringMatch {
        kind: StringMatchKind::Prefix(s.into()),
        ignore_case: false,
    }
}

fn policy(name: &str, permission: Permission, principal: Principal) -> RbacPolicy {
    RbacPolicy {
        name: name.into(),
        permissions: vec![permission],
        principals: vec![principal],
    }
}

fn rbac(action: RbacAction, policies: Vec<RbacPolicy>) -> Arc<Rbac> {
    Arc::new(Rbac { action, policies })
}

struct Req {
    headers: HeaderMap,
    path: String,
    method: String,
    identity: Option<String>,
    jwt: Option<VerifiedJwt>,
}

impl Req {
    fn new(path: &str) -> Self {
        Req {
            headers: HeaderMap::new(),
            path: path.into(),
            method: "GET".into(),
            identity: None,
            jwt: None,
        }
    }

    fn attrs(&self) -> RequestAttributes<'_> {
        RequestAttributes {
            headers: &self.headers,
            authority: "Echo:9080",
            method: &self.method,
            path_and_query: &self.path,
            local: Some("127.0.5.10:9080".parse().unwrap()),
            peer: Some("127.0.5.2:40000".parse().unwrap()),
            peer_identity: self.identity.as_deref(),
            sni: None,
            jwt: self.jwt.as_ref(),
        }
    }
}

fn admin_path() -> Permission {
    Permission::UrlPath(prefix("/admin"))
}

#[test]
fn deny_matches_win_and_name_the_policy() {
    let filters = [rbac(
        RbacAction::Deny,
        vec![
            policy("a-policy", admin_path(), Principal::Any),
            policy("b-policy", admin_path(), Principal::Any),
        ],
    )];
    // Policies come sorted by name from the converter: the first match in name order is
    // reported, as Envoy's sorted map does.
    assert_eq!(
        evaluate(&filters, &Req::new("/admin?x=1").attrs()),
        Verdict::Denied("denied by a-policy".into())
    );
    assert_eq!(
        evaluate(&filters, &Req::new("/public").attrs()),
        Verdict::Allowed
    );
}

#[test]
fn allow_needs_a_match_and_an_empty_allow_denies_all() {
    let filters = [rbac(
        RbacAction::Allow,
        vec![policy("p", admin_path(), Principal::Any)],
    )];
    assert_eq!(
        evaluate(&filters, &Req::new("/admin").attrs()),
        Verdict::Allowed
    );
    assert_eq!(
        evaluate(&filters, &Req::new("/x").attrs()),
        Verdict::Denied("denied: no ALLOW policy matched (p)".into())
    );
    let none = [rbac(RbacAction::Allow, Vec::new())];
    assert!(matches!(
        evaluate(&none, &Req::new("/").attrs()),
        Verdict::Denied(_)
    ));
}

#[test]
fn log_never_denies_and_filters_run_in_order() {
    let filters = [
        rbac(
            RbacAction::Log,
            vec![policy("audit", Permission::Any, Principal::Any)],
        ),
        rbac(
            RbacAction::Deny,
            vec![policy("deny", admin_path(), Principal::Any)],
        ),
        rbac(
            RbacAction::Allow,
            vec![policy("allow", Permission::Any, Principal::Any)],
        ),
    ];
    assert_eq!(
        evaluate(&filters, &Req::new("/admin").attrs()),
        Verdict::Denied("denied by deny".into())
    );
    assert_eq!(evaluate(&filters, &Req::new("/").attrs()), Verdict::Allowed);
    // Envoy counts per filter: the AUDIT filter let /admin through before DENY stopped it.
    assert_eq!(decide(&filters, &Req::new("/admin").attrs()).1, 1);
    assert_eq!(decide(&filters, &Req::new("/").attrs()).1, 3);
}

#[test]
fn combinators_headers_and_ports() {
    let method = |m: &str| {
        Permission::Header(RbacHeaderMatcher {
            name: ":method".into(),
            kind: HeaderValueMatch::String(exact(m)),
            invert_match: false,
        })
    };
    let host = Permission::Header(RbacHeaderMatcher {
        name: ":authority".into(),
        kind: HeaderValueMatch::String(StringMatch {
            kind: StringMatchKind::Exact("echo:9080".into()),
            ignore_case: true,
        }),
        invert_match: false,
    });
    let p = Permission::And(vec![
        Permission::Or(vec![method("GET"), method("HEAD")]),
        Permission::Not(Box::new(Permission::DestinationPort(8080))),
        host,
    ]);
    let filters = [rbac(RbacAction::Deny, vec![policy("p", p, Principal::Any)])];
    let mut req = Req::new("/");
    assert!(matches!(
        evaluate(&filters, &req.attrs()),
        Verdict::Denied(_)
    ));
    req.method = "POST".into();
    assert_eq!(evaluate(&filters, &req.attrs()), Verdict::Allowed);
}

#[test]
fn request_headers_join_values_and_absent_headers_never_match_strings() {
    let user = |kind| {
        Principal::Header(RbacHeaderMatcher {
            name: "x-user".into(),
            kind,
            invert_match: false,
        })
    };
    let filters = [rbac(
        RbacAction::Allow,
        vec![policy(
            "p",
            Permission::Any,
            user(HeaderValueMatch::String(exact("a,b"))),
        )],
    )];
    let mut req = Req::new("/");
    assert!(matches!(
        evaluate(&filters, &req.attrs()),
        Verdict::Denied(_)
    ));
    req.headers.append("x-user", HeaderValue::from_static("a"));
    req.headers.append("x-user", HeaderValue::from_static("b"));
    assert_eq!(evaluate(&filters, &req.attrs()), Verdict::Allowed);
}

#[test]
fn authenticated_needs_a_verified_peer() {
    let filters = [rbac(
        RbacAction::Allow,
        vec![policy(
            "p",
            Permission::Any,
            Principal::Authenticated(Some(exact("spiffe://cluster.local/ns/default/sa/client"))),
        )],
    )];
    let mut req = Req::new("/");
    assert!(matches!(
        evaluate(&filters, &req.attrs()),
        Verdict::Denied(_)
    ));
    req.identity = Some("spiffe://cluster.local/ns/default/sa/other".into());
    assert!(matches!(
        evaluate(&filters, &req.attrs()),
        Verdict::Denied(_)
    ));
    req.identity = Some("spiffe://cluster.local/ns/default/sa/client".into());
    assert_eq!(evaluate(&filters, &req.attrs()), Verdict::Allowed);
}

#[test]
fn ip_blocks_use_the_peer_and_remote_ip_the_forwarded_for() {
    let cidr = |s: &str, len| Cidr {
        address: s.parse().unwrap(),
        prefix_len: len,
    };
    let direct = [rbac(
        RbacAction::Allow,
        vec![policy(
            "p",
            Permission::Any,
            Principal::DirectRemoteIp(cidr("127.0.5.0", 24)),
        )],
    )];
    let mut req = Req::new("/");
    assert_eq!(evaluate(&direct, &req.attrs()), Verdict::Allowed);
    let remote = [rbac(
        RbacAction::Allow,
        vec![policy(
            "p",
            Permission::Any,
            Principal::RemoteIp(cidr("10.0.0.0", 8)),
        )],
    )];
    assert!(matches!(
        evaluate(&remote, &req.attrs()),
        Verdict::Denied(_)
    ));
    req.headers.insert(
        "x-forwarded-for",
        HeaderValue::from_static("192.168.0.1, 10.1.2.3"),
    );
    assert_eq!(evaluate(&remote, &req.attrs()), Verdict::Allowed);
    assert!(cidr("::1", 128).contains("::1".parse().unwrap()));
    assert!(!cidr("127.0.0.0", 8).contains("::1".parse().unwrap()));
    assert!(cidr("0.0.0.0", 0).contains("8.8.8.8".parse().unwrap()));
}

#[test]
fn jwt_claims_are_read_from_the_verified_payload() {
    let claim = |path: &[&str], value| {
        Principal::Metadata(MetadataMatcher {
            filter: "envoy.filters.http.jwt_authn".into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            value,
            invert: false,
        })
    };
    let either = |v: &str| {
        ValueMatcher::Or(vec![
            ValueMatcher::ListOneOf(Box::new(ValueMatcher::String(exact(v)))),
            ValueMatcher::String(exact(v)),
        ])
    };
    let filters = [rbac(
        RbacAction::Allow,
        vec![policy(
            "p",
            Permission::Any,
            Principal::And(vec![
                claim(&["payload", "iss"], ValueMatcher::String(exact("issuer"))),
                claim(&["payload", "groups"], either("admin")),
                claim(&["payload", "org", "team"], either("core")),
            ]),
        )],
    )];
    let mut req = Req::new("/");
    assert!(matches!(
        evaluate(&filters, &req.attrs()),
        Verdict::Denied(_)
    ));
    req.jwt = Some(VerifiedJwt {
        provider: "origins-0".into(),
        metadata_key: Some("payload".into()),
        issuer: "issuer".into(),
        payload: json!({"iss": "issuer", "groups": ["dev", "admin"], "org": {"team": "core"}}),
    });
    assert_eq!(evaluate(&filters, &req.attrs()), Verdict::Allowed);
    if let Some(jwt) = &mut req.jwt {
        jwt.payload = json!({"iss": "issuer", "groups": "dev", "org": {"team": "core"}});
    }
    assert!(matches!(
        evaluate(&filters, &req.attrs()),
        Verdict::Denied(_)
    ));
}
