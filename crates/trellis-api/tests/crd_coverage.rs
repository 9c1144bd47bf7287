//! Builds, from Istio's own CRD schemas, a document that sets every field of every modelled
//! kind and version, and checks that Trellis knows every field and its type.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};
use trellis_api::{kind_info, parse_documents};

fn crds() -> Option<Vec<Value>> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/istio-crds.yaml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "note: {} is absent; skipping the CRD coverage test",
            path.display()
        );
        return None;
    };
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect();
    Some(docs)
}

/// Property names that a `oneOf` (directly or inside `allOf`) makes mutually exclusive,
/// except the first alternative of each, which is kept.
fn excluded_by_one_of(schema: &Value) -> Vec<String> {
    let mut one_ofs: Vec<&Value> = schema.get("oneOf").into_iter().collect();
    if let Some(all) = schema.get("allOf").and_then(Value::as_sequence) {
        one_ofs.extend(all.iter().filter_map(|a| a.get("oneOf")));
    }
    let mut excluded = Vec::new();
    for one_of in one_ofs {
        let alternatives: Vec<&str> = one_of
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|alt| alt.get("required")?.as_sequence()?.first()?.as_str())
            .collect();
        excluded.extend(alternatives.iter().skip(1).map(|s| s.to_string()));
    }
    excluded
}

/// A value setting every property of a schema.
fn sample(schema: &Value) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_sequence)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if schema.get("x-kubernetes-int-or-string").is_some() {
        return Value::from(1);
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let mut map = Mapping::new();
            let excluded = excluded_by_one_of(schema);
            if let Some(props) = schema.get("properties").and_then(Value::as_mapping) {
                for (name, prop) in props {
                    if !excluded.iter().any(|e| Some(e.as_str()) == name.as_str()) {
                        map.insert(name.clone(), sample(prop));
                    }
                }
            }
            if let Some(extra) = schema
                .get("additionalProperties")
                .filter(|v| v.is_mapping())
            {
                map.insert(Value::from("key"), sample(extra));
            }
            Value::Mapping(map)
        }
        Some("array") => Value::Sequence(vec![sample(&schema["items"])]),
        Some("integer") => Value::from(1),
        Some("number") => Value::from(1.0),
        Some("boolean") => Value::from(true),
        // "1s" is valid both as a plain string and as a duration.
        _ => Value::from("1s"),
    }
}

#[test]
fn every_crd_field_is_modelled() {
    let Some(crds) = crds() else { return };
    let mut checked = 0;
    for crd in &crds {
        let group = crd["spec"]["group"].as_str().unwrap();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
        let supported = kind_info(group, kind).is_some_and(|k| k.supported);
        for version in crd["spec"]["versions"].as_sequence().unwrap() {
            let name = version["name"].as_str().unwrap();
            let spec_schema = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
            let mut doc = Mapping::new();
            doc.insert("apiVersion".into(), format!("{group}/{name}").into());
            doc.insert("kind".into(), kind.into());
            doc.insert(
                "metadata".into(),
                serde_yaml::from_str("{name: x}").unwrap(),
            );
            doc.insert("spec".into(), sample(spec_schema));
            let text = serde_yaml::to_string(&Value::Mapping(doc)).unwrap();
            let out = parse_documents(Path::new("crd.yaml"), &text);
            if !supported {
                assert!(out.errors.is_empty(), "{kind} {name}: {:#?}", out.errors);
                assert_eq!(out.warnings.len(), 1, "{kind} {name}");
                continue;
            }
            // Semantic errors are expected for made-up values; structural ones are not.
            for e in &out.errors {
                let structural = e.reason.starts_with("unknown field")
                    || e.reason.starts_with("invalid type")
                    || e.reason.starts_with("invalid value")
                    || e.reason.starts_with("unknown variant")
                    || e.reason.starts_with("missing field")
                    || e.reason.starts_with("invalid duration");
                assert!(!structural, "{kind} {group}/{name}: {e}\n{text}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} kind versions checked");
}
