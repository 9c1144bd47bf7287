//! Each invalid input is rejected with an exact field path and reason.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use trellis_api::{ParseOutput, Spec, check_references, parse_documents};

fn parse(text: &str) -> ParseOutput {
    parse_documents(Path::new("test.yaml"), text)
}

/// The single error of a document, as (path, reason).
fn one_error(text: &str) -> (String, String) {
    let out = parse(text);
    assert_eq!(
        out.errors.len(),
        1,
        "expected exactly one error, got {:#?}",
        out.errors
    );
    assert!(
        out.resources.is_empty(),
        "an invalid resource must not be loaded"
    );
    (out.errors[0].path.clone(), out.errors[0].reason.clone())
}

fn vs(http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n{http}"
    )
}

fn dr(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n{spec}"
    )
}

fn se(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: ext\nspec:\n{spec}"
    )
}

fn we(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: ratings-v1\nspec:\n{spec}"
    )
}

#[test]
fn display_names_file_resource_path_and_reason() {
    let text = vs(
        "  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 50\n    - destination: {host: reviews, subset: v2}\n      weight: 150\n",
    );
    let out = parse_documents(Path::new("bookinfo/vs.yaml"), &text);
    assert_eq!(
        out.errors[0].to_string(),
        "bookinfo/vs.yaml: VirtualService default/reviews: spec.http[0].route[1].weight: weight 150 is out of range 0..=100"
    );
}

#[test]
fn wrong_type() {
    let text = vs("  - route:\n    - destination: {host: reviews}\n      weight: abc\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].route[0].weight".into(),
            "invalid type: string \"abc\", expected i32".into()
        )
    );
}

#[test]
fn unknown_field() {
    let (path, reason) = one_error(&vs("  - rout:\n    - destination: {host: reviews}\n"));
    assert_eq!(path, "spec.http[0].rout");
    assert!(
        reason.starts_with("unknown field `rout`, expected one of "),
        "{reason}"
    );
}

#[test]
fn missing_destination_host() {
    let text = vs("  - route:\n    - destination: {subset: v1}\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].route[0].destination.host".into(),
            "host is required".into()
        )
    );
}

#[test]
fn missing_destination() {
    let text = vs("  - route:\n    - weight: 100\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].route[0]".into(),
            "missing field `destination`".into()
        )
    );
}

#[test]
fn weight_out_of_range() {
    let text = vs("  - route:\n    - destination: {host: reviews}\n      weight: 150\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].route[0].weight".into(),
            "weight 150 is out of range 0..=100".into()
        )
    );
}

#[test]
fn weights_must_sum_to_100() {
    let text = vs(
        "  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 60\n    - destination: {host: reviews, subset: v2}\n      weight: 60\n",
    );
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].route".into(),
            "total destination weight 120 != 100".into()
        )
    );
}

#[test]
fn single_destination_may_omit_weight() {
    let out = parse(&vs("  - route:\n    - destination: {host: reviews}\n"));
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(
        out.resources[0].summary(),
        "VirtualService default/reviews: hosts [reviews], 1 http route(s)"
    );
}

#[test]
fn bad_regex() {
    let text = vs(
        "  - match:\n    - uri:\n        regex: \"/api/(v1\"\n    route:\n    - destination: {host: reviews}\n",
    );
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].match[0].uri.regex".into(),
            "invalid regex \"/api/(v1\": unclosed group".into()
        )
    );
}

#[test]
fn bad_header_regex() {
    let text = vs(
        "  - match:\n    - headers:\n        end-user:\n          regex: \"[a-\"\n    route:\n    - destination: {host: reviews}\n",
    );
    let (path, reason) = one_error(&text);
    assert_eq!(path, "spec.http[0].match[0].headers.end-user.regex");
    assert!(reason.starts_with("invalid regex \"[a-\": "), "{reason}");
}

#[test]
fn bad_rewrite_regex() {
    let text = vs(
        "  - rewrite:\n      uriRegexRewrite: {match: \"(\", rewrite: /x}\n    route:\n    - destination: {host: reviews}\n",
    );
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].rewrite.uriRegexRewrite.match".into(),
            "invalid regex \"(\": unclosed group".into()
        )
    );
}

