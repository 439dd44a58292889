//! What `flumen run` and `flumen check` refuse before any data moves, against the real testbed:
//! a second daemon on the same channel, and a channel directory the daemon could not write.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{spawn_relay, testbed, RelayConfig};

fn write_config(work: &Path, prefix: &str, metrics: bool) -> (RelayConfig, std::path::PathBuf) {
    let tb = testbed();
    let topic = common::unique(prefix);
    common::create_topic(tb, &topic, 1);
    let mut cfg = RelayConfig::new(&topic, work);
    if metrics {
        cfg.metrics_listen = format!("127.0.0.1:{}", common::free_port());
    }
    let path = work.join("flumen.toml");
    cfg.write(tb, &path);
    (cfg, path)
}

fn flumen_check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flumen"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run flumen check");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Regression: a second daemon on the same config was refused by the metrics port the first
/// one holds ("Address already in use", `metrics.listen`) before the channel lock was tried,
/// so the message pointed at the wrong cause.
#[test]
fn a_second_daemon_on_the_same_config_is_refused_for_the_channel() {
    let _serial = SAFE_MODE.lock().unwrap_or_else(|e| e.into_inner());
    let work = common::workdir();
    let (cfg, config) = write_config(work.path(), "twice", true);
    let mut first = spawn_relay(&config, None);
    let t = std::time::Instant::now();
    while common::http_get(&cfg.metrics_listen, "/health").is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "first daemon never served /health\n{}",
            first.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut second = spawn_relay(&config, None);
    let status = second.wait_for(Duration::from_secs(30));
    let log = second.log_text();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}\n{log}");
    assert!(log.contains("in use by another flumen process"), "{log}");
    assert!(!log.contains("metrics.listen"), "{log}");
    first.signal(libc::SIGTERM);
    assert!(first.wait_for(Duration::from_secs(60)).is_some());
}

/// Regression: `flumen check` said OK with `channel.dir` a file, or on a read-only mount.
#[test]
fn check_refuses_a_channel_dir_it_cannot_write() {
    let _serial = SAFE_MODE.lock().unwrap_or_else(|e| e.into_inner());
    let work = common::workdir();
    let (_, config) = write_config(work.path(), "chk", false);
    let (ok, out) = flumen_check(&config);
    assert!(ok, "the plain config must pass check: {out}");

    let text = std::fs::read_to_string(&config).unwrap();
    let file = work.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let on_file = work.path().join("on-file.toml");
    let channel = format!("dir = \"{}\"", work.path().join("channel").display());
    assert!(text.contains(&channel));
    std::fs::write(
        &on_file,
        text.replace(&channel, &format!("dir = \"{}\"", file.display())),
    )
    .unwrap();
    let (ok, out) = flumen_check(&on_file);
    assert!(
        !ok && out.contains("`channel.dir`") && out.contains("not a directory"),
        "{out}"
    );

    let ro = work.path().join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    let _mount = ReadOnlyTmpfs::mount(&ro);
    let on_ro = work.path().join("on-ro.toml");
    std::fs::write(
        &on_ro,
        text.replace(&channel, &format!("dir = \"{}/channel\"", ro.display())),
    )
    .unwrap();
    let (ok, out) = flumen_check(&on_ro);
    assert!(
        !ok && out.contains("`channel.dir`") && out.contains("Read-only"),
        "{out}"
    );
}

/// Regression: `flumen check` against a NameNode in safe mode printed a 20-line Java stack
/// trace. Now one line names the exception and the key.
#[test]
fn check_against_a_namenode_in_safe_mode_is_one_line() {
    let _serial = SAFE_MODE.lock().unwrap_or_else(|e| e.into_inner());
    let work = common::workdir();
    let (_, config) = write_config(work.path(), "safe", false);
    common::hdfs_safemode(true);
    let (ok, out) = flumen_check(&config);
    common::hdfs_safemode(false);
    assert!(!ok, "check passed with the NameNode in safe mode: {out}");
    let line = out
        .lines()
        .find(|l| l.contains("SafeModeException"))
        .unwrap_or_else(|| panic!("no SafeModeException named: {out}"));
    assert!(line.contains("`hdfs.url`"), "{line}");
    assert!(
        !out.contains("\tat org.apache"),
        "a Java stack trace: {out}"
    );
    assert!(out.lines().count() <= 2, "{out}");
}

/// Safe mode is the NameNode's, so it must not overlap another test of this file that writes.
static SAFE_MODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A read-only tmpfs at a directory for the test's life. Mounting needs root, as this testbed
/// runs; without it the test fails saying so rather than skipping.
struct ReadOnlyTmpfs(std::path::PathBuf);

impl ReadOnlyTmpfs {
    fn mount(dir: &Path) -> Self {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,ro", "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a read-only tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for ReadOnlyTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
