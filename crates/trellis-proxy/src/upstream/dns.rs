//! STRICT_DNS / LOGICAL_DNS clusters: names resolved with Tokio's resolver (the system's),
//! re-resolved every `dns_refresh_rate`. A failed round keeps the last good endpoints.

use std::sync::{Arc, Weak};

use super::UpstreamCluster;
use crate::config::{Discovery, Endpoint};

pub(super) fn spawn_resolver(cluster: &Arc<UpstreamCluster>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(cluster = %cluster.config.name, "no runtime: DNS cluster not resolved");
        return;
    };
    let weak: Weak<UpstreamCluster> = Arc::downgrade(cluster);
    handle.spawn(async move {
        loop {
            let Some(cluster) = weak.upgrade() else {
                return;
            };
            let Discovery::Dns {
                logical,
                lookup_family,
                refresh_rate,
                hosts,
            } = &cluster.config.discovery
            else {
                return;
            };
            let (logical, family, refresh_rate, hosts) =
                (*logical, *lookup_family, *refresh_rate, hosts.clone());
            let name = cluster.config.name.clone();
            drop(cluster);
            let mut endpoints = Vec::new();
            let mut ok = true;
            for h in &hosts {
                match tokio::net::lookup_host((h.hostname.as_str(), h.port)).await {
                    Ok(addrs) => {
                        let mut addrs = family.filter(addrs.collect());
                        addrs.dedup();
                        if logical {
                            addrs.truncate(1);
                        }
                        endpoints.extend(addrs.into_iter().map(|address| Endpoint {
                            address,
                            ..h.template.clone()
                        }));
                    }
                    Err(e) => {
                        tracing::warn!(cluster = %name, host = %h.hostname, error = %e, "DNS resolution failed");
                        ok = false;
                    }
                }
            }
            let Some(cluster) = weak.upgrade() else {
                return;
            };
            if ok {
                cluster.set_endpoints(&endpoints);
            }
            drop(cluster);
            tokio::time::sleep(refresh_rate).await;
        }
    });
}
