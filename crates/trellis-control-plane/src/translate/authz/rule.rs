//! One AuthorizationPolicy rule → one Envoy RBAC `Policy`, in istiod's shape
//! (`pilot/pkg/security/authz/model`): every `to` becomes a permission and every `from` a
//! principal, each an `and_rules`/`and_ids` of its attributes in Istio's order; an attribute's
//! values are ORed and its `not` values are a `not_rule`/`not_id` of their OR; `when` conditions
//! are appended to every permission (destination and SNI keys) or principal (the others). No
//! `to` (or no `from`) is `any: true`.

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::rbac::v3::{
    MetadataSource, Permission, Policy, Principal, SourcedMetadata, permission, principal,
};
use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListMatcher, MetadataMatcher, OrMatcher, PathMatcher, RegexMatcher, StringMatcher,
    ValueMatcher, list_matcher, metadata_matcher, path_matcher, string_matcher, value_matcher,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use trellis_api::security::{Condition, Operation, Rule, Source};

/// The filter whose dynamic metadata carries the verified JWT payload (agreed with the
/// `jwt_authn` translation: every provider sets `payload_in_metadata: payload`).
pub const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
/// The metadata key under [`JWT_FILTER`] holding the payload.
pub const JWT_PAYLOAD_KEY: &str = "payload";

/// Why a rule cannot be expressed for the listener kind at hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// An HTTP-only attribute on a TCP filter chain.
    #[error("{0} is HTTP only")]
    HttpOnly(&'static str),
}

/// Builds the policy for `rule` of a policy in `namespace`. With `for_tcp`, HTTP-only
/// attributes are an error, unless `skip_http_only` (DENY on TCP: the attribute is dropped,
/// so the rule matches more connections and denies more, as Istio "tightens" it).
pub fn policy(
    rule: &Rule,
    namespace: &str,
    for_tcp: bool,
    skip_http_only: bool,
) -> Result<Policy, RuleError> {
    let mut cx = Gen {
        for_tcp,
        skip_http_only,
    };
    let (when_perm, when_princ) = cx.when(&rule.when)?;
    let mut permissions = Vec::new();
    for to in &rule.to {
        let mut items = match &to.operation {
            Some(op) => cx.operation(op)?,
            None => Vec::new(),
        };
        items.extend(when_perm.iter().cloned());
        permissions.push(and_permissions(items));
    }
    if rule.to.is_empty() {
        permissions.push(and_permissions(when_perm.clone()));
    }
    let mut principals = Vec::new();
    for from in &rule.from {
        let mut items = match &from.source {
            Some(src) => cx.source(src, namespace)?,
            None => Vec::new(),
        };
        items.extend(when_princ.iter().cloned());
        principals.push(and_principals(items));
    }
    if rule.from.is_empty() {
        principals.push(and_principals(when_princ.clone()));
    }
    Ok(Policy {
        permissions,
        principals,
        ..Default::default()
    })
}

/// The policy of a policy without rules: it never matches (so an ALLOW without rules allows
/// nothing and a DENY without rules denies nothing).
pub fn never() -> Policy {
    Policy {
        permissions: vec![Permission {
            rule: Some(permission::Rule::NotRule(Box::new(any_permission()))),
        }],
        principals: vec![Principal {
            identifier: Some(principal::Identifier::NotId(Box::new(any_principal()))),
        }],
        ..Default::default()
    }
}

struct Gen {
    for_tcp: bool,
    skip_http_only: bool,
}

impl Gen {
    /// `Ok(true)`: generate; `Ok(false)`: drop the attribute (DENY on TCP); `Err`: the rule
    /// cannot apply (ALLOW on TCP).
    fn http_only(&self, attribute: &'static str) -> Result<bool, RuleError> {
        if !self.for_tcp {
            Ok(true)
        } else if self.skip_http_only {
            Ok(false)
        } else {
            Err(RuleError::HttpOnly(attribute))
        }
    }

