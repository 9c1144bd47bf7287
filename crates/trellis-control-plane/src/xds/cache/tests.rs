//! The cache shares what may be shared and nothing else: proxies with the same inputs hold the
//! same parts, a proxy scoped differently gets its own, the assembled config is exactly what
//! `translate::generate` builds, and an endpoint change only changes EDS.

use std::path::Path;
use std::sync::Arc;

use trellis_xds::{InterceptionMode, NodeIdentity, ProxyType, type_url};

use super::ConfigCache;
use crate::model::MeshModel;
use crate::translate;
use crate::xds::ProxyConfig;

const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: other, namespace: default}
spec:
  hosts: [other.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}, {number: 9000, name: tcp, protocol: TCP}]
  workloadSelector: {labels: {app: other}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other-1, namespace: default}
spec: {address: 127.0.8.20, labels: {app: other}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - route: [{destination: {host: echo}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: scoped, namespace: default}
spec:
  workloadSelector: {labels: {app: scoped}}
  egress: [{hosts: [./echo.default.svc.cluster.local]}]
"#;

fn model_with_echo_at(ip: &str) -> MeshModel {
    let yaml = format!(
        "{SERVICES}---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: echo-1, namespace: default}}\nspec: {{address: {ip}, labels: {{app: echo}}}}\n"
    );
    let parsed = trellis_api::parse_documents(Path::new("mesh.yaml"), &yaml);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    MeshModel::build(&parsed.resources)
}

fn model() -> MeshModel {
    model_with_echo_at("127.0.8.10")
}

fn sidecar(ip: &str, app: &str) -> NodeIdentity {
    NodeIdentity {
        proxy_type: ProxyType::Sidecar,
        ip: ip.parse().expect("ip"),
        workload: format!("w-{ip}"),
        namespace: "default".into(),
        service_account: "default".into(),
        labels: [("app".to_string(), app.to_string())].into_iter().collect(),
        app_ip: None,
        sds: false,
        interception: InterceptionMode::None,
    }
}

fn config(cache: &ConfigCache, model: &MeshModel, node: &NodeIdentity) -> ProxyConfig {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(cache.config_for(model, node))
}

const SHARED_TYPES: [&str; 3] = [type_url::CLUSTER, type_url::ENDPOINT, type_url::ROUTE];

#[test]
fn proxies_with_the_same_inputs_share_the_outbound_parts() {
    let model = model();
    let cache = ConfigCache::default();
    let a = config(&cache, &model, &sidecar("127.0.8.2", "client"));
    let b = config(&cache, &model, &sidecar("127.0.8.3", "client"));
    assert_eq!(cache.shared_keys(), 1);
    for t in SHARED_TYPES {
        assert!(
            Arc::ptr_eq(&a.parts(t)[0], &b.parts(t)[0]),
            "{t}: not the same part"
        );
        assert!(!a.parts(t)[0].entries().is_empty(), "{t}: empty");
    }
    // Listeners bind each proxy's own IP: never shared.
    let listeners = |c: &ProxyConfig| {
        c.select(type_url::LISTENER, |_| true)
            .iter()
            .map(|e| e.any.value.clone())
            .collect::<Vec<_>>()
    };
    assert_ne!(listeners(&a), listeners(&b));
}

#[test]
fn a_proxy_with_other_labels_or_sidecar_scope_gets_its_own_parts() {
    let model = model();
    let cache = ConfigCache::default();
    let client = config(&cache, &model, &sidecar("127.0.8.2", "client"));
    let scoped = config(&cache, &model, &sidecar("127.0.8.4", "scoped"));
    let namespaced = config(
        &cache,
        &model,
        &NodeIdentity {
            namespace: "elsewhere".into(),
            ..sidecar("127.0.8.5", "client")
        },
    );
    let secure = config(
        &cache,
        &model,
        &NodeIdentity {
            sds: true,
            ..sidecar("127.0.8.6", "client")
        },
    );
    assert_eq!(cache.shared_keys(), 4);
    for other in [&scoped, &namespaced, &secure] {
        assert!(!Arc::ptr_eq(
            &client.parts(type_url::CLUSTER)[0],
            &other.parts(type_url::CLUSTER)[0]
        ));
    }
    let names = |c: &ProxyConfig| {
        c.select(type_url::CLUSTER, |_| true)
            .iter()
            .map(|e| e.name.clone())
            .collect::<Vec<_>>()
    };
    // The Sidecar narrows the scoped proxy's egress to echo.
    assert!(names(&client).iter().any(|n| n.contains("other.default")));
    assert!(!names(&scoped).iter().any(|n| n.contains("other.default")));
    assert!(names(&scoped).iter().any(|n| n.contains("echo.default")));
}

#[test]
fn the_assembled_config_is_what_generate_builds() {
    let model = model();
    let cache = ConfigCache::default();
    let nodes = [
        sidecar("127.0.8.2", "client"),
        // An endpoint of echo: it has inbound listeners and clusters of its own.
        sidecar("127.0.8.10", "echo"),
        NodeIdentity {
            sds: true,
            app_ip: Some("127.0.8.110".parse().expect("ip")),
            ..sidecar("127.0.8.20", "other")
        },
        NodeIdentity {
            interception: InterceptionMode::Redirect,
            ..sidecar("127.0.8.7", "client")
        },
        NodeIdentity {
            proxy_type: ProxyType::Router,
            ..sidecar("127.0.8.8", "gateway")
        },
    ];
    for node in &nodes {
        let cached = config(&cache, &model, node).to_resources();
        assert_eq!(
            cached,
            translate::generate(&model, node),
            "{}",
            node.node_id()
        );
    }
}

#[test]
fn an_endpoint_change_changes_only_eds() {
    let node = sidecar("127.0.8.2", "client");
    let before = config(&ConfigCache::default(), &model(), &node);
    let after = config(
        &ConfigCache::default(),
        &model_with_echo_at("127.0.8.11"),
        &node,
    );
    let hash = |c: &ProxyConfig, t: &str| c.parts(t)[0].hash();
    assert_ne!(
        hash(&before, type_url::ENDPOINT),
        hash(&after, type_url::ENDPOINT)
    );
    for t in [type_url::CLUSTER, type_url::ROUTE, type_url::LISTENER] {
        assert_eq!(hash(&before, t), hash(&after, t), "{t} changed");
    }
}
