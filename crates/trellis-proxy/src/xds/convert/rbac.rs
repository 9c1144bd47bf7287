//! `envoy.filters.http.rbac` (`envoy.extensions.filters.http.rbac.v3.RBAC`) → [`config::Rbac`]:
//! the matcher kinds Istio's AuthorizationPolicy translation emits, every other field NACKed.

#![allow(deprecated)]

use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::rbac::v3 as proto;
use envoy_types::pb::envoy::config::route::v3 as route;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
use envoy_types::pb::google::protobuf::Any;

use super::{ConvertError, Cx, decode_any, join, reject_unsupported};
use crate::config;

/// The RBAC HTTP filter's name.
pub const HTTP_RBAC: &str = "envoy.filters.http.rbac";
/// Its config type.
pub const HTTP_RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// The RBAC network filter's name.
pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
/// Its config type.
pub const NETWORK_RBAC_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";

/// The network filter's config before a TCP proxy: `rules` and `stat_prefix`, or
/// `shadow_rules` with `stat_prefix` and `shadow_rules_stat_prefix` (Istio's CUSTOM).
pub(crate) fn network_rbac(cx: &Cx, path: &str, any: &Any) -> Result<HttpRbacFilter, ConvertError> {
    use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
    let f: NetworkRbac = decode_any(cx, path, any, NETWORK_RBAC_TYPE)?;
    if f.rules.is_none()
        && let Some(shadow) = &f.shadow_rules
    {
        reject_unsupported!(cx, path, &f, NetworkRbac { rules, stat_prefix, shadow_rules, shadow_rules_stat_prefix }
            unsupported { matcher, shadow_matcher, enforcement_type, delay_deny });
        return Ok(HttpRbacFilter::Shadow(config::ShadowRbac {
            rules: rbac(cx, &join(path, "shadow_rules"), shadow)?,
            stat_prefix: f.shadow_rules_stat_prefix.clone(),
        }));
    }
    reject_unsupported!(cx, path, &f, NetworkRbac { rules, stat_prefix }
        unsupported { matcher, shadow_rules, shadow_matcher, shadow_rules_stat_prefix, enforcement_type, delay_deny });
    let rpath = join(path, "rules");
    let rules = f.rules.as_ref().ok_or_else(|| cx.missing(&rpath))?;
    rbac(cx, &rpath, rules).map(HttpRbacFilter::Enforcing)
}

/// How deep `and`/`or`/`not` may nest (the control plane emits 4 levels at most).
const MAX_DEPTH: usize = 16;

/// An RBAC filter (HTTP or network): enforcing (`rules`) or shadow-only (`shadow_rules`).
#[derive(Debug)]
pub(crate) enum HttpRbacFilter {
    /// `rules` (and no shadow rules).
    Enforcing(config::Rbac),
    /// `shadow_rules` with `shadow_rules_stat_prefix` (and no `rules`): Istio's CUSTOM filter.
    Shadow(config::ShadowRbac),
}

/// The filter's config in an HCM chain: `rules`, or `shadow_rules` (+ its stat prefix) alone.
pub(crate) fn http_rbac(cx: &Cx, path: &str, any: &Any) -> Result<HttpRbacFilter, ConvertError> {
    let f: HttpRbac = decode_any(cx, path, any, HTTP_RBAC_TYPE)?;
    if f.rules.is_none()
        && let Some(shadow) = &f.shadow_rules
    {
        reject_unsupported!(cx, path, &f, HttpRbac { rules, shadow_rules, shadow_rules_stat_prefix }
            unsupported { rules_stat_prefix, matcher, shadow_matcher, track_per_rule_stats });
        return Ok(HttpRbacFilter::Shadow(config::ShadowRbac {
            rules: rbac(cx, &join(path, "shadow_rules"), shadow)?,
            stat_prefix: f.shadow_rules_stat_prefix.clone(),
        }));
    }
    reject_unsupported!(cx, path, &f, HttpRbac { rules }
        unsupported { rules_stat_prefix, matcher, shadow_rules, shadow_matcher, shadow_rules_stat_prefix, track_per_rule_stats });
    let rpath = join(path, "rules");
    let rules = f.rules.as_ref().ok_or_else(|| cx.missing(&rpath))?;
    rbac(cx, &rpath, rules).map(HttpRbacFilter::Enforcing)
}

