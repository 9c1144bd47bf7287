//! Writing log lines off the request path: one task per file behind a bounded channel. A full
//! channel drops the line and counts it (never blocks a request); the task writes through a
//! buffer and flushes whenever the channel is momentarily empty.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use prometheus_client::metrics::counter::Counter;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Lines that may wait for one file before new ones are dropped.
pub const QUEUE_LINES: usize = 16 * 1024;

/// Lines dropped because a file's queue was full (or its writer had failed).
static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// The process's log files, like Envoy's access log manager: one writer per path, shared by
/// every listener that logs there.
fn writers() -> &'static Mutex<HashMap<PathBuf, mpsc::Sender<String>>> {
    static WRITERS: OnceLock<Mutex<HashMap<PathBuf, mpsc::Sender<String>>>> = OnceLock::new();
    WRITERS.get_or_init(Default::default)
}

/// `trellis_access_log_lines_dropped_total`: lines dropped so far by this process's writers
/// (one process-wide counter, as the writers are; registered by the proxy's metrics).
pub fn dropped_counter() -> Counter {
    DROPPED.clone()
}

/// Queues `line` for `path` (the writer task starts on first use; needs a Tokio runtime).
pub fn write(path: &Arc<str>, line: String) {
    let sender = {
        let Ok(mut map) = writers().lock() else {
            DROPPED.inc();
            return;
        };
        let key = PathBuf::from(path.as_ref());
        match map.get(&key) {
            Some(s) if !s.is_closed() => s.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(QUEUE_LINES);
                tokio::spawn(run(key.clone(), rx));
                map.insert(key, tx.clone());
                tx
            }
        }
    };
    if sender.try_send(line).is_err() {
        DROPPED.inc();
    }
}

async fn run(path: PathBuf, mut rx: mpsc::Receiver<String>) {
    // Append, as Envoy opens its log files: `/dev/stdout` then shares the process's log file.
    let file = match tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
    {
        Ok(f) => f,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot open access log; dropping its lines");
            rx.close();
            while rx.recv().await.is_some() {
                DROPPED.inc();
            }
            return;
        }
    };
    let mut out = tokio::io::BufWriter::new(file);
    while let Some(line) = rx.recv().await {
        let mut result = out.write_all(line.as_bytes()).await;
        while result.is_ok()
            && let Ok(more) = rx.try_recv()
        {
            result = out.write_all(more.as_bytes()).await;
        }
        if let Err(error) = result.and(out.flush().await) {
            tracing::warn!(path = %path.display(), %error, "writing the access log failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Lines reach a real file, appended after what it held (as Envoy opens log files), in order.
    #[tokio::test]
    async fn lines_are_appended_to_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("access.log");
        std::fs::write(&file, "earlier\n").expect("seed");
        let path: Arc<str> = Arc::from(file.to_string_lossy().as_ref());
        for i in 0..100 {
            write(&path, format!("line {i}\n"));
        }
        let expected: String = std::iter::once("earlier\n".to_string())
            .chain((0..100).map(|i| format!("line {i}\n")))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&file).expect("read");
            if text == expected {
                break;
            }
            assert!(Instant::now() < deadline, "file holds {text:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