#[test]
fn string_match_needs_exactly_one_key() {
    let text = vs(
        "  - match:\n    - uri: {exact: /a, prefix: /b}\n    route:\n    - destination: {host: reviews}\n",
    );
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].match[0].uri".into(),
            "a string match takes only one of exact, prefix or regex".into()
        )
    );
}

#[test]
fn duplicate_subset_names() {
    let text = dr(
        "  host: reviews\n  subsets:\n  - name: v1\n    labels: {version: v1}\n  - name: v1\n    labels: {version: v2}\n",
    );
    assert_eq!(
        one_error(&text),
        (
            "spec.subsets[1].name".into(),
            "duplicate subset name \"v1\" (already defined at spec.subsets[0])".into()
        )
    );
}

#[test]
fn destination_rule_host_required() {
    assert_eq!(
        one_error(&dr("  subsets: []\n")),
        ("spec.host".into(), "host is required".into())
    );
}

#[test]
fn subset_name_required() {
    let text = dr("  host: reviews\n  subsets:\n  - labels: {version: v1}\n");
    assert_eq!(
        one_error(&text),
        ("spec.subsets[0].name".into(), "name is required".into())
    );
}

#[test]
fn negative_retry_attempts() {
    let text =
        vs("  - retries:\n      attempts: -1\n    route:\n    - destination: {host: reviews}\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].retries.attempts".into(),
            "attempts -1 must not be negative".into()
        )
    );
}

#[test]
fn bad_duration() {
    let text = vs("  - timeout: 10 seconds\n    route:\n    - destination: {host: reviews}\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].timeout".into(),
            "invalid duration \"10 seconds\": unknown unit \" seconds\" (expected ns, us, ms, s, m or h)".into()
        )
    );
}

#[test]
fn zero_duration_where_istio_needs_one_millisecond() {
    let text = vs("  - timeout: 0s\n    route:\n    - destination: {host: reviews}\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].timeout".into(),
            "duration 0s must be at least 1ms".into()
        )
    );
}

#[test]
fn percentage_out_of_range() {
    let text = vs(
        "  - fault:\n      abort:\n        httpStatus: 500\n        percentage: {value: 101}\n    route:\n    - destination: {host: reviews}\n",
    );
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].fault.abort.percentage.value".into(),
            "percentage 101 is out of range 0..=100".into()
        )
    );
}

#[test]
fn destination_port_out_of_range() {
    let text = vs("  - route:\n    - destination: {host: reviews, port: {number: 70000}}\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0].route[0].destination.port.number".into(),
            "port 70000 is out of range 1..=65535".into()
        )
    );
}

#[test]
fn route_and_redirect_are_exclusive() {
    let text = vs("  - redirect: {uri: /x}\n    route:\n    - destination: {host: reviews}\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.http[0]".into(),
            "only one of route, redirect, directResponse, delegate may be set (found route and redirect)".into()
        )
    );
}

#[test]
fn mesh_wildcard_host_rejected() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: all}\nspec:\n  hosts: ['*']\n  http:\n  - route:\n    - destination: {host: reviews}\n";
    assert_eq!(
        one_error(text),
        (
            "spec.hosts[0]".into(),
            "wildcard host * is not allowed for virtual services bound to the mesh gateway".into()
        )
    );
}

#[test]
fn unknown_kind() {
    let text =
        "apiVersion: networking.istio.io/v1\nkind: VirtualServer\nmetadata: {name: x}\nspec: {}\n";
    assert_eq!(
        one_error(text),
        (
            "kind".into(),
            "unknown kind \"VirtualServer\" in networking.istio.io".into()
        )
    );
}

#[test]
fn unknown_api_group() {
    let text = "apiVersion: networking.example.com/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {}\n";
    assert_eq!(
        one_error(text),
        (
            "apiVersion".into(),
            "unknown apiVersion \"networking.example.com/v1\": expected an Istio API group (networking.istio.io, \
             security.istio.io, telemetry.istio.io, extensions.istio.io)"
                .into()
        )
    );
}

#[test]
fn unserved_version() {
    let text =
        "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: x}\nspec: {}\n";
    assert_eq!(
        one_error(text),
        (
            "apiVersion".into(),
            "networking.istio.io/v2 does not serve VirtualService (served versions: v1, v1beta1, v1alpha3)".into()
        )
    );
}