/// `envoy.config.rbac.v3.RBAC`: the action and the policies (sorted by name).
pub(crate) fn rbac(cx: &Cx, path: &str, r: &proto::Rbac) -> Result<config::Rbac, ConvertError> {
    reject_unsupported!(cx, path, r, proto::Rbac { action, policies }
        unsupported { audit_logging_options });
    use proto::rbac::Action as A;
    let action = match A::try_from(r.action) {
        Ok(A::Allow) => config::RbacAction::Allow,
        Ok(A::Deny) => config::RbacAction::Deny,
        Ok(A::Log) => config::RbacAction::Log,
        Err(_) => return Err(cx.unsupported_value(&join(path, "action"), r.action)),
    };
    let mut names: Vec<&String> = r.policies.keys().collect();
    names.sort();
    let mut policies = Vec::with_capacity(names.len());
    for name in names {
        let ppath = format!("{}[{name:?}]", join(path, "policies"));
        let p = &r.policies[name];
        reject_unsupported!(cx, &ppath, p, proto::Policy { permissions, principals }
            unsupported { condition, checked_condition, cel_config });
        if p.permissions.is_empty() {
            return Err(cx.missing(&join(&ppath, "permissions")));
        }
        if p.principals.is_empty() {
            return Err(cx.missing(&join(&ppath, "principals")));
        }
        let permissions = p
            .permissions
            .iter()
            .enumerate()
            .map(|(i, x)| permission(cx, &format!("{ppath}.permissions[{i}]"), x, 0))
            .collect::<Result<_, _>>()?;
        let principals = p
            .principals
            .iter()
            .enumerate()
            .map(|(i, x)| principal(cx, &format!("{ppath}.principals[{i}]"), x, 0))
            .collect::<Result<_, _>>()?;
        policies.push(config::RbacPolicy {
            name: name.clone(),
            permissions,
            principals,
        });
    }
    Ok(config::Rbac { action, policies })
}

fn permission(
    cx: &Cx,
    path: &str,
    p: &proto::Permission,
    depth: usize,
) -> Result<config::Permission, ConvertError> {
    if depth > MAX_DEPTH {
        return Err(cx.err(path, format_args!("nested deeper than {MAX_DEPTH}")));
    }
    use proto::permission::Rule as R;
    let set = |field: &str, rules: &[proto::Permission]| {
        rules
            .iter()
            .enumerate()
            .map(|(i, x)| permission(cx, &format!("{path}.{field}.rules[{i}]"), x, depth + 1))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match &p.rule {
        Some(R::AndRules(s)) => config::Permission::And(set("and_rules", &s.rules)?),
        Some(R::OrRules(s)) => config::Permission::Or(set("or_rules", &s.rules)?),
        Some(R::Any(true)) => config::Permission::Any,
        Some(R::Any(false)) => return Err(cx.err(&join(path, "any"), "must be true")),
        Some(R::NotRule(inner)) => config::Permission::Not(Box::new(permission(
            cx,
            &join(path, "not_rule"),
            inner,
            depth + 1,
        )?)),
        Some(R::Header(h)) => config::Permission::Header(header(cx, &join(path, "header"), h)?),
        Some(R::UrlPath(pm)) => {
            let upath = join(path, "url_path");
            reject_unsupported!(cx, &upath, pm, matcher::PathMatcher { rule } unsupported {});
            match &pm.rule {
                Some(matcher::path_matcher::Rule::Path(sm)) => config::Permission::UrlPath(
                    super::route::string_matcher(cx, &join(&upath, "path"), sm)?,
                ),
                None => return Err(cx.missing(&join(&upath, "path"))),
            }
        }
        Some(R::DestinationIp(c)) => {
            config::Permission::DestinationIp(cidr(cx, &join(path, "destination_ip"), c)?)
        }
        Some(R::DestinationPort(port)) => {
            config::Permission::DestinationPort(u16::try_from(*port).map_err(|_| {
                cx.err(
                    &join(path, "destination_port"),
                    format_args!("{port} is not a port"),
                )
            })?)
        }
        Some(R::RequestedServerName(sm)) => config::Permission::RequestedServerName(
            super::route::string_matcher(cx, &join(path, "requested_server_name"), sm)?,
        ),
        Some(R::Metadata(m)) => {
            config::Permission::Metadata(metadata(cx, &join(path, "metadata"), m)?)
        }
        Some(R::SourcedMetadata(s)) => {
            config::Permission::Metadata(sourced(cx, &join(path, "sourced_metadata"), s)?)
        }
        Some(R::DestinationPortRange(_)) => {
            return Err(cx.unsupported_field(&join(path, "destination_port_range")));
        }
        Some(R::Matcher(_)) => return Err(cx.unsupported_field(&join(path, "matcher"))),
        Some(R::UriTemplate(_)) => return Err(cx.unsupported_field(&join(path, "uri_template"))),
        None => return Err(cx.missing(&join(path, "rule"))),
    })
}

