//! WorkloadEntry rules (also applied to ServiceEntry endpoints).

use super::Findings;
use super::common::port;
use crate::networking::WorkloadEntry;

pub(crate) fn validate(we: &WorkloadEntry, p: &str, f: &mut Findings) {
    match &we.address {
        None if we.network.is_none() => f.error(
            format!("{p}.address"),
            "address is required (unless network is set)",
        ),
        None => {}
        Some(a) if a.is_empty() => f.error(format!("{p}.address"), "address must not be empty"),
        Some(a) if a.starts_with("unix://") => {
            let path = &a["unix://".len()..];
            if !(path.starts_with('/') || path.starts_with('@')) || path.ends_with('/') {
                f.error(
                    format!("{p}.address"),
                    format!("unix socket address {a:?} must be an absolute path or @abstract name"),
                );
            }
            if !we.ports.is_empty() {
                f.error(
                    format!("{p}.ports"),
                    "ports are not allowed with a unix socket address",
                );
            }
        }
        Some(_) => {}
    }
    for (name, number) in &we.ports {
        let pp = format!("{p}.ports.{name}");
        port(f, &pp, *number);
        let valid_name = !name.is_empty()
            && name.len() < 63
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid_name {
            f.error(pp, format!("port name {name:?} must be alphanumeric with inner '-' and shorter than 63 characters"));
        }
    }
}
