//! Child processes that cannot outlive their owner.
//!
//! [`spawn_logged`] starts a command in its own process group with stdout and stderr appended
//! to a log file, and returns a [`ChildGuard`]. Dropping the guard sends `SIGTERM` to the
//! process group (by the child's PID, which is also the group id), waits up to a grace period,
//! then sends `SIGKILL`. Grandchildren (e.g. the Envoy that `trellis agent` supervises) share the
//! group and are ended with it.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Polls a URL until a predicate holds, within a deadline (re-exported from [`crate::http`]).
pub use crate::http::poll_until;

/// How long a child gets between `SIGTERM` and `SIGKILL` by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// A command to run: program, arguments and extra environment.
#[derive(Debug, Clone)]
pub struct Spec {
    /// A short name for messages (e.g. `proxy echo-v1-0`).
    pub name: String,
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Environment variables added to the inherited environment.
    pub env: Vec<(String, String)>,
}

impl Spec {
    /// A spec for `program` with no arguments.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        Spec {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The command line, for logs and error messages.
    pub fn command_line(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// A running child that is terminated when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    grace: Duration,
}

/// Starts `spec` in its own process group, appending stdout and stderr to `log` (created with
/// its parent directories; the command line is written as the first line).
pub fn spawn_logged(spec: &Spec, log: &Path) -> anyhow::Result<ChildGuard> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log file {}", log.display()))?;
    {
        use std::io::Write;
        let mut env = String::new();
        for (k, v) in &spec.env {
            env.push_str(&format!("{k}={v} "));
        }
        let _ = writeln!(file, "# {env}{}", spec.command_line());
    }
    let stderr = file
        .try_clone()
        .context("duplicating the log file handle")?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(stderr))
        .process_group(0);
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} ({})", spec.name, spec.command_line()))?;
    Ok(ChildGuard {
        name: spec.name.clone(),
        child: Some(child),
        log: log.to_path_buf(),
        grace: DEFAULT_GRACE,
    })
}

impl ChildGuard {
    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's PID (also its process group id), if it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file the child writes to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Sets how long the child gets between `SIGTERM` and `SIGKILL`.
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// Returns the exit status if the child has already exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Fails if the child has exited, with its status and the end of its log.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.try_wait() {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "{} exited early ({status}); log {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 25)
            ),
        }
    }

    /// Sends `SIGTERM` to the child's process group without waiting.
    pub fn signal_term(&self) {
        if let Some(child) = &self.child {
            signal_group(child.id(), Signal::SIGTERM);
        }
    }

    /// Terminates the child: `SIGTERM`, up to the grace period, then `SIGKILL`; reaps it and
    /// kills whatever is left in its process group. Returns the exit status if it was reaped.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.id();
        if let Ok(Some(status)) = child.try_wait() {
            signal_group(pid, Signal::SIGKILL);
            return Some(status);
        }
        signal_group(pid, Signal::SIGTERM);
        let status = wait_deadline(&mut child, Instant::now() + self.grace).or_else(|| {
            signal_group(pid, Signal::SIGKILL);
            child.wait().ok()
        });
        // Leftover grandchildren in the group (e.g. an Envoy whose agent died).
        signal_group(pid, Signal::SIGKILL);
        status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Terminates several children together: `SIGTERM` to all first, then each is waited for within
/// one shared grace period before `SIGKILL`.
pub fn terminate_all(guards: &mut [ChildGuard]) {
    for g in guards.iter() {
        g.signal_term();
    }
    for g in guards.iter_mut() {
        g.terminate();
    }
}

fn signal_group(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        // ESRCH (already gone) is expected and ignored.
        let _ = killpg(Pid::from_raw(raw), signal);
    }
}

fn wait_deadline(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        // Waiting for a process to exit: there is no readiness signal to wait on without
        // blocking indefinitely, so poll briefly within the deadline.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last `lines` lines of a log file (or a note that it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // Signal 0 checks existence; a zombie would still count, but the guard reaps.
        nix::sys::signal::kill(Pid::from_raw(pid as i32), None).is_ok()
    }

    #[test]
    fn drop_kills_the_child_and_its_group() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("trellis-testkit-proc-{}", std::process::id()));
        let log = dir.join("sleep.log");
        // A shell that ignores SIGTERM and starts a grandchild: both must be gone after drop.
        let spec = Spec::new("stubborn", "/bin/sh")
            .arg("-c")
            .arg("trap '' TERM; sleep 300 & echo started; wait");
        let mut guard = spawn_logged(&spec, &log)?;
        guard.set_grace(Duration::from_millis(300));
        let pid = guard.pid().ok_or_else(|| anyhow::anyhow!("no pid"))?;
        assert!(alive(pid));
        guard.check_running()?;
        let started = Instant::now();
        drop(guard);
        assert!(!alive(pid), "child still alive after drop");
        assert!(started.elapsed() < Duration::from_secs(5));
        // No process of that group is left. The killed grandchild is reaped by init, not by
        // us, so give that a moment (bounded) rather than checking once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while killpg(Pid::from_raw(pid as i32), None).is_ok() {
            assert!(Instant::now() < deadline, "process group still has members");
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(&log)?;
        assert!(text.starts_with("# /bin/sh -c"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn early_exit_is_reported_with_the_log() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("trellis-testkit-exit-{}", std::process::id()));
        let log = dir.join("fail.log");
        let spec = Spec::new("failing", "/bin/sh")
            .arg("-c")
            .arg("echo boom-marker >&2; exit 3");
        let mut guard = spawn_logged(&spec, &log)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = loop {
            if let Err(e) = guard.check_running() {
                break e;
            }
            assert!(Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        let msg = format!("{err:#}");
        assert!(msg.contains("failing exited early"), "{msg}");
        assert!(msg.contains("boom-marker"), "{msg}");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
