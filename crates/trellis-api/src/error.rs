//! Errors and warnings found while loading resources, each pointing at a file and a field path.

use std::fmt;
use std::path::PathBuf;

use crate::meta::ResourceKey;
use crate::resource::Resource;

/// A problem that makes a resource (or a whole document) invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", located(.file, .resource.as_ref(), .path, .reason))]
pub struct ValidationError {
    /// File the document came from.
    pub file: PathBuf,
    /// The resource, when its kind and name could be read.
    pub resource: Option<ResourceKey>,
    /// Dotted field path from the document root, e.g. `spec.http[0].route[1].weight`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// Something suspicious that does not make the resource invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// File the document came from.
    pub file: PathBuf,
    /// The resource, when its kind and name could be read.
    pub resource: Option<ResourceKey>,
    /// Dotted field path from the document root.
    pub path: String,
    /// What is suspicious.
    pub reason: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Located {
            file: &self.file,
            resource: self.resource.as_ref(),
            path: &self.path,
            reason: &self.reason,
        }
        .fmt(f)
    }
}

/// Formats an error the same way as a warning.
fn located(file: &PathBuf, resource: Option<&ResourceKey>, path: &str, reason: &str) -> String {
    Located {
        file,
        resource,
        path,
        reason,
    }
    .to_string()
}

/// Formats `file: Kind ns/name: path: reason`, leaving out the parts that are unknown.
struct Located<'a> {
    file: &'a PathBuf,
    resource: Option<&'a ResourceKey>,
    path: &'a str,
    reason: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let Some(key) = self.resource {
            write!(f, "{key}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(self.reason)
    }
}

/// Everything loading produced: the valid resources plus every error and warning.
#[derive(Debug, Clone, Default)]
pub struct ParseOutput {
    /// Resources that parsed and validated without errors.
    pub resources: Vec<Resource>,
    /// Errors; the resources they concern are not in `resources`.
    pub errors: Vec<ValidationError>,
    /// Warnings; the resources they concern are kept.
    pub warnings: Vec<Warning>,
}

impl ParseOutput {
    /// Appends another output (e.g. of the next file).
    pub fn extend(&mut self, other: ParseOutput) {
        self.resources.extend(other.resources);
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }

    /// True when there are no errors.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}
