//! `HttpConnectionManager.upgrade_configs` → the upgrade types a listener lets through
//! (Istio emits `[{upgrade_type: websocket}]` on every HTTP connection manager).

use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;

use super::{ConvertError, Cx, join, reject_unsupported};

/// The enabled upgrade types, lower case (`websocket`). Custom `filters` are NACKed.
pub(crate) fn upgrade_types(
    cx: &Cx,
    path: &str,
    configs: &[hcm::http_connection_manager::UpgradeConfig],
) -> Result<Vec<String>, ConvertError> {
    let mut types = Vec::new();
    for (i, u) in configs.iter().enumerate() {
        let upath = join(path, &format!("upgrade_configs[{i}]"));
        reject_unsupported!(cx, &upath, u, hcm::http_connection_manager::UpgradeConfig { upgrade_type, enabled }
            unsupported { filters });
        let name = u.upgrade_type.trim().to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(cx.err(
                &join(&upath, "upgrade_type"),
                format_args!("{:?} is not an upgrade token", u.upgrade_type),
            ));
        }
        if name == "connect" {
            return Err(cx.unsupported_value(&join(&upath, "upgrade_type"), "CONNECT"));
        }
        if u.enabled.as_ref().is_none_or(|e| e.value) && !types.contains(&name) {
            types.push(name);
        }
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::BoolValue;
    use hcm::http_connection_manager::UpgradeConfig;

    fn cfg(t: &str, enabled: Option<bool>) -> UpgradeConfig {
        UpgradeConfig {
            upgrade_type: t.into(),
            enabled: enabled.map(|value| BoolValue { value }),
            ..Default::default()
        }
    }

    #[test]
    fn websocket_enabled_and_disabled() -> Result<(), ConvertError> {
        let cx = Cx::new("Listener", "l");
        assert_eq!(
            upgrade_types(
                &cx,
                "hcm",
                &[cfg("WebSocket", None), cfg("h2c", Some(false))]
            )?,
            vec!["websocket".to_string()]
        );
        assert!(upgrade_types(&cx, "hcm", &[])?.is_empty());
        Ok(())
    }

    #[test]
    fn bad_tokens_and_connect_are_rejected() {
        let cx = Cx::new("Listener", "l");
        let e = upgrade_types(&cx, "hcm", &[cfg("", None)])
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("upgrade_configs[0].upgrade_type")));
        let e = upgrade_types(&cx, "hcm", &[cfg("CONNECT", None)])
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("CONNECT")), "connect");
        let mut with_filters = cfg("websocket", None);
        with_filters.filters.push(Default::default());
        let e = upgrade_types(&cx, "hcm", &[with_filters])
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("upgrade_configs[0].filters")));
    }
}
