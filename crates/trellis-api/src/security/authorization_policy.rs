//! `AuthorizationPolicy`: access control (security.istio.io).

use serde::{Deserialize, Serialize};

use crate::types::{LabelSelector, PolicyTargetReference, istio_enum};

/// The spec of an AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// Workloads this applies to.
    pub selector: Option<LabelSelector>,
    /// Gateway API target.
    pub target_ref: Option<PolicyTargetReference>,
    /// Gateway API targets.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Rules, ORed.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Action on match (default ALLOW).
    pub action: Option<AuthorizationAction>,
    /// External authorizer for CUSTOM.
    pub provider: Option<ExtensionProvider>,
}

istio_enum! {
    /// Authorization actions.
    AuthorizationAction { Allow = "ALLOW", Deny = "DENY", Audit = "AUDIT", Custom = "CUSTOM" }
}

/// The external authorizer of a CUSTOM policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// Provider name from mesh config.
    pub name: Option<String>,
}

/// One rule: sources, operations and conditions, ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Sources, ORed.
    #[serde(default)]
    pub from: Vec<RuleFrom>,
    /// Operations, ORed.
    #[serde(default)]
    pub to: Vec<RuleTo>,
    /// Extra conditions, ANDed.
    #[serde(default)]
    pub when: Vec<Condition>,
}

/// A source clause.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleFrom {
    /// The source.
    pub source: Option<Source>,
}

/// Properties of the request's source.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Peer identities.
    #[serde(default)]
    pub principals: Vec<String>,
    /// Excluded peer identities.
    #[serde(default)]
    pub not_principals: Vec<String>,
    /// Request (JWT) identities.
    #[serde(default)]
    pub request_principals: Vec<String>,
    /// Excluded request identities.
    #[serde(default)]
    pub not_request_principals: Vec<String>,
    /// Peer namespaces.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Excluded peer namespaces.
    #[serde(default)]
    pub not_namespaces: Vec<String>,
    /// Peer service accounts.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// Excluded peer service accounts.
    #[serde(default)]
    pub not_service_accounts: Vec<String>,
    /// Peer IP blocks.
    #[serde(default)]
    pub ip_blocks: Vec<String>,
    /// Excluded peer IP blocks.
    #[serde(default)]
    pub not_ip_blocks: Vec<String>,
    /// Original client IP blocks.
    #[serde(default)]
    pub remote_ip_blocks: Vec<String>,
    /// Excluded original client IP blocks.
    #[serde(default)]
    pub not_remote_ip_blocks: Vec<String>,
    /// Peer trust domains.
    #[serde(default)]
    pub trust_domains: Vec<String>,
    /// Excluded peer trust domains.
    #[serde(default)]
    pub not_trust_domains: Vec<String>,
}

/// An operation clause.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleTo {
    /// The operation.
    pub operation: Option<Operation>,
}

/// Properties of the request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// Hosts.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Excluded hosts.
    #[serde(default)]
    pub not_hosts: Vec<String>,
    /// Ports (as strings).
    #[serde(default)]
    pub ports: Vec<String>,
    /// Excluded ports.
    #[serde(default)]
    pub not_ports: Vec<String>,
    /// Methods.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Excluded methods.
    #[serde(default)]
    pub not_methods: Vec<String>,
    /// Paths.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Excluded paths.
    #[serde(default)]
    pub not_paths: Vec<String>,
}

/// An extra condition on a request attribute.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// Attribute name (required).
    #[serde(default)]
    pub key: String,
    /// Accepted values.
    #[serde(default)]
    pub values: Vec<String>,
    /// Rejected values.
    #[serde(default)]
    pub not_values: Vec<String>,
}