fn principal(
    cx: &Cx,
    path: &str,
    p: &proto::Principal,
    depth: usize,
) -> Result<config::Principal, ConvertError> {
    if depth > MAX_DEPTH {
        return Err(cx.err(path, format_args!("nested deeper than {MAX_DEPTH}")));
    }
    use proto::principal::Identifier as I;
    let set = |field: &str, ids: &[proto::Principal]| {
        ids.iter()
            .enumerate()
            .map(|(i, x)| principal(cx, &format!("{path}.{field}.ids[{i}]"), x, depth + 1))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match &p.identifier {
        Some(I::AndIds(s)) => config::Principal::And(set("and_ids", &s.ids)?),
        Some(I::OrIds(s)) => config::Principal::Or(set("or_ids", &s.ids)?),
        Some(I::Any(true)) => config::Principal::Any,
        Some(I::Any(false)) => return Err(cx.err(&join(path, "any"), "must be true")),
        Some(I::NotId(inner)) => config::Principal::Not(Box::new(principal(
            cx,
            &join(path, "not_id"),
            inner,
            depth + 1,
        )?)),
        Some(I::Authenticated(a)) => {
            let apath = join(path, "authenticated");
            reject_unsupported!(cx, &apath, a, proto::principal::Authenticated { principal_name } unsupported {});
            config::Principal::Authenticated(
                a.principal_name
                    .as_ref()
                    .map(|sm| super::route::string_matcher(cx, &join(&apath, "principal_name"), sm))
                    .transpose()?,
            )
        }
        Some(I::DirectRemoteIp(c)) => {
            config::Principal::DirectRemoteIp(cidr(cx, &join(path, "direct_remote_ip"), c)?)
        }
        Some(I::RemoteIp(c)) => config::Principal::RemoteIp(cidr(cx, &join(path, "remote_ip"), c)?),
        Some(I::Header(h)) => config::Principal::Header(header(cx, &join(path, "header"), h)?),
        Some(I::Metadata(m)) => {
            config::Principal::Metadata(metadata(cx, &join(path, "metadata"), m)?)
        }
        Some(I::SourcedMetadata(s)) => {
            config::Principal::Metadata(sourced(cx, &join(path, "sourced_metadata"), s)?)
        }
        Some(I::SourceIp(_)) => return Err(cx.unsupported_field(&join(path, "source_ip"))),
        Some(I::UrlPath(_)) => return Err(cx.unsupported_field(&join(path, "url_path"))),
        Some(I::FilterState(_)) => return Err(cx.unsupported_field(&join(path, "filter_state"))),
        Some(I::Custom(_)) => return Err(cx.unsupported_field(&join(path, "custom"))),
        None => return Err(cx.missing(&join(path, "identifier"))),
    })
}