    fn operation(&mut self, op: &Operation) -> Result<Vec<Permission>, RuleError> {
        let mut out = Vec::new();
        if (!op.hosts.is_empty() || !op.not_hosts.is_empty()) && self.http_only("hosts")? {
            attr_permission(&mut out, &op.hosts, &op.not_hosts, |h| {
                header_permission(host_header(h))
            });
        }
        if (!op.methods.is_empty() || !op.not_methods.is_empty()) && self.http_only("methods")? {
            attr_permission(&mut out, &op.methods, &op.not_methods, |m| {
                header_permission(header(":method", m))
            });
        }
        if (!op.paths.is_empty() || !op.not_paths.is_empty()) && self.http_only("paths")? {
            attr_permission(&mut out, &op.paths, &op.not_paths, path_permission);
        }
        attr_permission(&mut out, &op.ports, &op.not_ports, port_permission);
        Ok(out)
    }

    fn source(&mut self, src: &Source, namespace: &str) -> Result<Vec<Principal>, RuleError> {
        let mut out = Vec::new();
        attr_principal(&mut out, &src.principals, &src.not_principals, |p| {
            authenticated(string_with_prefix(
                p.strip_prefix("spiffe://").unwrap_or(p),
                "spiffe://",
            ))
        });
        if (!src.request_principals.is_empty() || !src.not_request_principals.is_empty())
            && self.http_only("requestPrincipals")?
        {
            extended_principal(
                &mut out,
                &src.request_principals,
                &src.not_request_principals,
                request_principals,
            );
        }
        attr_principal(&mut out, &src.namespaces, &src.not_namespaces, |ns| {
            authenticated(regex(&format!(".*/ns/{}/.*", ns.replace('*', ".*"))))
        });
        attr_principal(
            &mut out,
            &src.service_accounts,
            &src.not_service_accounts,
            |sa| authenticated(regex(&service_account_regex(namespace, sa))),
        );
        attr_principal(&mut out, &src.trust_domains, &src.not_trust_domains, |td| {
            authenticated(regex(&format!(
                "spiffe://{}/.*",
                regex::escape(td).replace("\\*", ".*")
            )))
        });
        attr_principal(
            &mut out,
            &src.remote_ip_blocks,
            &src.not_remote_ip_blocks,
            |ip| ip_principal(ip, principal::Identifier::RemoteIp),
        );
        attr_principal(&mut out, &src.ip_blocks, &src.not_ip_blocks, |ip| {
            ip_principal(ip, principal::Identifier::DirectRemoteIp)
        });
        Ok(out)
    }

    /// `when` conditions, split into the permission and principal parts.
    fn when(
        &mut self,
        conditions: &[Condition],
    ) -> Result<(Vec<Permission>, Vec<Principal>), RuleError> {
        let (mut perm, mut princ) = (Vec::new(), Vec::new());
        for c in conditions {
            let (v, nv) = (&c.values, &c.not_values);
            let key = c.key.as_str();
            if let Some(attribute) = http_only_key(key)
                && !self.http_only(attribute)?
            {
                continue;
            }
            match key {
                "destination.ip" => attr_permission(&mut perm, v, nv, |ip| {
                    let rule = cidr(ip).map(permission::Rule::DestinationIp);
                    Permission {
                        rule: rule.or(Some(permission::Rule::NotRule(Box::new(any_permission())))),
                    }
                }),
                "destination.port" => attr_permission(&mut perm, v, nv, port_permission),
                "connection.sni" => attr_permission(&mut perm, v, nv, |s| Permission {
                    rule: Some(permission::Rule::RequestedServerName(string(s))),
                }),
                "source.ip" => attr_principal(&mut princ, v, nv, |ip| {
                    ip_principal(ip, principal::Identifier::DirectRemoteIp)
                }),
                "remote.ip" => attr_principal(&mut princ, v, nv, |ip| {
                    ip_principal(ip, principal::Identifier::RemoteIp)
                }),
                "source.namespace" => attr_principal(&mut princ, v, nv, |ns| {
                    authenticated(regex(&format!(".*/ns/{}/.*", ns.replace('*', ".*"))))
                }),
                "source.principal" => attr_principal(&mut princ, v, nv, |p| {
                    authenticated(string_with_prefix(
                        p.strip_prefix("spiffe://").unwrap_or(p),
                        "spiffe://",
                    ))
                }),
                "request.auth.principal" => {
                    extended_principal(&mut princ, v, nv, request_principals);
                }
                "request.auth.audiences" => {
                    extended_principal(&mut princ, v, nv, |vals| {
                        claim_principal(&["aud".to_string()], vals)
                    });
                }
                "request.auth.presenter" => {
                    extended_principal(&mut princ, v, nv, |vals| {
                        claim_principal(&["azp".to_string()], vals)
                    });
                }
                _ if key.starts_with("request.headers[") => {
                    let name = bracketed(&key["request.headers".len()..])
                        .first()
                        .cloned()
                        .unwrap_or_default();
                    attr_principal(&mut princ, v, nv, |val| Principal {
                        identifier: Some(principal::Identifier::Header(header(&name, val))),
                    });
                }
                _ if key.starts_with("request.auth.claims[") => {
                    let claims = bracketed(&key["request.auth.claims".len()..]);
                    extended_principal(&mut princ, v, nv, |vals| claim_principal(&claims, vals));
                }
                _ if key.starts_with("experimental.envoy.filters.") => {
                    // `experimental.envoy.filters.a.b[c]`: a string in another filter's metadata.
                    let rest = &key["experimental.".len()..];
                    if let Some((filter, k)) = rest.split_once('[') {
                        let k = k.trim_end_matches(']').to_string();
                        let filter = filter.to_string();
                        attr_permission(&mut perm, v, nv, |val| Permission {
                            rule: Some(permission::Rule::SourcedMetadata(dynamic(
                                MetadataMatcher {
                                    filter: filter.clone(),
                                    path: vec![segment(&k)],
                                    value: Some(value_string(string(val))),
                                    ..Default::default()
                                },
                            ))),
                        });
                    }
                }
                // Validation rejects every other key.
                _ => {}
            }
        }
        Ok((perm, princ))
    }
}

