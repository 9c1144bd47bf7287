//! Turning file-system events into reloads: inotify through `notify`, debounced, with a slow
//! poll as a safety net for file systems that do not report events.

use std::path::Path;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::warn;

/// How long the directory must be quiet before a reload (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Reload at least this often even without events.
const POLL: Duration = Duration::from_secs(2);

/// Calls `on_change` after the directory (or the file `also`, e.g. the mesh config) changes
/// (debounced) and every `POLL` as a fallback. Runs until `on_change` returns false.
pub async fn watch_dir(dir: &Path, also: Option<&Path>, mut on_change: impl FnMut() -> bool) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    });
    // Keep the watcher alive for as long as we loop; without it we still poll.
    let _watcher = match watcher {
        Ok(mut w) => match w.watch(dir, RecursiveMode::Recursive) {
            Ok(()) => {
                // A file replaced by rename is only seen through its directory.
                if let Some(parent) = also.and_then(Path::parent)
                    && let Err(error) = w.watch(parent, RecursiveMode::NonRecursive)
                {
                    warn!(dir = %parent.display(), %error, "cannot watch the mesh config's directory; polling every {POLL:?}");
                }
                Some(w)
            }
            Err(error) => {
                warn!(dir = %dir.display(), %error, "cannot watch config directory; polling every {POLL:?}");
                None
            }
        },
        Err(error) => {
            warn!(%error, "no file watcher available; polling every {POLL:?}");
            None
        }
    };
    loop {
        tokio::select! {
            event = rx.recv() => {
                if event.is_none() {
                    tokio::time::sleep(POLL).await;
                }
                // Debounce: wait until no event has arrived for DEBOUNCE.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
            }
            _ = tokio::time::sleep(POLL) => {}
        }
        if !on_change() {
            return;
        }
    }
}
