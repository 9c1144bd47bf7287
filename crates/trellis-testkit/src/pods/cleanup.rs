//! Tearing pods down by name: what a crashed run (or a failed teardown) left behind. Every
//! namespace of a pod mesh is named `PREFIX-POD`; ending the processes still inside one
//! (`ip netns pids`) and deleting it removes its veth, its iptables rules and its
//! `/etc/netns/` directory, and the bridge goes with the `PREFIX-switch` namespace.

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use trellis_capture::netns::run;

/// The network namespaces whose names start with `PREFIX-`.
pub fn namespaces_with_prefix(prefix: &str) -> anyhow::Result<Vec<String>> {
    let list = run("ip", &["netns", "list"])?;
    let start = format!("{prefix}-");
    Ok(list
        .lines()
        // `NAME (id: 3)` or just `NAME`.
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&start))
        .map(str::to_string)
        .collect())
}

/// The PIDs of the processes inside namespace `name`.
pub fn pids_in(name: &str) -> Vec<i32> {
    run("ip", &["netns", "pids", name])
        .map(|out| out.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every process in namespace `name` (`SIGKILL`: whatever is left at this point did not
/// stop when asked), deletes the namespace and its `/etc/netns/NAME`. Returns how many
/// processes it killed.
pub fn remove_namespace(name: &str) -> usize {
    let pids = pids_in(name);
    for pid in &pids {
        // ESRCH (exited meanwhile) is fine.
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    if let Err(error) = run("ip", &["netns", "del", name]) {
        tracing::warn!(%error, "could not delete network namespace");
    }
    let etc = Path::new("/etc/netns").join(name);
    if etc.exists()
        && let Err(error) = std::fs::remove_dir_all(&etc)
    {
        tracing::warn!(%error, dir = %etc.display(), "could not remove");
    }
    pids.len()
}

/// Removes every namespace named `PREFIX-...` (pods and switch) and the processes in them.
/// Returns the namespaces removed and the number of processes killed.
pub fn remove_prefix(prefix: &str) -> anyhow::Result<(Vec<String>, usize)> {
    let names = namespaces_with_prefix(prefix)?;
    let mut killed = 0;
    for name in &names {
        killed += remove_namespace(name);
    }
    let _ = std::fs::remove_dir("/etc/netns");
    Ok((names, killed))
}