/// The `when` keys that only exist for HTTP (their name for errors).
fn http_only_key(key: &str) -> Option<&'static str> {
    [
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "request.headers",
        "request.auth.claims",
    ]
    .into_iter()
    .find(|k| key == *k || key.strip_prefix(k).is_some_and(|r| r.starts_with('[')))
}

/// Values ORed, `not` values as `not_rule` of their OR, appended to `out`.
fn attr_permission(
    out: &mut Vec<Permission>,
    values: &[String],
    not_values: &[String],
    one: impl Fn(&str) -> Permission,
) {
    if !values.is_empty() {
        out.push(or_permissions(values.iter().map(|v| one(v)).collect()));
    }
    if !not_values.is_empty() {
        out.push(Permission {
            rule: Some(permission::Rule::NotRule(Box::new(or_permissions(
                not_values.iter().map(|v| one(v)).collect(),
            )))),
        });
    }
}

/// Values ORed, `not` values as `not_id` of their OR, appended to `out`.
fn attr_principal(
    out: &mut Vec<Principal>,
    values: &[String],
    not_values: &[String],
    one: impl Fn(&str) -> Principal,
) {
    if !values.is_empty() {
        out.push(or_principals(values.iter().map(|v| one(v)).collect()));
    }
    if !not_values.is_empty() {
        out.push(not_principal(or_principals(
            not_values.iter().map(|v| one(v)).collect(),
        )));
    }
}

/// Attributes whose whole value list makes one principal (JWT claims).
fn extended_principal(
    out: &mut Vec<Principal>,
    values: &[String],
    not_values: &[String],
    all: impl Fn(&[String]) -> Principal,
) {
    if !values.is_empty() {
        out.push(all(values));
    }
    if !not_values.is_empty() {
        out.push(not_principal(all(not_values)));
    }
}

fn any_permission() -> Permission {
    Permission {
        rule: Some(permission::Rule::Any(true)),
    }
}

fn any_principal() -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Any(true)),
    }
}

fn not_principal(p: Principal) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::NotId(Box::new(p))),
    }
}

fn and_permissions(rules: Vec<Permission>) -> Permission {
    if rules.is_empty() {
        return any_permission();
    }
    Permission {
        rule: Some(permission::Rule::AndRules(permission::Set { rules })),
    }
}

fn or_permissions(rules: Vec<Permission>) -> Permission {
    Permission {
        rule: Some(permission::Rule::OrRules(permission::Set { rules })),
    }
}

fn and_principals(ids: Vec<Principal>) -> Principal {
    if ids.is_empty() {
        return any_principal();
    }
    Principal {
        identifier: Some(principal::Identifier::AndIds(principal::Set { ids })),
    }
}

