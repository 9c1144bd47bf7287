//! `sleep_ms`: wait, e.g. until an outlier ejection expires.

use std::time::Duration;

/// Sleeps `ms` milliseconds.
pub(in crate::scenario) async fn run(ms: u64) -> anyhow::Result<String> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(format!("slept {ms}ms"))
}
