//! Every Istio Bookinfo sample must load without errors.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use trellis_api::{Spec, check_references, load_path};

fn samples_dir() -> Option<PathBuf> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/istio-samples");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "note: {} is absent; skipping the Bookinfo sample test",
            dir.display()
        );
        None
    }
}

#[test]
fn every_bookinfo_sample_parses_without_errors() {
    let Some(dir) = samples_dir() else { return };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let out = load_path(&file);
        let errors: Vec<String> = out.errors.iter().map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
        assert!(
            out.warnings.is_empty(),
            "{}: {:#?}",
            file.display(),
            out.warnings
        );
        assert!(
            !out.resources.is_empty(),
            "{}: no resources",
            file.display()
        );
    }
}

#[test]
fn bookinfo_directory_loads_and_summarises() {
    let Some(dir) = samples_dir() else { return };
    // The samples are alternatives (several define the same VirtualService), so duplicates are
    // expected when loading the whole directory at once; nothing else may fail.
    let out = load_path(&dir);
    for e in &out.errors {
        assert!(e.reason.starts_with("duplicate "), "{e}");
    }
    let reviews_dr = out
        .resources
        .iter()
        .find(|r| r.key().to_string() == "DestinationRule default/reviews")
        .unwrap();
    assert_eq!(
        reviews_dr.summary(),
        "DestinationRule default/reviews: host reviews, 3 subset(s)"
    );
    let se = out
        .resources
        .iter()
        .find(|r| matches!(r.spec, Spec::ServiceEntry(_)))
        .unwrap();
    assert_eq!(
        se.summary(),
        "ServiceEntry default/googleapis: hosts [www.googleapis.com], 2 port(s), resolution DNS"
    );
    let gw = out
        .resources
        .iter()
        .find(|r| r.kind() == "Gateway")
        .unwrap();
    assert_eq!(
        gw.summary(),
        "Gateway default/bookinfo-gateway: 1 server(s), selector {istio=ingressgateway}"
    );
    // Every subset used by the samples is defined by the samples' DestinationRules.
    let all_dr = load_path(&dir.join("bookinfo-destination-rule-all.yaml"));
    let vs = load_path(&dir.join("bookinfo-virtual-service-all-v1.yaml"));
    let mut both = all_dr.resources.clone();
    both.extend(vs.resources.clone());
    assert!(check_references(&both).is_empty());
}

#[test]
fn typed_fields_of_a_sample() {
    let Some(dir) = samples_dir() else { return };
    let out = load_path(&dir.join("bookinfo-virtual-service-ratings-test-delay.yaml"));
    let Spec::VirtualService(vs) = &out.resources[0].spec else {
        panic!("not a VirtualService")
    };
    let delay = vs.http[0].fault.as_ref().unwrap().delay.as_ref().unwrap();
    assert_eq!(
        delay.fixed_delay.unwrap().as_std(),
        std::time::Duration::from_secs(7)
    );
    assert_eq!(delay.percentage.unwrap().value, 100.0);
    assert_eq!(
        vs.http[0].match_[0].headers["end-user"],
        trellis_api::StringMatch::Exact("jason".to_string())
    );
}