fn or_principals(ids: Vec<Principal>) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::OrIds(principal::Set { ids })),
    }
}

fn header_permission(h: HeaderMatcher) -> Permission {
    Permission {
        rule: Some(permission::Rule::Header(h)),
    }
}

fn port_permission(port: &str) -> Permission {
    match port.parse::<u32>() {
        Ok(p) => Permission {
            rule: Some(permission::Rule::DestinationPort(p)),
        },
        // Validation rejects it; never match rather than match everything.
        Err(_) => Permission {
            rule: Some(permission::Rule::NotRule(Box::new(any_permission()))),
        },
    }
}

/// Istio's path matcher: `*` any, `prefix*`, `*suffix`, exact; templates (`{*}` one segment,
/// `{**}` the rest) as the equivalent full-match regex.
fn path_permission(p: &str) -> Permission {
    let matcher = if p.contains("{*}") || p.contains("{**}") {
        regex(&path_template_regex(p))
    } else {
        string(p)
    };
    Permission {
        rule: Some(permission::Rule::UrlPath(PathMatcher {
            rule: Some(path_matcher::Rule::Path(matcher)),
        })),
    }
}

/// `/a/{*}/b/{**}` → `/a/[^/]+/b/.+` (Envoy's `uri_template` semantics).
pub fn path_template_regex(p: &str) -> String {
    p.split('/')
        .map(|s| match s {
            "{*}" => "[^/]+".to_string(),
            "{**}" => ".+".to_string(),
            other => regex::escape(other),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn ip_principal(ip: &str, kind: fn(CidrRange) -> principal::Identifier) -> Principal {
    match cidr(ip) {
        Some(c) => Principal {
            identifier: Some(kind(c)),
        },
        None => not_principal(any_principal()),
    }
}

/// `1.2.3.4` (a /32) or `10.0.0.0/8`.
fn cidr(value: &str) -> Option<CidrRange> {
    let (ip, len) = match value.split_once('/') {
        Some((ip, len)) => (ip, Some(len.parse::<u32>().ok()?)),
        None => (value, None),
    };
    let addr: std::net::IpAddr = ip.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    Some(CidrRange {
        address_prefix: addr.to_string(),
        prefix_len: Some(UInt32Value {
            value: len.unwrap_or(max),
        }),
    })
}

fn authenticated(m: StringMatcher) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Authenticated(
            principal::Authenticated {
                principal_name: Some(m),
            },
        )),
    }
}

/// Istio's `serviceAccountRegex`: `NAME` (the policy's namespace) or `NS/NAME`.
fn service_account_regex(namespace: &str, value: &str) -> String {
    let (ns, sa) = value.split_once('/').unwrap_or((namespace, value));
    format!(
        "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
        regex::escape(ns),
        regex::escape(sa)
    )
}

/// `requestPrincipals` (`ISS/SUB`, split at the last `/`, with `*` wildcards) → for each value
/// `and_ids[iss, sub]` on the JWT payload, ORed.
fn request_principals(values: &[String]) -> Principal {
    let any = || regex(".+");
    let mut or = Vec::new();
    for value in values {
        let (iss, sub, found) = match value.rfind('/') {
            Some(i) => (&value[..i], &value[i + 1..], true),
            None => (value.as_str(), "", false),
        };
        let (m_iss, m_sub) = if value == "*" {
            (any(), any())
        } else if let Some(rest) = value.strip_prefix('*') {
            if found {
                let m_iss = if iss == "*" {
                    any()
                } else {
                    suffix(iss.trim_start_matches('*'))
                };
                (m_iss, exact(sub))
            } else {
                (any(), suffix(rest))
            }
        } else if let Some(rest) = value.strip_suffix('*') {
            if found {
                let m_sub = if sub == "*" {
                    any()
                } else {
                    prefix(sub.trim_end_matches('*'))
                };
                (exact(iss), m_sub)
            } else {
                (prefix(rest), any())
            }
        } else {
            (exact(iss), exact(sub))
        };
        or.push(and_principals(vec![
            jwt_principal(&["iss".to_string()], value_string(m_iss)),
            jwt_principal(&["sub".to_string()], value_string(m_sub)),
        ]));
    }
    if or.len() == 1 {
        or.remove(0)
    } else {
        or_principals(or)
    }
}

