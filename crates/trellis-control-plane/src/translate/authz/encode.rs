//! Deterministic encoding of RBAC configs. `RBAC.policies` is a protobuf map, which prost holds
//! in a `HashMap`: encoded as is, its entries come out in a random order, so identical configs
//! would produce different bytes, new versions and needless listener updates (Envoy drains a
//! listener on every change). Entries are encoded here sorted by policy name instead: a map
//! is a repeated field, and concatenated encodings of a message merge, so one encoding per
//! entry appended to the encoding of the rest is the same message.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::rbac::v3::{Policy, Rbac};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

/// `rules` as protobuf bytes with its policies in name order.
pub fn rules_bytes(action: i32, policies: &BTreeMap<String, Policy>) -> Vec<u8> {
    let mut out = Rbac {
        action,
        ..Default::default()
    }
    .encode_to_vec();
    for (name, policy) in policies {
        let one = Rbac {
            policies: [(name.clone(), policy.clone())].into_iter().collect(),
            ..Default::default()
        };
        one.encode(&mut out).unwrap_or_default();
    }
    out
}

/// An `Any` whose message is `{<field>: <message bytes>, ...extra}`: `extra` is the encoding of
/// the message's other fields (a default message for none).
pub fn wrap(type_url: &str, field: u32, inner: &[u8], extra: Vec<u8>) -> Any {
    let mut value = extra;
    encode_key(field, WireType::LengthDelimited, &mut value);
    encode_varint(inner.len() as u64, &mut value);
    value.extend_from_slice(inner);
    Any {
        type_url: type_url.to_string(),
        value,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::rbac::v3::{Permission, permission};

    fn policy(port: u32) -> Policy {
        Policy {
            permissions: vec![Permission {
                rule: Some(permission::Rule::DestinationPort(port)),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn entries_decode_back_and_bytes_are_stable() {
        let policies: BTreeMap<String, Policy> =
            (0..20).map(|i| (format!("p{i:02}"), policy(i))).collect();
        let a = rules_bytes(1, &policies);
        let b = rules_bytes(1, &policies.clone());
        assert_eq!(a, b);
        let decoded = Rbac::decode(a.as_slice()).unwrap();
        assert_eq!(decoded.action, 1);
        assert_eq!(decoded.policies.len(), 20);
        assert_eq!(decoded.policies["p07"], policy(7));
    }

    #[test]
    fn wrapping_sets_the_field() {
        use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
        let policies: BTreeMap<String, Policy> = [("x".to_string(), policy(1))].into();
        let any = wrap("t", 1, &rules_bytes(2, &policies), Vec::new());
        let http = HttpRbac::decode(any.value.as_slice()).unwrap();
        let rules = http.rules.unwrap();
        assert_eq!(rules.action, 2);
        assert_eq!(rules.policies["x"], policy(1));
    }
}
