//! Reading CPU time and memory of processes from `/proc` (Linux).
//!
//! CPU time comes from `/proc/PID/stat` (`utime` + `stime`, all threads of the process, in
//! clock ticks of [`CLOCK_TICKS_PER_SEC`]); memory from `/proc/PID/status` (`VmRSS`, the resident
//! set now, and `VmHWM`, its peak).

use std::path::Path;

use anyhow::{Context, anyhow};

/// `USER_HZ`: the unit of `utime`/`stime` in `/proc/PID/stat`. Linux exports 100 on every
/// architecture this runs on (it is independent of the kernel's `CONFIG_HZ`).
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// The fields of `/proc/PID/stat` the benchmark uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The process id.
    pub pid: u32,
    /// The command name (between the parentheses, at most 15 bytes).
    pub comm: String,
    /// The parent's process id.
    pub ppid: u32,
    /// User-mode CPU time, in clock ticks.
    pub utime: u64,
    /// Kernel-mode CPU time, in clock ticks.
    pub stime: u64,
}

impl ProcStat {
    /// `utime + stime` in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        (self.utime + self.stime) as f64 / CLOCK_TICKS_PER_SEC
    }
}

/// Parses the text of `/proc/PID/stat`. The command name may contain spaces and parentheses,
/// so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> anyhow::Result<ProcStat> {
    let open = text
        .find('(')
        .ok_or_else(|| anyhow!("/proc stat without '(': {text:?}"))?;
    let close = text
        .rfind(')')
        .ok_or_else(|| anyhow!("/proc stat without ')': {text:?}"))?;
    if close < open {
        return Err(anyhow!("/proc stat with ')' before '(': {text:?}"));
    }
    let pid: u32 = text[..open]
        .trim()
        .parse()
        .with_context(|| format!("/proc stat pid in {text:?}"))?;
    let comm = text[open + 1..close].to_string();
    // After ")": field 3 (state) is index 0, so field N is index N - 3.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        rest.get(n - 3)
            .ok_or_else(|| anyhow!("/proc stat has no field {n}: {text:?}"))?
            .parse::<u64>()
            .with_context(|| format!("/proc stat field {n} in {text:?}"))
    };
    Ok(ProcStat {
        pid,
        comm,
        ppid: u32::try_from(field(4)?).context("ppid out of range")?,
        utime: field(14)?,
        stime: field(15)?,
    })
}

/// Memory of a process from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemStatus {
    /// `VmRSS`: resident now.
    pub vm_rss_kb: u64,
    /// `VmHWM`: the peak resident set.
    pub vm_hwm_kb: u64,
}

impl MemStatus {
    /// `VmRSS` in MiB.
    pub fn rss_mb(&self) -> f64 {
        self.vm_rss_kb as f64 / 1024.0
    }

    /// `VmHWM` in MiB.
    pub fn hwm_mb(&self) -> f64 {
        self.vm_hwm_kb as f64 / 1024.0
    }
}

/// Parses the text of `/proc/PID/status` (lines such as `VmRSS:\t  12345 kB`).
pub fn parse_status(text: &str) -> anyhow::Result<MemStatus> {
    let value = |key: &str| -> anyhow::Result<u64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
            .ok_or_else(|| anyhow!("/proc status has no {key} line"))?;
        line[key.len() + 1..]
            .split_whitespace()
            .next()
            .ok_or_else(|| anyhow!("/proc status {key} has no value: {line:?}"))?
            .parse::<u64>()
            .with_context(|| format!("/proc status {key}: {line:?}"))
    };
    Ok(MemStatus {
        vm_rss_kb: value("VmRSS")?,
        vm_hwm_kb: value("VmHWM")?,
    })
}

/// Reads and parses `/proc/PID/stat`.
pub fn stat(pid: u32) -> anyhow::Result<ProcStat> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text)
}

/// Reads and parses `/proc/PID/status`.
pub fn status(pid: u32) -> anyhow::Result<MemStatus> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status(&text)
}

/// The command line of a process (arguments split on NUL).
pub fn cmdline(pid: u32) -> anyhow::Result<Vec<String>> {
    let path = format!("/proc/{pid}/cmdline");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    Ok(bytes
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

/// The direct children of `pid` (by scanning `/proc/*/stat`).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(Path::new("/proc")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| stat(p).ok())
        .filter(|s| s.ppid == pid)
        .map(|s| s.pid)
        .collect()
}

/// The value following `flag` in a command line (`--ip 127.0.0.2` → `127.0.0.2`).
pub fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() -> anyhow::Result<()> {
        let text = "4242 (tokio (rt) x) S 17 4242 17 0 -1 4194560 1200 0 0 0 345 67 0 0 20 0 3 0 \
                    123456 987654321 2345 18446744073709551615 1 1 0 0 0 0 0 4096 17987 0 0 0 17 1 0 0 0 0 0\n";
        let s = parse_stat(text)?;
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "tokio (rt) x");
        assert_eq!(s.ppid, 17);
        assert_eq!(s.utime, 345);
        assert_eq!(s.stime, 67);
        assert!((s.cpu_seconds() - 4.12).abs() < 1e-9);
        Ok(())
    }

    #[test]
    fn stat_rejects_garbage() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("12 (x) S 1").is_err());
        assert!(parse_stat("x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13").is_err());
    }

    #[test]
    fn status_memory() -> anyhow::Result<()> {
        let text = "Name:\tenvoy\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 2265752 kB\n\
                    VmSize:\t 2200000 kB\nVmHWM:\t   61440 kB\nVmRSS:\t   40960 kB\nRssAnon:\t 30000 kB\n";
        let m = parse_status(text)?;
        assert_eq!(m.vm_rss_kb, 40960);
        assert_eq!(m.vm_hwm_kb, 61440);
        assert!((m.rss_mb() - 40.0).abs() < 1e-9);
        assert!((m.hwm_mb() - 60.0).abs() < 1e-9);
        assert!(parse_status("Name:\tx\n").is_err());
        Ok(())
    }

    #[test]
    fn own_process() -> anyhow::Result<()> {
        let me = std::process::id();
        assert_eq!(stat(me)?.pid, me);
        assert!(status(me)?.vm_rss_kb > 0);
        Ok(())
    }

    #[test]
    fn flags() {
        let args: Vec<String> = ["trellis", "proxy", "--ip", "127.0.0.2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(flag_value(&args, "--ip"), Some("127.0.0.2"));
        assert_eq!(flag_value(&args, "--workload"), None);
    }
}
