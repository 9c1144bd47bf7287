//! `envoy.filters.network.tcp_proxy` (`TcpProxy`) → [`config::TcpProxy`]: `stat_prefix`,
//! `cluster` or `weighted_clusters.clusters[]{name, weight}`, `idle_timeout` (default 1 h,
//! `0s` = none). Everything else is NACKed with its path.

use std::time::Duration;

use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;

use super::{ConvertError, Cx, duration, join, reject_unsupported};
use crate::config;

/// Envoy's default `idle_timeout` of a TCP proxy.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Converts one TCP proxy filter config.
pub(crate) fn convert_tcp_proxy(
    cx: &Cx,
    path: &str,
    t: &tcp::TcpProxy,
) -> Result<config::TcpProxy, ConvertError> {
    reject_unsupported!(cx, path, t, tcp::TcpProxy { stat_prefix, cluster_specifier, idle_timeout }
        unsupported { on_demand, metadata_match, downstream_idle_timeout, upstream_idle_timeout, access_log, max_connect_attempts, backoff_options, hash_policy, tunneling_config, max_downstream_connection_duration, max_downstream_connection_duration_jitter_percentage, access_log_flush_interval, flush_access_log_on_connected, access_log_options, proxy_protocol_tlvs, proxy_protocol_tlv_merge_policy, upstream_connect_mode, max_early_data_bytes, check_drain_close });
    if t.stat_prefix.is_empty() {
        return Err(cx.missing(&join(path, "stat_prefix")));
    }
    use tcp::tcp_proxy::ClusterSpecifier as C;
    let target = match &t.cluster_specifier {
        Some(C::Cluster(name)) if !name.is_empty() => config::ClusterTarget::Cluster(name.clone()),
        Some(C::Cluster(_)) => return Err(cx.missing(&join(path, "cluster"))),
        Some(C::WeightedClusters(w)) => {
            let wpath = join(path, "weighted_clusters");
            let mut clusters = Vec::new();
            for (i, c) in w.clusters.iter().enumerate() {
                let cpath = join(&wpath, &format!("clusters[{i}]"));
                reject_unsupported!(cx, &cpath, c, tcp::tcp_proxy::weighted_cluster::ClusterWeight { name, weight }
                    unsupported { metadata_match });
                if c.name.is_empty() {
                    return Err(cx.missing(&join(&cpath, "name")));
                }
                clusters.push(config::WeightedCluster {
                    name: c.name.clone(),
                    weight: c.weight,
                    request_headers: Default::default(),
                    response_headers: Default::default(),
                });
            }
            if clusters.iter().map(|c| u64::from(c.weight)).sum::<u64>() == 0 {
                return Err(cx.err(
                    &join(&wpath, "clusters"),
                    "the total weight must be above 0",
                ));
            }
            config::ClusterTarget::WeightedClusters(clusters)
        }
        None => return Err(cx.missing(&join(path, "cluster"))),
    };
    let idle_timeout = match &t.idle_timeout {
        None => Some(DEFAULT_IDLE_TIMEOUT),
        Some(d) => Some(duration(cx, &join(path, "idle_timeout"), d)?).filter(|d| !d.is_zero()),
    };
    Ok(config::TcpProxy {
        stat_prefix: t.stat_prefix.clone(),
        target,
        idle_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};

    fn cx() -> Cx {
        Cx::new("Listener", "tcp")
    }

    #[test]
    fn cluster_weighted_and_idle_timeout() -> Result<(), ConvertError> {
        let t = tcp::TcpProxy {
            stat_prefix: "outbound|9000||db".into(),
            cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster("c".into())),
            ..Default::default()
        };
        let c = convert_tcp_proxy(&cx(), "f", &t)?;
        assert_eq!(c.target, config::ClusterTarget::Cluster("c".into()));
        assert_eq!(c.idle_timeout, Some(DEFAULT_IDLE_TIMEOUT));

        let w = tcp::TcpProxy {
            stat_prefix: "s".into(),
            cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(
                tcp::tcp_proxy::WeightedCluster {
                    clusters: vec![
                        tcp::tcp_proxy::weighted_cluster::ClusterWeight {
                            name: "a".into(),
                            weight: 80,
                            ..Default::default()
                        },
                        tcp::tcp_proxy::weighted_cluster::ClusterWeight {
                            name: "b".into(),
                            weight: 20,
                            ..Default::default()
                        },
                    ],
                },
            )),
            idle_timeout: Some(PbDuration {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        };
        let c = convert_tcp_proxy(&cx(), "f", &w)?;
        assert!(matches!(&c.target, config::ClusterTarget::WeightedClusters(v) if v.len() == 2));
        assert_eq!(c.idle_timeout, None);
        Ok(())
    }

    #[test]
    fn unlisted_fields_and_missing_cluster_are_nacked() {
        let t = tcp::TcpProxy {
            stat_prefix: "s".into(),
            cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster("c".into())),
            max_connect_attempts: Some(UInt32Value { value: 3 }),
            ..Default::default()
        };
        let e = convert_tcp_proxy(&cx(), "f", &t)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("f.max_connect_attempts")));
        let t = tcp::TcpProxy {
            stat_prefix: "s".into(),
            ..Default::default()
        };
        let e = convert_tcp_proxy(&cx(), "f", &t)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("f.cluster")));
    }
}
