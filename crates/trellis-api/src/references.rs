//! Checks across resources: references that nothing defines.

use std::collections::BTreeSet;

use crate::error::Warning;
use crate::host::resolve_host;
use crate::networking::Destination;
use crate::resource::{Resource, Spec};

/// Warns about VirtualService destinations naming a subset that no DestinationRule for the
/// (resolved) host defines; such routes fail at request time with 503s.
pub fn check_references(resources: &[Resource]) -> Vec<Warning> {
    let mut subsets: BTreeSet<(String, &str)> = BTreeSet::new();
    for r in resources {
        if let Spec::DestinationRule(dr) = &r.spec {
            let host = resolve_host(&dr.host, &r.meta.namespace);
            for s in &dr.subsets {
                subsets.insert((host.clone(), s.name.as_str()));
            }
        }
    }
    let mut warnings = Vec::new();
    for r in resources {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        let mut check = |d: &Destination, path: String| {
            let Some(subset) = &d.subset else { return };
            let host = resolve_host(&d.host, &r.meta.namespace);
            if !subsets.contains(&(host.clone(), subset.as_str())) {
                warnings.push(Warning {
                    file: r.source.file.clone(),
                    resource: Some(r.key()),
                    path,
                    reason: format!(
                        "subset {subset:?} of host {host} is not defined by any DestinationRule"
                    ),
                });
            }
        };
        for (i, http) in vs.http.iter().enumerate() {
            for (j, rd) in http.route.iter().enumerate() {
                check(
                    &rd.destination,
                    format!("spec.http[{i}].route[{j}].destination.subset"),
                );
            }
            if let Some(m) = &http.mirror {
                check(m, format!("spec.http[{i}].mirror.subset"));
            }
            for (j, m) in http.mirrors.iter().enumerate() {
                check(
                    &m.destination,
                    format!("spec.http[{i}].mirrors[{j}].destination.subset"),
                );
            }
        }
        for (i, tcp) in vs.tcp.iter().enumerate() {
            for (j, rd) in tcp.route.iter().enumerate() {
                check(
                    &rd.destination,
                    format!("spec.tcp[{i}].route[{j}].destination.subset"),
                );
            }
        }
        for (i, tls) in vs.tls.iter().enumerate() {
            for (j, rd) in tls.route.iter().enumerate() {
                check(
                    &rd.destination,
                    format!("spec.tls[{i}].route[{j}].destination.subset"),
                );
            }
        }
    }
    warnings
}
