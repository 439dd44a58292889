//! The systemd unit in `deploy/` as systemd itself reads it: `systemd-analyze verify` finds no
//! error, and `systemd-analyze security` rates its sandbox. Regression: the unit set no
//! `UMask=` (so channel segments were 0644) and little hardening.

use std::path::PathBuf;
use std::process::Command;

/// The unit with `ExecStart` pointing at this build, as `verify` checks the binary exists.
fn unit_for_this_build() -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/flumen.service"
    ))
    .expect("read deploy/flumen.service");
    assert!(text.contains("/usr/local/bin/flumen"), "ExecStart moved");
    let text = text.replace("/usr/local/bin/flumen", env!("CARGO_BIN_EXE_flumen"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flumen.service");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn systemd_analyze(args: &[&str], unit: &PathBuf) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze is missing: install Debian's systemd package (scripts/test does)")
}

#[test]
fn the_unit_verifies_cleanly() {
    let (_dir, unit) = unit_for_this_build();
    let out = systemd_analyze(&["verify"], &unit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");
}

#[test]
fn the_unit_is_private_and_sandboxed() {
    let (_dir, unit) = unit_for_this_build();
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("\nUMask=0077\n"), "no UMask=0077");
    let out = systemd_analyze(&["security", "--offline=true", "--no-pager"], &unit);
    let report = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for flumen.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in: {report}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // systemd rates 0 (sandboxed) to 10 (exposed); "OK" ends at 2.0.
    assert!(exposure <= 2.0, "exposure {exposure}:\n{report}");
}
