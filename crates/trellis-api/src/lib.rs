//! Istio's configuration API for Trellis: typed resources, strict parsing with field paths,
//! semantic validation following Istio's rules, and cross-resource checks.
//!
//! Entry points: [`load_path`] / [`parse_documents`] turn YAML or JSON into [`Resource`]s plus
//! [`ValidationError`]s and [`Warning`]s; [`check_references`] looks across resources.

mod error;
mod host;
mod load;
pub mod mesh_config;
mod meta;
pub mod networking;
mod references;
mod resource;
pub mod security;
pub mod telemetry;
mod types;
mod validate;

pub use error::{ParseOutput, ValidationError, Warning};
pub use host::resolve_host;
pub use load::{check_duplicates, load_path, parse_documents};
pub use mesh_config::{MeshConfig, MeshConfigError};
pub use meta::{DEFAULT_NAMESPACE, ObjectMeta, ResourceKey, Source};
pub use references::check_references;
pub use resource::{KINDS, KindInfo, Resource, Spec, kind_info};
pub use types::{
    Duration, IntOrString, LabelSelector, Percent, PolicyTargetReference, PortSelector,
    StringMatch, WorkloadSelector,
};
pub use validate::target_refs_ignored;
