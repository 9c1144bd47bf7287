//! The drain: on shutdown the proxy turns unready, closes its listening sockets (new clients get
//! "connection refused" and go elsewhere), asks open connections to finish (HTTP/1.1: idle ones
//! close, busy ones answer their current response with `Connection: close`; HTTP/2: GOAWAY;
//! TCP proxy sessions run on) and waits for them until the drain period ends.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::listener::ListenerManager;

/// Whether the proxy is draining, shared by readiness and config application.
#[derive(Debug)]
pub struct Drain {
    draining: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// Not draining.
    pub fn new() -> Self {
        Drain {
            draining: watch::Sender::new(false),
        }
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Marks the proxy as draining (for good); `false` if it already was.
    pub fn start(&self) -> bool {
        self.draining
            .send_if_modified(|d| !std::mem::replace(d, true))
    }

    /// Resolves once a drain has started.
    pub async fn started(&self) {
        let mut rx = self.draining.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

/// The accepted connections of every listener: a drain waits for them, and closes those still
/// open when its period is over.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    tasks: TaskTracker,
    force_close: CancellationToken,
}

impl Connections {
    /// Runs a connection's task until it ends or [`Connections::close_all`].
    pub fn spawn<F>(&self, connection: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(
            self.force_close
                .clone()
                .run_until_cancelled_owned(connection),
        );
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits until every connection has ended (new ones may still be spawned meanwhile, e.g.
    /// accepted just before the listeners stopped).
    async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Closes every open connection now.
    pub fn close_all(&self) {
        self.force_close.cancel();
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every connection finished, after this long.
    Completed(Duration),
    /// The drain period ended with this many connections still open.
    TimedOut(usize),
}

/// Stops every listener and waits, at most `period`, for their connections to finish; those
/// still open then are closed.
pub async fn drain_listeners(listeners: &ListenerManager, period: Duration) -> DrainOutcome {
    let began = Instant::now();
    listeners.stop_all().await;
    let connections = listeners.connections();
    tracing::info!(
        open = connections.len(),
        period = ?period,
        "draining: listeners closed, waiting for open connections"
    );
    let outcome = match tokio::time::timeout(period, connections.wait()).await {
        Ok(()) => DrainOutcome::Completed(began.elapsed()),
        Err(_) => DrainOutcome::TimedOut(connections.len()),
    };
    connections.close_all();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draining_is_set_once_and_observed() {
        let drain = Drain::new();
        assert!(!drain.is_draining());
        assert!(drain.start());
        assert!(!drain.start(), "a second start changes nothing");
        assert!(drain.is_draining());
        tokio::time::timeout(Duration::from_secs(1), drain.started())
            .await
            .expect("started resolves once draining");
    }

    #[tokio::test]
    async fn connections_are_waited_for_then_closed() {
        let connections = Connections::default();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        connections.spawn(async move {
            let _ = done_rx.await;
        });
        connections.spawn(std::future::pending());
        assert_eq!(connections.len(), 2);
        let _ = done_tx.send(());
        let waited = tokio::time::timeout(Duration::from_millis(200), connections.wait()).await;
        assert!(waited.is_err(), "a pending connection keeps the wait going");
        assert_eq!(connections.len(), 1);
        connections.close_all();
        tokio::time::timeout(Duration::from_secs(1), connections.wait())
            .await
            .expect("closing ends every connection");
        assert!(connections.is_empty());
    }
}
