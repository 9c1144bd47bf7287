//! Istio's host name resolution.

/// Resolves an Istio short host name in a namespace, as Istio does for `host` fields:
/// a name without a dot (and not `*`) becomes `name.NAMESPACE.svc.cluster.local`;
/// anything else is returned unchanged.
pub fn resolve_host(host: &str, namespace: &str) -> String {
    if host.contains('.') || host == "*" {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.cluster.local")
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_host;

    #[test]
    fn short_names_get_the_namespace() {
        assert_eq!(
            resolve_host("reviews", "default"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(
            resolve_host("reviews", "prod"),
            "reviews.prod.svc.cluster.local"
        );
    }

    #[test]
    fn qualified_names_and_wildcards_are_unchanged() {
        assert_eq!(
            resolve_host("www.googleapis.com", "default"),
            "www.googleapis.com"
        );
        assert_eq!(resolve_host("*", "default"), "*");
        assert_eq!(resolve_host("*.example.com", "default"), "*.example.com");
    }
}
