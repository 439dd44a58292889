//! Helpers shared by the benches (not a bench target itself).

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flumen::commit::Ledger;
use flumen::hdfs::NativeHdfs;
use flumen::health::Health;

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

/// A loopback port free right now (for a relay's metrics listener).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// An hdfs-native client for `url` and the ledger of `config`, to read committed ends.
#[allow(dead_code)] // not every bench reads the ledger
pub fn ledger(
    url: &str,
    config: &flumen::config::Settings,
) -> (Arc<hdfs_native::Client>, Ledger<NativeHdfs>) {
    let client = Arc::new(
        hdfs_native::ClientBuilder::new()
            .with_url(url)
            .build()
            .unwrap(),
    );
    let hdfs = NativeHdfs::new(
        client.clone(),
        Duration::from_secs(1),
        Arc::new(Health::default()),
    );
    (client, Ledger::new(Arc::new(hdfs), &config.hdfs.state_dir))
}
