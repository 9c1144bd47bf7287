//! Network namespaces as pods: created with `ip netns`, entered per thread (a namespace is a
//! property of a thread), deleted on drop even when a test fails.

use std::os::fd::OwnedFd;
use std::process::Command;

use nix::sched::{CloneFlags, setns};

/// Why a namespace operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command (`ip ...`) could not run or failed.
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed, or why it could not start.
        output: String,
    },
    /// Entering the namespace failed.
    #[error("cannot enter network namespace {name}: {source}")]
    Enter {
        /// The namespace.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file of the namespace (e.g. its `/etc/netns/NAME/hosts`) could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The closure run inside the namespace panicked.
    #[error("the task inside network namespace {0} panicked")]
    Panicked(String),
}

/// A network namespace that is deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

/// Runs a command, turning a non-zero exit into an error that shows its output.
pub fn run(program: &str, args: &[&str]) -> Result<String, NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| NetnsError::Command {
            command: command.clone(),
            output: e.to_string(),
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(NetnsError::Command {
            command,
            output: text,
        })
    }
}

impl Netns {
    /// Creates the namespace with its loopback up. A stale one of the same name (from a crashed
    /// run) is replaced.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        let _ = run("ip", &["netns", "del", name]);
        run("ip", &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, NetnsError> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs `f` on a new thread that has entered this namespace, and waits for its result.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NetnsError> {
        let path = format!("/var/run/netns/{}", self.name);
        let file = std::fs::File::open(&path).map_err(|source| NetnsError::Enter {
            name: self.name.clone(),
            source,
        })?;
        let fd: OwnedFd = file.into();
        let name = self.name.clone();
        let handle = std::thread::spawn(move || {
            setns(&fd, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Enter {
                name,
                source: e.into(),
            })?;
            Ok(f())
        });
        handle
            .join()
            .map_err(|_| NetnsError::Panicked(self.name.clone()))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(error) = run("ip", &["netns", "del", &self.name]) {
            tracing::warn!(%error, "could not delete network namespace");
        }
    }
}
