//! Reading files: multi-document YAML and JSON into typed, validated resources.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use crate::error::{ParseOutput, ValidationError, Warning};
use crate::meta::{DEFAULT_NAMESPACE, ObjectMeta, ResourceKey, Source};
use crate::resource::{KINDS, Resource, Spec, kind_info};
use crate::validate::{self, Findings};

const TOP_LEVEL_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// Parses every document of a YAML (or, for `*.json`, JSON) file, validating each on its own.
pub fn parse_documents(file: &Path, text: &str) -> ParseOutput {
    let mut out = ParseOutput::default();
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let chunks = if is_json {
        vec![(1, text.to_string())]
    } else {
        split_documents(text)
    };
    let mut index = 0;
    for (line, chunk) in chunks {
        let parsed: Result<Value, String> = if is_json {
            serde_json::from_str(&chunk).map_err(|e| format!("invalid JSON: {e}"))
        } else {
            serde_yaml::from_str(&chunk).map_err(|e| yaml_error(&e, line))
        };
        let mut value = match parsed {
            Ok(Value::Null) => continue,
            Ok(value) => value,
            Err(reason) => {
                out.errors.push(ValidationError {
                    file: file.to_path_buf(),
                    resource: None,
                    path: String::new(),
                    reason,
                });
                index += 1;
                continue;
            }
        };
        if value.apply_merge().is_err() {
            // Leave the document as written; a bad merge key then shows up as an unknown field.
        }
        let source = Source {
            file: file.to_path_buf(),
            index,
            line,
        };
        parse_document(source, value, &mut out);
        index += 1;
    }
    reject_duplicates(&mut out);
    out
}

/// Loads a file, or every `*.yaml`, `*.yml` and `*.json` file under a directory (recursive,
/// sorted, skipping hidden files and directories).
pub fn load_path(path: &Path) -> ParseOutput {
    let mut out = ParseOutput::default();
    let files = if path.is_dir() {
        let mut files = Vec::new();
        if let Err(e) = collect_files(path, &mut files) {
            out.errors.push(io_error(path, &e));
        }
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => out.extend(parse_documents(&file, &text)),
            Err(e) => out.errors.push(io_error(&file, &e)),
        }
    }
    reject_duplicates(&mut out);
    out
}

/// Reports every resource whose kind/namespace/name was already defined earlier in the list.
pub fn check_duplicates(resources: &[Resource]) -> Vec<ValidationError> {
    let mut seen: std::collections::BTreeMap<ResourceKey, &Source> = Default::default();
    let mut errors = Vec::new();
    for r in resources {
        let key = r.key();
        match seen.get(&key) {
            Some(first) => errors.push(ValidationError {
                file: r.source.file.clone(),
                resource: Some(key.clone()),
                path: "metadata.name".to_string(),
                reason: format!(
                    "duplicate {key}: already defined in {} (document {})",
                    first.file.display(),
                    first.index
                ),
            }),
            None => {
                seen.insert(key, &r.source);
            }
        }
    }
    errors
}

/// Moves duplicates out of the resources into errors (the first definition wins).
fn reject_duplicates(out: &mut ParseOutput) {
    let errors = check_duplicates(&out.resources);
    if errors.is_empty() {
        return;
    }
    let mut seen = std::collections::BTreeSet::new();
    out.resources.retain(|r| seen.insert(r.key()));
    out.errors.extend(errors);
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(&path, files)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"))
        {
            files.push(path);
        }
    }
    Ok(())
}

fn io_error(file: &Path, e: &std::io::Error) -> ValidationError {
    ValidationError {
        file: file.to_path_buf(),
        resource: None,
        path: String::new(),
        reason: format!("cannot read: {e}"),
    }
}

/// Splits YAML text on `---` (and `...`) lines, returning each chunk with its 1-based start line.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let is_marker = |m: &str| {
            line.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '#']))
        };
        if is_marker("---") || is_marker("...") {
            chunks.push((start, std::mem::take(&mut current)));
            start = i + 2;
            // `--- value` may carry content on the marker line itself.
            let rest = line[3..].trim_start();
            if line.starts_with("---") && !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
                start = i + 1;
            }
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    chunks.push((start, current));
    chunks
}

