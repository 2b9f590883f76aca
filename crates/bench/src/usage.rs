//! What the replicas spent during a run: CPU time (from `/proc/PID/stat`)
//! and resident memory (`/proc/PID/status`), for replicas running on this
//! machine. [`Replicas`] finds their processes by the pid each reports in
//! its status, so it works for the benchmark's own cluster and for one
//! started by `chorus up` alike; replicas on other machines are skipped.

use chorus_client::Endpoints;
use std::time::Duration;

/// How long a replica has to answer the status request.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// The local replica processes of a cluster.
#[derive(Clone, Debug, Default)]
pub struct Replicas {
    pids: Vec<u32>,
}

impl Replicas {
    /// Asks every replica for its pid and keeps those running here as
    /// `chorus server`.
    pub async fn find(endpoints: &Endpoints) -> Replicas {
        let mut pids = Vec::new();
        for replica in &endpoints.replicas {
            let Ok(report) = chorus_client::fetch_status(endpoints, replica.id, STATUS_TIMEOUT).await else { continue };
            if is_local_server(report.pid) {
                pids.push(report.pid);
            }
        }
        Replicas { pids }
    }

    /// True when no replica process was found on this machine.
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// CPU time (user + system) used so far by all the replicas, in
    /// microseconds.
    pub fn cpu_micros(&self) -> u64 {
        self.pids.iter().filter_map(|&pid| cpu_micros(pid)).sum()
    }

    /// Resident memory of each replica, in MiB (0 for one that is gone).
    pub fn rss_mib(&self) -> Vec<f64> {
        self.pids
            .iter()
            .map(|&pid| rss_kib(pid).map_or(0.0, |kib| (kib as f64 / 1024.0 * 10.0).round() / 10.0))
            .collect()
    }
}

fn is_local_server(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.split(|&b| b == 0).any(|argument| argument == b"server"))
}

/// utime + stime of `pid`, in microseconds.
fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    Some((utime + stime) * 1_000_000 / clock_ticks_per_second())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
        let spent = cpu_micros(me).expect("own stat reads");
        let mut x = 0_u64;
        for i in 0..20_000_000_u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_micros(me).expect("own stat reads") > spent, "busy work shows as CPU time");
        assert!(!is_local_server(me), "a test binary is not a chorus server");
    }
}
