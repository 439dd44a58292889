//! Helpers shared by the benches (not a bench target itself).

use std::fs;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use flumen::commit::Ledger;
use flumen::hdfs::NativeHdfs;
use flumen::health::Health;

#[path = "../../tests/common/net.rs"]
mod net;
#[allow(unused_imports)] // not every bench uses both
pub use net::{free_port, http_get};

/// A testbed address from the environment; exits 2 naming how to start the testbed.
pub fn testbed_env(bench: &str, name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!(
            "{bench} bench: {name} is not set. Start the testbed first: eval \"$(scripts/testbed up)\""
        );
        std::process::exit(2)
    })
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg gives them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits for `child` and returns its CPU seconds (`wait4`: its own, not the sum of every
/// child) and its peak RSS in MiB: `VmHWM`, read every 50 ms while it runs. Not `ru_maxrss`,
/// which keeps the high-water mark of the forked copy of this bench process across `exec`
/// (every path once read 690 MiB, this process's RSS after preloading 1,000 partitions).
pub fn reap(child: &mut Child) -> (bool, f64, u64) {
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: wait4 on our own child with valid out-pointers.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let mut hwm_kib = 0;
    loop {
        hwm_kib = vm_hwm_kib(pid).unwrap_or(hwm_kib);
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut u) };
        if got == pid {
            break;
        }
        assert_eq!(got, 0, "wait4");
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, secs(u.ru_utime) + secs(u.ru_stime), hwm_kib / 1024)
}

/// Clock ticks per second, the unit of `/proc`'s CPU times.
pub fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// A process's user plus system CPU seconds, every thread (`/proc/PID/stat`).
pub fn process_cpu_s(pid: i32) -> Option<f64> {
    stat_cpu_s(&format!("/proc/{pid}/stat"))
}

/// User plus system CPU seconds from a `stat` file of `/proc` (a process's or a thread's).
pub fn stat_cpu_s(path: &str) -> Option<f64> {
    stat_times_s(path).map(|(user, system)| user + system)
}

/// User and system CPU seconds, apart, from a `stat` file of `/proc`.
pub fn stat_times_s(path: &str) -> Option<(f64, f64)> {
    let stat = fs::read_to_string(path).ok()?;
    // Fields after the command name, which may hold spaces: state is field 3, utime 14.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let tick = clock_ticks_per_s();
    Some((utime as f64 / tick, stime as f64 / tick))
}

/// The peak resident set of a live process, in KiB.
pub fn vm_hwm_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The sum of a counter's series in a relay's `/metrics` (0 if it does not answer).
pub fn metrics_counter(addr: &str, name: &str) -> f64 {
    metrics_counters(addr, &[name])[0]
}

/// `metrics_counter` of each of `names`, from one GET.
pub fn metrics_counters<const N: usize>(addr: &str, names: &[&str; N]) -> [f64; N] {
    let body = http_get(addr, "/metrics").unwrap_or_default();
    names.map(|name| {
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    })
}

/// The flumen binary a bench runs: this build's, or `FLUMEN_BENCH_BIN` (e.g. a saved copy of
/// the base build) for before/after runs under the same harness.
pub fn flumen_bin() -> String {
    std::env::var("FLUMEN_BENCH_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_flumen").to_string())
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The filesystem holding `path`, from /proc/self/mountinfo (longest matching mount point).
pub fn filesystem_of(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return "unknown filesystem".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount), Some(fstype), Some(source)) =
            (fields.get(4), fields.get(sep + 1), fields.get(sep + 2))
        else {
            continue;
        };
        if path.starts_with(mount) && best.as_ref().is_none_or(|(n, _)| mount.len() >= *n) {
            best = Some((
                mount.len(),
                format!("{fstype} on {source} (mounted at {mount})"),
            ));
        }
    }
    best.map_or_else(|| "unknown filesystem".into(), |(_, s)| s)
}

/// A plain hdfs-native client for `url` (the testbed's NameNode).
pub fn hdfs_client(url: &str) -> hdfs_native::Client {
    hdfs_native::ClientBuilder::new()
        .with_url(url)
        .build()
        .unwrap()
}

/// An hdfs-native client for `url` and the ledger of `config`, to read committed ends.
#[allow(dead_code)] // not every bench reads the ledger
pub fn ledger(
    url: &str,
    config: &flumen::config::Settings,
) -> (Arc<hdfs_native::Client>, Ledger<NativeHdfs>) {
    let client = Arc::new(hdfs_client(url));
    let hdfs = NativeHdfs::new(
        client.clone(),
        Duration::from_secs(1),
        Arc::new(Health::default()),
    );
    (client, Ledger::new(Arc::new(hdfs), &config.hdfs.state_dir))
}