/// A claim (possibly nested) that is a string equal to one of `values`, or a list containing
/// one of them.
fn claim_principal(claims: &[String], values: &[String]) -> Principal {
    let strings = string_or(values);
    let list = ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
            ListMatcher {
                match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(strings.clone()))),
            },
        ))),
    };
    jwt_principal(
        claims,
        ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
                value_matchers: vec![list, strings],
            })),
        },
    )
}

/// One string matcher per value, ORed (just the matcher for one value).
fn string_or(values: &[String]) -> ValueMatcher {
    let mut all: Vec<ValueMatcher> = values.iter().map(|v| value_string(string(v))).collect();
    if all.len() == 1 {
        return all.remove(0);
    }
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
            value_matchers: all,
        })),
    }
}

fn jwt_principal(claims: &[String], value: ValueMatcher) -> Principal {
    let mut path = vec![segment(JWT_PAYLOAD_KEY)];
    path.extend(claims.iter().map(|c| segment(c)));
    Principal {
        identifier: Some(principal::Identifier::SourcedMetadata(dynamic(
            MetadataMatcher {
                filter: JWT_FILTER.to_string(),
                path,
                value: Some(value),
                ..Default::default()
            },
        ))),
    }
}

/// `sourced_metadata` on the request's dynamic metadata (`metadata` is deprecated).
fn dynamic(m: MetadataMatcher) -> SourcedMetadata {
    SourcedMetadata {
        metadata_matcher: Some(m),
        metadata_source: MetadataSource::Dynamic as i32,
    }
}

fn segment(key: &str) -> metadata_matcher::PathSegment {
    metadata_matcher::PathSegment {
        segment: Some(metadata_matcher::path_segment::Segment::Key(
            key.to_string(),
        )),
    }
}

fn value_string(m: StringMatcher) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::StringMatch(m)),
    }
}

/// The names in `[a][b]...`.
fn bracketed(s: &str) -> Vec<String> {
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .split("][")
        .map(str::to_string)
        .collect()
}

/// Istio's `HeaderMatcher`: `*` is presence, anything else a string matcher.
fn header(name: &str, value: &str) -> HeaderMatcher {
    let spec = if value == "*" {
        header_matcher::HeaderMatchSpecifier::PresentMatch(true)
    } else {
        header_matcher::HeaderMatchSpecifier::StringMatch(string(value))
    };
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}

/// Istio's `HostMatcher`: like [`header`] on `:authority`, ignoring case.
fn host_header(value: &str) -> HeaderMatcher {
    let spec = if value == "*" {
        header_matcher::HeaderMatchSpecifier::PresentMatch(true)
    } else {
        let mut m = string(value);
        m.ignore_case = true;
        header_matcher::HeaderMatchSpecifier::StringMatch(m)
    };
    HeaderMatcher {
        name: ":authority".to_string(),
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}

/// Istio's `StringMatcher`: `*` → regex `.+`, `*suffix`, `prefix*`, else exact.
fn string(v: &str) -> StringMatcher {
    string_with_prefix(v, "")
}

/// Istio's `StringMatcherWithPrefix`: the prefix goes before the value (`spiffe://`).
fn string_with_prefix(v: &str, pre: &str) -> StringMatcher {
    if v == "*" {
        regex(".+")
    } else if let Some(rest) = v.strip_prefix('*') {
        if pre.is_empty() {
            suffix(rest)
        } else {
            regex(&format!("{}.*{}", regex::escape(pre), regex::escape(rest)))
        }
    } else if let Some(rest) = v.strip_suffix('*') {
        prefix(&format!("{pre}{rest}"))
    } else {
        exact(&format!("{pre}{v}"))
    }
}

fn exact(s: &str) -> StringMatcher {
    matcher(string_matcher::MatchPattern::Exact(s.to_string()))
}

fn prefix(s: &str) -> StringMatcher {
    matcher(string_matcher::MatchPattern::Prefix(s.to_string()))
}

fn suffix(s: &str) -> StringMatcher {
    matcher(string_matcher::MatchPattern::Suffix(s.to_string()))
}

fn regex(re: &str) -> StringMatcher {
    matcher(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
        regex: re.to_string(),
        ..Default::default()
    }))
}

fn matcher(p: string_matcher::MatchPattern) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(p),
        ignore_case: false,
    }
}