/// `name` with `string_match` (`ignore_case` allowed) or `present_match`, and `invert_match`.
fn header(
    cx: &Cx,
    path: &str,
    h: &route::HeaderMatcher,
) -> Result<config::RbacHeaderMatcher, ConvertError> {
    let (name, kind, invert_match) = super::route::header_matcher_parts(
        cx,
        path,
        h,
        |spath, sm| {
            super::route::string_matcher(cx, spath, sm).map(config::HeaderValueMatch::String)
        },
        config::HeaderValueMatch::Present,
    )?;
    Ok(config::RbacHeaderMatcher {
        name,
        kind,
        invert_match,
    })
}

fn cidr(cx: &Cx, path: &str, c: &CidrRange) -> Result<config::Cidr, ConvertError> {
    reject_unsupported!(cx, path, c, CidrRange { address_prefix, prefix_len } unsupported {});
    let address: IpAddr = c.address_prefix.parse().map_err(|_| {
        cx.err(
            &join(path, "address_prefix"),
            format_args!("{:?} is not an IP address", c.address_prefix),
        )
    })?;
    let len = c.prefix_len.map_or(0, |v| v.value);
    let max = if address.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(cx.err(
            &join(path, "prefix_len"),
            format_args!("{len} is longer than {max}"),
        ));
    }
    Ok(config::Cidr {
        address,
        prefix_len: len as u8,
    })
}

/// `sourced_metadata`: dynamic metadata only.
fn sourced(
    cx: &Cx,
    path: &str,
    s: &proto::SourcedMetadata,
) -> Result<config::MetadataMatcher, ConvertError> {
    reject_unsupported!(cx, path, s, proto::SourcedMetadata { metadata_matcher, metadata_source } unsupported {});
    if s.metadata_source != proto::MetadataSource::Dynamic as i32 {
        let name = proto::MetadataSource::try_from(s.metadata_source)
            .map(|m| m.as_str_name().to_string())
            .unwrap_or_else(|_| s.metadata_source.to_string());
        return Err(cx.unsupported_value(&join(path, "metadata_source"), name));
    }
    let mpath = join(path, "metadata_matcher");
    let m = s
        .metadata_matcher
        .as_ref()
        .ok_or_else(|| cx.missing(&mpath))?;
    metadata(cx, &mpath, m)
}

pub(crate) fn metadata(
    cx: &Cx,
    path: &str,
    m: &matcher::MetadataMatcher,
) -> Result<config::MetadataMatcher, ConvertError> {
    reject_unsupported!(cx, path, m, matcher::MetadataMatcher { filter, path, value, invert } unsupported {});
    if m.filter.is_empty() {
        return Err(cx.missing(&join(path, "filter")));
    }
    if m.path.is_empty() {
        return Err(cx.missing(&join(path, "path")));
    }
    let mut keys = Vec::with_capacity(m.path.len());
    for (i, seg) in m.path.iter().enumerate() {
        use matcher::metadata_matcher::path_segment::Segment;
        match &seg.segment {
            Some(Segment::Key(k)) if !k.is_empty() => keys.push(k.clone()),
            _ => return Err(cx.missing(&format!("{}[{i}].key", join(path, "path")))),
        }
    }
    let vpath = join(path, "value");
    let v = m.value.as_ref().ok_or_else(|| cx.missing(&vpath))?;
    Ok(config::MetadataMatcher {
        filter: m.filter.clone(),
        path: keys,
        value: value(cx, &vpath, v, 0)?,
        invert: m.invert,
    })
}