fn yaml_error(e: &serde_yaml::Error, first_line: usize) -> String {
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    match e.location() {
        Some(loc) => format!(
            "invalid YAML at line {}, column {}: {msg}",
            first_line + loc.line() - 1,
            loc.column()
        ),
        None => format!("invalid YAML: {msg}"),
    }
}

/// Turns one document into a resource, or into errors/warnings.
fn parse_document(source: Source, value: Value, out: &mut ParseOutput) {
    let file = source.file.clone();
    let Value::Mapping(map) = value else {
        out.errors.push(ValidationError {
            file,
            resource: None,
            path: String::new(),
            reason: format!(
                "a document must be a mapping with apiVersion and kind, not {}",
                value_kind(&value)
            ),
        });
        return;
    };
    let mut doc = Doc {
        file,
        key: None,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    if let Some(Some((meta, spec))) = doc.read(&map) {
        out.resources.push(Resource { meta, source, spec });
    }
    out.errors.extend(doc.errors);
    out.warnings.extend(doc.warnings);
}

/// Per-document state: where errors go and which resource they concern.
struct Doc {
    file: PathBuf,
    key: Option<ResourceKey>,
    errors: Vec<ValidationError>,
    warnings: Vec<Warning>,
}

impl Doc {
    fn error(&mut self, path: &str, reason: impl Into<String>) {
        self.errors.push(ValidationError {
            file: self.file.clone(),
            resource: self.key.clone(),
            path: path.to_string(),
            reason: reason.into(),
        });
    }

    /// Returns None on errors, Some(None) for an ignored kind, Some(Some(..)) for a resource.
    #[allow(clippy::option_option)]
    fn read(&mut self, map: &Mapping) -> Option<Option<(ObjectMeta, Spec)>> {
        let api_version = map.get("apiVersion");
        let kind = map.get("kind");
        // Best-effort identity, so even early errors can name the resource.
        if let Some(k) = kind
            .and_then(Value::as_str)
            .and_then(|k| KINDS.iter().find(|i| i.kind == k))
        {
            let meta = map.get("metadata");
            let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
            let namespace = meta
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str);
            if let Some(name) = name {
                self.key = Some(ResourceKey {
                    kind: k.kind,
                    namespace: namespace
                        .filter(|n| !n.is_empty())
                        .unwrap_or(DEFAULT_NAMESPACE)
                        .to_string(),
                    name: name.to_string(),
                });
            }
        }
        for key in map.keys() {
            match key.as_str() {
                Some(k) if TOP_LEVEL_FIELDS.contains(&k) => {}
                Some(k) => self.error(
                    k,
                    format!("unknown field `{k}`, expected one of `apiVersion`, `kind`, `metadata`, `spec`, `status`"),
                ),
                None => self.error("", format!("field names must be strings, not {}", value_kind(key))),
            }
        }
        let Some(api_version) = api_version else {
            self.error("apiVersion", "missing field `apiVersion`");
            return None;
        };
        let Some(api_version) = api_version.as_str() else {
            self.error(
                "apiVersion",
                format!(
                    "apiVersion must be a string, not {}",
                    value_kind(api_version)
                ),
            );
            return None;
        };
        let Some(kind) = kind else {
            self.error("kind", "missing field `kind`");
            return None;
        };
        let Some(kind) = kind.as_str() else {
            self.error(
                "kind",
                format!("kind must be a string, not {}", value_kind(kind)),
            );
            return None;
        };
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        if !KINDS.iter().any(|k| k.group == group) {
            self.error(
                "apiVersion",
                format!(
                    "unknown apiVersion {api_version:?}: expected an Istio API group \
                     (networking.istio.io, security.istio.io, telemetry.istio.io, extensions.istio.io)"
                ),
            );
            return None;
        }
        let Some(info) = kind_info(group, kind) else {
            let reason = match KINDS.iter().find(|k| k.kind == kind) {
                Some(other) => format!("kind {kind} belongs to {}, not {group}", other.group),
                None => format!("unknown kind {kind:?} in {group}"),
            };
            self.error("kind", reason);
            return None;
        };
        if !info.versions.contains(&version) {
            self.error(
                "apiVersion",
                format!(
                    "{api_version} does not serve {kind} (served versions: {})",
                    info.versions.join(", ")
                ),
            );
            return None;
        }
        if !info.supported {
            self.warnings.push(Warning {
                file: self.file.clone(),
                resource: self.key.clone(),
                path: String::new(),
                reason: format!("kind {kind} is not supported yet; ignored"),
            });
            return self.errors.is_empty().then_some(None);
        }
        let meta = match map.get("metadata") {
            None => {
                self.error("metadata", "missing field `metadata`");
                None
            }
            Some(m) => self.typed::<ObjectMeta>("metadata", m),
        };
        if let Some(meta) = &meta {
            check_name(self, meta);
        }
        let empty = Value::Mapping(Mapping::new());
        let spec_value = map.get("spec").unwrap_or(&empty);
        let spec = match kind {
            "VirtualService" => self.typed("spec", spec_value).map(Spec::VirtualService),
            "DestinationRule" => self.typed("spec", spec_value).map(Spec::DestinationRule),
            "ServiceEntry" => self.typed("spec", spec_value).map(Spec::ServiceEntry),
            "WorkloadEntry" => self.typed("spec", spec_value).map(Spec::WorkloadEntry),
            "Gateway" => self.typed("spec", spec_value).map(Spec::Gateway),
            "Sidecar" => self.typed("spec", spec_value).map(Spec::Sidecar),
            "WorkloadGroup" => self.typed("spec", spec_value).map(Spec::WorkloadGroup),
            "PeerAuthentication" => self.typed("spec", spec_value).map(Spec::PeerAuthentication),
            "RequestAuthentication" => self
                .typed("spec", spec_value)
                .map(Spec::RequestAuthentication),
            "AuthorizationPolicy" => self
                .typed("spec", spec_value)
                .map(Spec::AuthorizationPolicy),
            "Telemetry" => self.typed("spec", spec_value).map(Spec::Telemetry),
            _ => {
                self.error(
                    "kind",
                    format!("kind {kind} is listed as supported but has no model"),
                );
                None
            }
        };
        let (meta, spec) = (meta?, spec?);
        let mut findings = Findings::default();
        validate::validate_spec(&spec, &mut findings);
        for (path, reason) in findings.errors {
            self.error(&path, reason);
        }
        for (path, reason) in findings.warnings {
            self.warnings.push(Warning {
                file: self.file.clone(),
                resource: self.key.clone(),
                path,
                reason,
            });
        }
        self.errors.is_empty().then_some(Some((meta, spec)))
    }

    /// Deserializes a part of the document, recording the failing field path on error.
    fn typed<T: DeserializeOwned>(&mut self, root: &str, value: &Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                let path = join_path(root, e.path());
                self.error(&path, e.inner().to_string());
                None
            }
        }
    }
}

/// Istio resource names must be RFC 1123 subdomains.
fn check_name(doc: &mut Doc, meta: &ObjectMeta) {
    let name = &meta.name;
    if name.is_empty() {
        doc.error("metadata.name", "name is required");
    } else if !is_dns1123_subdomain(name) {
        doc.error(
            "metadata.name",
            format!("name {name:?} must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.')"),
        );
    }
    if !is_dns1123_subdomain(&meta.namespace) || meta.namespace.contains('.') {
        doc.error(
            "metadata.namespace",
            format!(
                "namespace {:?} must be a lowercase RFC 1123 label (a-z, 0-9 and '-')",
                meta.namespace
            ),
        );
    }
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Renders a serde path as `root.a[0].b`.
fn join_path(root: &str, path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = root.to_string();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                out.push('.');
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}