#[test]
fn older_versions_are_accepted() {
    for version in ["v1", "v1beta1", "v1alpha3"] {
        let text = format!(
            "apiVersion: networking.istio.io/{version}\nkind: DestinationRule\nmetadata: {{name: r}}\nspec: {{host: reviews}}\n"
        );
        assert!(parse(&text).errors.is_empty(), "{version}");
    }
}

#[test]
fn known_but_unsupported_kind_is_a_warning() {
    let text = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: f, namespace: istio-system}\nspec: {configPatches: []}\n";
    let out = parse(text);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert!(out.resources.is_empty());
    assert_eq!(
        out.warnings[0].to_string(),
        "test.yaml: EnvoyFilter istio-system/f: kind EnvoyFilter is not supported yet; ignored"
    );
}

#[test]
fn multi_document_file_keeps_good_documents() {
    let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: one}\nspec: {host: one}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: two}\nspec: {host: two, subsets: [{name: v1, weight: 3}]}\n---\n\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: three}\nspec: {host: three}\n";
    let out = parse(text);
    assert_eq!(out.errors.len(), 1, "{:#?}", out.errors);
    assert_eq!(out.errors[0].path, "spec.subsets[0].weight");
    assert_eq!(
        out.errors[0].resource.as_ref().unwrap().to_string(),
        "DestinationRule default/two"
    );
    let names: Vec<_> = out
        .resources
        .iter()
        .map(|r| (r.meta.name.as_str(), r.source.index))
        .collect();
    assert_eq!(names, [("one", 0), ("three", 2)]);
}

#[test]
fn bad_yaml_in_one_document_does_not_stop_the_others() {
    let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: one}\nspec: {host: one}\n---\nkind: [unclosed\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: three}\nspec: {host: three}\n";
    let out = parse(text);
    assert_eq!(out.errors.len(), 1);
    assert!(
        out.errors[0].reason.starts_with("invalid YAML at line 7"),
        "{}",
        out.errors[0].reason
    );
    assert_eq!(out.resources.len(), 2);
}

#[test]
fn metadata_tolerates_server_fields_but_not_others() {
    let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\n  namespace: prod\n  uid: abc\n  resourceVersion: '12'\n  generation: 3\n  creationTimestamp: '2024-01-01T00:00:00Z'\n  managedFields: [{manager: kubectl}]\nspec: {host: reviews}\nstatus: {observedGeneration: 3}\n";
    let out = parse(text);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(out.resources[0].key().to_string(), "DestinationRule prod/r");
    let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\n  colour: blue\nspec: {host: reviews}\n";
    let (path, reason) = one_error(text);
    assert_eq!(path, "metadata.colour");
    assert!(reason.starts_with("unknown field `colour`"), "{reason}");
}

#[test]
fn metadata_name_required() {
    let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {namespace: x}\nspec: {host: reviews}\n";
    assert_eq!(
        one_error(text),
        ("metadata.name".into(), "name is required".into())
    );
}

#[test]
fn unknown_top_level_field() {
    let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews}\nextra: 1\n";
    let (path, _) = one_error(text);
    assert_eq!(path, "extra");
}

#[test]
fn unknown_enum_value() {
    let text = dr("  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: FASTEST}\n");
    let (path, reason) = one_error(&text);
    assert_eq!(path, "spec.trafficPolicy.loadBalancer.simple");
    assert!(
        reason.starts_with("unknown variant `FASTEST`, expected one of `UNSPECIFIED`"),
        "{reason}"
    );
}

#[test]
fn mutual_tls_needs_certificates() {
    let text =
        dr("  host: reviews\n  trafficPolicy:\n    tls: {mode: MUTUAL, privateKey: /k.pem}\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.trafficPolicy.tls.clientCertificate".into(),
            "client certificate required for mutual tls".into()
        )
    );
}

#[test]
fn service_entry_hosts_required() {
    let text = se("  ports: [{number: 80, name: http, protocol: HTTP}]\n");
    assert_eq!(
        one_error(&text),
        ("spec.hosts".into(), "at least one host is required".into())
    );
}

#[test]
fn service_entry_port_out_of_range() {
    let text = se("  hosts: [a.example.com]\n  ports: [{number: 0, name: http, protocol: HTTP}]\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.ports[0].number".into(),
            "port 0 is out of range 1..=65535".into()
        )
    );
}

