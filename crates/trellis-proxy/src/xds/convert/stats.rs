//! `istio.stats`: Istio's stats filter config (`stats.PluginConfig` in a `TypedStruct`) into
//! the metric overrides of a connection manager. Strict: only `metrics[]` with `name`,
//! `dimensions`, `tags_to_remove` and `drop` is understood; any other key is NACKed with its
//! path, as is a label that is not a Prometheus label name or a value expression outside the
//! supported subset ([`trellis_xds::stats::SUPPORTED`]).
//!
//! Entries apply in order to the metrics they name (every metric when `name` is empty): `drop`
//! drops the metric, `dimensions` set labels (a later value for the same label wins), and
//! `tags_to_remove` leaves standard labels out. TCP and gRPC-message metric names are accepted
//! but change nothing here: an HTTP connection manager reports the four HTTP metrics only.

use std::sync::Arc;

use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{Any, Value};
use trellis_xds::stats::{self as names, ValueExpr};

use super::{ConvertError, Cx, decode_any, join};
use crate::telemetry::overrides::{
    HTTP_METRICS, LabelChanges, MetricsConfig, STANDARD_LABELS, Upsert,
};

/// The filter's config into the overrides it asks for.
pub(crate) fn stats_filter(cx: &Cx, path: &str, any: &Any) -> Result<MetricsConfig, ConvertError> {
    let typed: names::TypedStruct = decode_any(cx, path, any, names::TYPED_STRUCT_TYPE)?;
    if typed.type_url != names::PLUGIN_CONFIG_TYPE {
        return Err(cx.unsupported_value(&join(path, "type_url"), &typed.type_url));
    }
    let vpath = join(path, "value");
    let mut changes: [Option<LabelChanges>; 4] =
        std::array::from_fn(|_| Some(LabelChanges::default()));
    if let Some(value) = &typed.value {
        for (key, v) in &value.fields {
            if key != "metrics" {
                return Err(cx.unsupported_field(&join(&vpath, key)));
            }
            let Some(Kind::ListValue(list)) = &v.kind else {
                return Err(cx.err(&join(&vpath, key), "must be a list"));
            };
            for (i, entry) in list.values.iter().enumerate() {
                let epath = join(&vpath, &format!("metrics[{i}]"));
                metric_config(cx, &epath, entry, &mut changes)?;
            }
        }
    }
    for c in changes.iter_mut().flatten() {
        c.upserts.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut http: [Option<Arc<LabelChanges>>; 4] = Default::default();
    for (i, c) in changes.into_iter().enumerate() {
        // Metrics with the same changes share them (the recording path compares them).
        let shared = http[..i]
            .iter()
            .flatten()
            .find(|earlier| Some(&***earlier) == c.as_ref())
            .cloned();
        http[i] = shared.or_else(|| c.map(Arc::new));
    }
    Ok(MetricsConfig { http })
}

/// One `MetricConfig` applied to `changes`.
fn metric_config(
    cx: &Cx,
    path: &str,
    entry: &Value,
    changes: &mut [Option<LabelChanges>; 4],
) -> Result<(), ConvertError> {
    let Some(Kind::StructValue(fields)) = &entry.kind else {
        return Err(cx.err(path, "must be an object"));
    };
    let mut name = "";
    let mut drop = false;
    let mut upserts: Vec<Upsert> = Vec::new();
    let mut removed = 0u32;
    for (key, v) in &fields.fields {
        let kpath = join(path, key);
        match (key.as_str(), &v.kind) {
            ("name", Some(Kind::StringValue(n))) => {
                if !n.is_empty() && !names::METRICS.iter().any(|(_, s)| s == n) {
                    return Err(cx.unsupported_value(&kpath, n));
                }
                name = n;
            }
            ("drop", Some(Kind::BoolValue(b))) => drop = *b,
            ("dimensions", Some(Kind::StructValue(dims))) => {
                for (label, value) in &dims.fields {
                    let dpath = join(&kpath, label);
                    if !names::is_label_name(label) {
                        return Err(cx.err(&dpath, "not a Prometheus label name"));
                    }
                    let Some(Kind::StringValue(source)) = &value.kind else {
                        return Err(cx.err(&dpath, "must be a string"));
                    };
                    let expr = ValueExpr::parse(source).map_err(|e| cx.err(&dpath, e))?;
                    upserts.push(Upsert {
                        name: Arc::from(label.as_str()),
                        source: source.clone(),
                        expr,
                    });
                }
            }
            ("tags_to_remove", Some(Kind::ListValue(list))) => {
                for (i, tag) in list.values.iter().enumerate() {
                    let tpath = join(&kpath, &format!("[{i}]"));
                    let Some(Kind::StringValue(tag)) = &tag.kind else {
                        return Err(cx.err(&tpath, "must be a string"));
                    };
                    // A label that is not one of Istio's has nothing to remove.
                    if let Some(bit) = STANDARD_LABELS.iter().position(|l| l == tag) {
                        removed |= 1 << bit;
                    } else if !names::is_label_name(tag) {
                        return Err(cx.err(&tpath, "not a Prometheus label name"));
                    }
                }
            }
            ("name" | "drop" | "dimensions" | "tags_to_remove", _) => {
                return Err(cx.err(&kpath, "wrong type"));
            }
            _ => return Err(cx.unsupported_field(&kpath)),
        }
    }
    for (i, metric) in HTTP_METRICS.iter().enumerate() {
        if !name.is_empty() && name != *metric {
            continue;
        }
        if drop {
            changes[i] = None;
            continue;
        }
        let Some(c) = changes[i].as_mut() else {
            continue;
        };
        for u in &upserts {
            c.upserts.retain(|old| old.name != u.name);
            c.upserts.push(u.clone());
            // An upserted standard label is reported again.
            if let Some(bit) = STANDARD_LABELS.iter().position(|l| **l == *u.name) {
                c.removed &= !(1 << bit);
            }
        }
        c.removed |= removed;
        c.upserts.retain(|u| {
            STANDARD_LABELS
                .iter()
                .position(|l| **l == *u.name)
                .is_none_or(|b| removed & (1 << b) == 0)
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::google::protobuf::{ListValue, Struct};
    use trellis_xds::to_any;

    use super::*;

    fn any(config: serde_json::Value) -> Any {
        to_any(
            names::TYPED_STRUCT_TYPE,
            &names::TypedStruct {
                type_url: names::PLUGIN_CONFIG_TYPE.to_string(),
                value: Some(to_struct(config)),
            },
        )
    }

    fn to_value(v: serde_json::Value) -> Value {
        let kind = match v {
            serde_json::Value::Bool(b) => Kind::BoolValue(b),
            serde_json::Value::String(s) => Kind::StringValue(s),
            serde_json::Value::Array(a) => Kind::ListValue(ListValue {
                values: a.into_iter().map(to_value).collect(),
            }),
            serde_json::Value::Object(_) => Kind::StructValue(to_struct(v)),
            serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
            serde_json::Value::Null => Kind::NullValue(0),
        };
        Value { kind: Some(kind) }
    }

    fn to_struct(v: serde_json::Value) -> Struct {
        let serde_json::Value::Object(map) = v else {
            panic!("object");
        };
        Struct {
            fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
        }
    }

    fn convert(config: serde_json::Value) -> Result<MetricsConfig, String> {
        let cx = Cx::new("Listener", "l");
        stats_filter(&cx, "typed_config", &any(config)).map_err(|e| e.to_string())
    }

    #[test]
    fn drop_remove_and_upsert() {
        let c = convert(serde_json::json!({"metrics": [
            {"name": "request_bytes", "drop": true},
            {"dimensions": {"tenant": "request.headers['x-tenant'] | 'none'", "source_app": "'fixed'"},
             "tags_to_remove": ["destination_version", "not_a_standard_label"]},
            {"name": "requests_total", "dimensions": {"destination_version": "request.method"}},
        ]}))
        .expect("converts");
        assert!(c.http[2].is_none(), "request_bytes dropped");
        let all = c.http[1].as_ref().expect("duration kept");
        assert!(Arc::ptr_eq(
            all,
            c.http[3].as_ref().expect("response_bytes")
        ));
        let version = STANDARD_LABELS
            .iter()
            .position(|l| *l == "destination_version")
            .expect("standard");
        assert_eq!(all.removed, 1 << version);
        let names: Vec<&str> = all.upserts.iter().map(|u| &*u.name).collect();
        assert_eq!(names, ["source_app", "tenant"]);
        let requests = c.http[0].as_ref().expect("requests kept");
        assert_eq!(requests.removed, 0, "upserted again");
        assert_eq!(requests.upserts.len(), 3);
    }

    #[test]
    fn strict() {
        let err = |v| convert(v).expect_err("NACK");
        assert!(
            err(serde_json::json!({"metrics": [], "reporter": "SERVER_GATEWAY"}))
                .contains("typed_config.value.reporter"),
        );
        assert!(
            err(serde_json::json!({"metrics": [{"name": "x", "drop": true}]}))
                .contains("metrics[0].name")
        );
        assert!(
            err(serde_json::json!({"metrics": [{"match": "true"}]})).contains("metrics[0].match")
        );
        let e = err(
            serde_json::json!({"metrics": [{"dimensions": {"a": "upstream_peer.labels['app']"}}]}),
        );
        assert!(
            e.contains("metrics[0].dimensions.a") && e.contains("unsupported value expression"),
            "{e}"
        );
        assert!(
            err(serde_json::json!({"metrics": [{"dimensions": {"a-b": "request.host"}}]}))
                .contains("not a Prometheus label name")
        );
    }
}