fn value(
    cx: &Cx,
    path: &str,
    v: &matcher::ValueMatcher,
    depth: usize,
) -> Result<config::ValueMatcher, ConvertError> {
    if depth > MAX_DEPTH {
        return Err(cx.err(path, format_args!("nested deeper than {MAX_DEPTH}")));
    }
    use matcher::value_matcher::MatchPattern as V;
    Ok(match &v.match_pattern {
        Some(V::StringMatch(sm)) => config::ValueMatcher::String(super::route::string_matcher(
            cx,
            &join(path, "string_match"),
            sm,
        )?),
        Some(V::PresentMatch(p)) => config::ValueMatcher::Present(*p),
        Some(V::ListMatch(l)) => {
            let lpath = join(path, "list_match");
            match &l.match_pattern {
                Some(matcher::list_matcher::MatchPattern::OneOf(inner)) => {
                    config::ValueMatcher::ListOneOf(Box::new(value(
                        cx,
                        &join(&lpath, "one_of"),
                        inner,
                        depth + 1,
                    )?))
                }
                None => return Err(cx.missing(&join(&lpath, "one_of"))),
            }
        }
        Some(V::OrMatch(o)) => {
            let opath = join(path, "or_match");
            if o.value_matchers.len() < 2 {
                return Err(cx.err(&join(&opath, "value_matchers"), "needs at least 2 matchers"));
            }
            config::ValueMatcher::Or(
                o.value_matchers
                    .iter()
                    .enumerate()
                    .map(|(i, x)| value(cx, &format!("{opath}.value_matchers[{i}]"), x, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        Some(V::NullMatch(_)) => return Err(cx.unsupported_field(&join(path, "null_match"))),
        Some(V::DoubleMatch(_)) => return Err(cx.unsupported_field(&join(path, "double_match"))),
        Some(V::BoolMatch(_)) => return Err(cx.unsupported_field(&join(path, "bool_match"))),
        None => return Err(cx.missing(&join(path, "string_match"))),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use envoy_types::pb::envoy::config::rbac::v3::{
        MetadataSource, Permission, Policy, Principal, SourcedMetadata, permission, principal,
    };
    use envoy_types::pb::google::protobuf::UInt32Value;
    use prost::Message;

    use super::*;

    fn string(s: &str) -> matcher::StringMatcher {
        matcher::StringMatcher {
            match_pattern: Some(matcher::string_matcher::MatchPattern::Exact(s.into())),
            ignore_case: false,
        }
    }

    fn policy(perm: permission::Rule, id: principal::Identifier) -> Policy {
        Policy {
            permissions: vec![Permission { rule: Some(perm) }],
            principals: vec![Principal {
                identifier: Some(id),
            }],
            ..Default::default()
        }
    }

    fn filter(rules: proto::Rbac, extra: impl FnOnce(&mut HttpRbac)) -> Any {
        let mut f = HttpRbac {
            rules: Some(rules),
            ..Default::default()
        };
        extra(&mut f);
        Any {
            type_url: HTTP_RBAC_TYPE.into(),
            value: f.encode_to_vec(),
        }
    }

    fn convert(any: &Any) -> Result<config::Rbac, String> {
        match http_rbac(&Cx::new("Listener", "inbound|9080"), "f", any) {
            Ok(HttpRbacFilter::Enforcing(r)) => Ok(r),
            Ok(HttpRbacFilter::Shadow(_)) => Err("a shadow filter".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn shadow_only_filters_keep_their_stat_prefix() {
        let rules = proto::Rbac {
            action: proto::rbac::Action::Deny as i32,
            policies: [(
                "istio-ext-authz-ns[default]-policy[x]-rule[0]".to_string(),
                policy(
                    permission::Rule::Any(true),
                    principal::Identifier::Any(true),
                ),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let f = HttpRbac {
            shadow_rules: Some(rules),
            shadow_rules_stat_prefix: "istio_ext_authz_".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: HTTP_RBAC_TYPE.into(),
            value: f.encode_to_vec(),
        };
        let Ok(HttpRbacFilter::Shadow(s)) = http_rbac(&Cx::new("Listener", "l"), "f", &any) else {
            panic!("a shadow filter expected");
        };
        assert_eq!(s.stat_prefix, "istio_ext_authz_");
        assert_eq!(s.rules.action, config::RbacAction::Deny);
        assert_eq!(s.rules.policies.len(), 1);
    }

    #[test]
    fn istio_shaped_rules_convert_sorted_by_name() {
        let jwt = SourcedMetadata {
            metadata_matcher: Some(matcher::MetadataMatcher {
                filter: "envoy.filters.http.jwt_authn".into(),
                path: ["payload", "iss"]
                    .iter()
                    .map(|k| matcher::metadata_matcher::PathSegment {
                        segment: Some(matcher::metadata_matcher::path_segment::Segment::Key(
                            k.to_string(),
                        )),
                    })
                    .collect(),
                value: Some(matcher::ValueMatcher {
                    match_pattern: Some(matcher::value_matcher::MatchPattern::StringMatch(string(
                        "iss",
                    ))),
                }),
                invert: false,
            }),
            metadata_source: MetadataSource::Dynamic as i32,
        };
        let rules = proto::Rbac {
            action: proto::rbac::Action::Deny as i32,
            policies: [
                (
                    "ns[default]-policy[b]-rule[0]".to_string(),
                    policy(
                        permission::Rule::UrlPath(matcher::PathMatcher {
                            rule: Some(matcher::path_matcher::Rule::Path(string("/admin"))),
                        }),
                        principal::Identifier::SourcedMetadata(jwt),
                    ),
                ),
                (
                    "ns[default]-policy[a]-rule[0]".to_string(),
                    policy(
                        permission::Rule::DestinationPort(9080),
                        principal::Identifier::DirectRemoteIp(CidrRange {
                            address_prefix: "10.0.0.0".into(),
                            prefix_len: Some(UInt32Value { value: 8 }),
                        }),
                    ),
                ),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let r = convert(&filter(rules, |_| {})).unwrap();
        assert_eq!(r.action, config::RbacAction::Deny);
        let names: Vec<&str> = r.policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ns[default]-policy[a]-rule[0]",
                "ns[default]-policy[b]-rule[0]"
            ]
        );
        assert_eq!(
            r.policies[0].permissions,
            vec![config::Permission::DestinationPort(9080)]
        );
        let config::Principal::Metadata(m) = &r.policies[1].principals[0] else {
            panic!("metadata expected");
        };
        assert_eq!(m.path, ["payload", "iss"]);
    }

    #[test]
    fn unsupported_fields_are_named() {
        let any_policy = || {
            policy(
                permission::Rule::Any(true),
                principal::Identifier::Any(true),
            )
        };
        let rules = |p: Policy| proto::Rbac {
            policies: [("p".to_string(), p)].into_iter().collect(),
            ..Default::default()
        };
        let err = convert(&filter(rules(any_policy()), |f| {
            f.shadow_rules_stat_prefix = "x".into()
        }))
        .unwrap_err();
        assert_eq!(
            err,
            "Listener inbound|9080: f.shadow_rules_stat_prefix: field is not supported"
        );
        let err = convert(&filter(
            rules(policy(
                permission::Rule::DestinationPortRange(Default::default()),
                principal::Identifier::Any(true),
            )),
            |_| {},
        ))
        .unwrap_err();
        assert_eq!(
            err,
            "Listener inbound|9080: f.rules.policies[\"p\"].permissions[0].destination_port_range: field is not supported"
        );
        let err = convert(&filter(
            rules(policy(
                permission::Rule::Any(true),
                principal::Identifier::SourcedMetadata(SourcedMetadata {
                    metadata_matcher: None,
                    metadata_source: MetadataSource::Route as i32,
                }),
            )),
            |_| {},
        ))
        .unwrap_err();
        assert_eq!(
            err,
            "Listener inbound|9080: f.rules.policies[\"p\"].principals[0].sourced_metadata.metadata_source: ROUTE is not supported"
        );
        let mut empty = any_policy();
        empty.principals.clear();
        let err = convert(&filter(rules(empty), |_| {})).unwrap_err();
        assert_eq!(
            err,
            "Listener inbound|9080: f.rules.policies[\"p\"].principals: is required"
        );
    }
}