#[test]
fn service_entry_selector_and_endpoints_are_exclusive() {
    let text = se(
        "  hosts: [a.example.com]\n  resolution: STATIC\n  workloadSelector: {labels: {app: a}}\n  endpoints: [{address: 10.0.0.1}]\n",
    );
    assert_eq!(
        one_error(&text),
        (
            "spec.workloadSelector".into(),
            "workloadSelector and endpoints cannot both be set".into()
        )
    );
}

#[test]
fn static_endpoints_need_ip_addresses() {
    let text = se(
        "  hosts: [a.example.com]\n  resolution: STATIC\n  endpoints: [{address: db.example.com}]\n",
    );
    assert_eq!(
        one_error(&text),
        (
            "spec.endpoints[0].address".into(),
            "endpoint address \"db.example.com\" must be an IP address or unix socket with resolution STATIC".into()
        )
    );
    let text =
        se("  hosts: [a.example.com]\n  resolution: STATIC\n  endpoints: [{labels: {app: a}}]\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.endpoints[0].address".into(),
            "address is required (unless network is set)".into()
        )
    );
}

#[test]
fn endpoints_not_allowed_with_resolution_none() {
    let text = se("  hosts: [a.example.com]\n  endpoints: [{address: 10.0.0.1}]\n");
    assert_eq!(
        one_error(&text),
        (
            "spec.endpoints".into(),
            "endpoints are not allowed with resolution NONE".into()
        )
    );
}

#[test]
fn service_entry_summary() {
    let out = parse(&se(
        "  hosts: [ratings.example.com]\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: ratings}}\n",
    ));
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(
        out.resources[0].summary(),
        "ServiceEntry default/ext: hosts [ratings.example.com], 1 port(s), resolution STATIC"
    );
}

#[test]
fn workload_entry_address_required() {
    assert_eq!(
        one_error(&we("  labels: {app: ratings}\n")),
        (
            "spec.address".into(),
            "address is required (unless network is set)".into()
        )
    );
}

#[test]
fn workload_entry_port_out_of_range() {
    assert_eq!(
        one_error(&we("  address: 127.0.0.2\n  ports: {http: 70000}\n")),
        (
            "spec.ports.http".into(),
            "port 70000 is out of range 1..=65535".into()
        )
    );
}

#[test]
fn workload_entry_summary() {
    let out = parse(&we(
        "  address: 127.0.0.2\n  labels: {app: ratings, version: v1}\n  serviceAccount: bookinfo-ratings\n",
    ));
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(
        out.resources[0].summary(),
        "WorkloadEntry default/ratings-v1: address 127.0.0.2, labels {app=ratings,version=v1}"
    );
    let Spec::WorkloadEntry(w) = &out.resources[0].spec else {
        panic!()
    };
    assert_eq!(w.service_account.as_deref(), Some("bookinfo-ratings"));
}

#[test]
fn duplicate_resources_error_on_the_second() {
    let doc = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews}\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), doc).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/b.yml"), doc).unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "not: [valid").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let out = trellis_api::load_path(dir.path());
    assert_eq!(out.resources.len(), 1);
    assert_eq!(out.resources[0].source.file, dir.path().join("a.yaml"));
    assert_eq!(out.errors.len(), 1, "{:#?}", out.errors);
    assert_eq!(out.errors[0].file, dir.path().join("sub/b.yml"));
    assert_eq!(out.errors[0].path, "metadata.name");
    assert!(
        out.errors[0]
            .reason
            .starts_with("duplicate DestinationRule default/r: already defined in ")
    );
}

#[test]
fn json_files_parse() {
    let json = r#"{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "r"}, "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}"#;
    let out = parse_documents(Path::new("dr.json"), json);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(
        out.resources[0].summary(),
        "DestinationRule default/r: host reviews, 1 subset(s)"
    );
}

#[test]
fn undefined_subset_is_a_reference_warning() {
    let text = format!(
        "{}---\n{}",
        vs("  - route:\n    - destination: {host: reviews, subset: v4}\n"),
        dr("  host: reviews\n  subsets:\n  - name: v1\n")
    );
    let out = parse(&text);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    let warnings = check_references(&out.resources);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].path, "spec.http[0].route[0].destination.subset");
    assert_eq!(
        warnings[0].to_string(),
        "test.yaml: VirtualService default/reviews: spec.http[0].route[0].destination.subset: subset \"v4\" of host reviews.default.svc.cluster.local is not defined by any DestinationRule"
    );
}

