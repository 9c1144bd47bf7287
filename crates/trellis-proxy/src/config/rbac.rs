//! Role-based access control (`envoy.filters.http.rbac`): the policies a request is checked
//! against before it is routed. Evaluated in `crate::authz`.

use std::net::IpAddr;

use serde::Serialize;

use super::StringMatch;

/// One RBAC filter: an action and its named policies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rbac {
    /// What a matching policy means.
    pub action: RbacAction,
    /// The policies, sorted by name (Envoy keeps them in a sorted map: the first match by
    /// name is the one reported).
    pub policies: Vec<RbacPolicy>,
}

/// `RBAC.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RbacAction {
    /// Only requests matching a policy pass.
    Allow,
    /// Requests matching a policy are denied.
    Deny,
    /// Nothing is denied; a match is only recorded.
    Log,
}

/// A named policy: it matches when one of its permissions and one of its principals match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RbacPolicy {
    /// `ns[NS]-policy[NAME]-rule[i]` for Istio's policies.
    pub name: String,
    /// What is requested (ORed).
    pub permissions: Vec<Permission>,
    /// Who requests it (ORed).
    pub principals: Vec<Principal>,
}

/// A condition on the request's target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Always.
    Any,
    /// All of these.
    And(Vec<Permission>),
    /// One of these.
    Or(Vec<Permission>),
    /// Not this.
    Not(Box<Permission>),
    /// A request header (pseudo-headers `:authority`, `:method`, `:path` included).
    Header(RbacHeaderMatcher),
    /// The path without query.
    UrlPath(StringMatch),
    /// The address the connection arrived on.
    DestinationIp(Cidr),
    /// The port the connection arrived on.
    DestinationPort(u16),
    /// The TLS SNI of the connection.
    RequestedServerName(StringMatch),
    /// A value in the request's dynamic metadata.
    Metadata(MetadataMatcher),
}

/// A condition on the request's source.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// Always.
    Any,
    /// All of these.
    And(Vec<Principal>),
    /// One of these.
    Or(Vec<Principal>),
    /// Not this.
    Not(Box<Principal>),
    /// The peer's verified certificate: its URI SAN matches (`None`: any verified peer).
    Authenticated(Option<StringMatch>),
    /// The connection's peer address.
    DirectRemoteIp(Cidr),
    /// The original client address (`x-forwarded-for`'s last entry, else the peer).
    RemoteIp(Cidr),
    /// A request header.
    Header(RbacHeaderMatcher),
    /// A value in the request's dynamic metadata (the verified JWT payload).
    Metadata(MetadataMatcher),
}

/// A header condition: presence or a string condition on the values joined by `,`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RbacHeaderMatcher {
    /// The header, lowercased.
    pub name: String,
    /// The condition.
    pub kind: HeaderValueMatch,
    /// Whether the result is inverted.
    pub invert_match: bool,
}

/// What an [`RbacHeaderMatcher`] checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderValueMatch {
    /// `true`: present; `false`: absent.
    Present(bool),
    /// The value satisfies this (an absent header never does).
    String(StringMatch),
}

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cidr {
    /// The prefix.
    pub address: IpAddr,
    /// Its length in bits.
    pub prefix_len: u8,
}

impl Cidr {
    /// Whether `ip` is in the range (IPv4 and IPv6 never match each other).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let len = u32::from(self.prefix_len.min(32));
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let len = u32::from(self.prefix_len.min(128));
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// A condition on a value in dynamic metadata: `filter`, then the keys of `path`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetadataMatcher {
    /// The filter namespace (`envoy.filters.http.jwt_authn`).
    pub filter: String,
    /// Keys into nested structs.
    pub path: Vec<String>,
    /// The condition on the value found.
    pub value: ValueMatcher,
    /// Whether the result is inverted.
    pub invert: bool,
}

/// Envoy's `ValueMatcher` (the kinds the control plane emits).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueMatcher {
    /// A string value satisfying this.
    String(StringMatch),
    /// Present (`true`) or absent.
    Present(bool),
    /// A list with one element matching.
    ListOneOf(Box<ValueMatcher>),
    /// One of these.
    Or(Vec<ValueMatcher>),
}