#[test]
fn security_and_telemetry_kinds_parse() {
    let text = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec:\n  mtls: {mode: STRICT}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-get}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  action: ALLOW\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-productpage]}}]\n    to: [{operation: {methods: [GET], ports: ['9080']}}]\n    when: [{key: 'request.headers[version]', values: [v1]}]\n---\napiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\nmetadata: {name: jwt}\nspec:\n  jwtRules: [{issuer: a@b.c, jwksUri: 'https://x/jwks.json'}]\n---\napiVersion: telemetry.istio.io/v1alpha1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\nspec:\n  tracing: [{randomSamplingPercentage: 10.0}]\n  accessLogging: [{providers: [{name: envoy}]}]\n";
    let out = parse(text);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(out.resources.len(), 4);
    assert_eq!(
        out.resources[0].summary(),
        "PeerAuthentication istio-system/default: mtls STRICT"
    );
}

fn telemetry_metrics(overrides: &str) -> String {
    format!(
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: m, namespace: default}}\nspec:\n  metrics:\n  - overrides:\n{overrides}"
    )
}

#[test]
fn telemetry_metric_overrides_outside_the_supported_subset() {
    let (path, reason) = one_error(&telemetry_metrics(
        "    - tagOverrides:\n        peer: {value: \"upstream_peer.labels['app']\"}\n",
    ));
    assert_eq!(path, "spec.metrics[0].overrides[0].tagOverrides.peer.value");
    assert!(
        reason.starts_with("unsupported value expression"),
        "{reason}"
    );
    let (path, reason) = one_error(&telemetry_metrics(
        "    - tagOverrides:\n        bad-name: {value: request.host}\n",
    ));
    assert_eq!(path, "spec.metrics[0].overrides[0].tagOverrides.bad-name");
    assert!(reason.contains("Prometheus label name"), "{reason}");
    let (path, reason) = one_error(&telemetry_metrics(
        "    - tagOverrides:\n        tenant: {operation: UPSERT}\n",
    ));
    assert_eq!(
        (path.as_str(), reason.as_str()),
        (
            "spec.metrics[0].overrides[0].tagOverrides.tenant.value",
            "required for UPSERT"
        )
    );
    let (path, reason) = one_error(&telemetry_metrics(
        "    - match: {customMetric: my_own_metric}\n      disabled: true\n",
    ));
    assert_eq!(path, "spec.metrics[0].overrides[0].match.customMetric");
    assert!(reason.contains("only Istio's standard metrics"), "{reason}");
    let ok = parse(&telemetry_metrics(
        "    - match: {customMetric: istio_requests_total, mode: SERVER}\n      tagOverrides:\n        tenant: {value: \"request.headers['x-tenant'] | 'none'\"}\n        destination_version: {operation: REMOVE}\n",
    ));
    assert!(ok.errors.is_empty(), "{:#?}", ok.errors);
}

#[test]
fn app_protocol_loads_and_warns_when_it_selects_nothing_or_is_overridden() {
    let port = |extra: &str| {
        se(&format!(
            "  hosts: [web.example.com]\n  ports:\n  - {{number: 80, name: web{extra}}}\n"
        ))
    };
    let out = parse(&port(", appProtocol: http2"));
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert!(out.warnings.is_empty(), "{:#?}", out.warnings);
    assert_eq!(out.resources.len(), 1);
    assert!(
        parse(&port(", appProtocol: kubernetes.io/h2c"))
            .warnings
            .is_empty()
    );

    let unknown = parse(&port(", appProtocol: example.com/custom"));
    assert!(unknown.errors.is_empty(), "{:#?}", unknown.errors);
    assert_eq!(unknown.warnings.len(), 1, "{:#?}", unknown.warnings);
    assert_eq!(unknown.warnings[0].path, "spec.ports[0].appProtocol");
    assert!(
        unknown.warnings[0]
            .reason
            .contains("unknown application protocol")
    );

    let overridden = parse(&port(", protocol: HTTP, appProtocol: tcp"));
    assert_eq!(overridden.warnings.len(), 1, "{:#?}", overridden.warnings);
    assert!(
        overridden.warnings[0]
            .reason
            .contains("appProtocol \"tcp\" is ignored: the port's protocol \"HTTP\" is set")
    );
}
