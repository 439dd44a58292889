//! Secrets given through a file or an environment variable never appear in any output: the
//! errors and tables of `check` and `offsets`, the daemon's log at debug level, `/health` and
//! `/metrics`. Regression: librdkafka's config errors carry the value, and flumen printed them
//! (`... "ssl.key.password" not supported in this build ... hunter2-keypass`).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::testbed;

const ENV_SECRET: &str = "planted-env-9f3c27";
const FILE_SECRET: &str = "planted-file-71ab04";

/// A config whose Kafka login uses `properties` (TOML lines for `[kafka.properties]`).
fn config(work: &Path, properties: &str, metrics: &str) -> std::path::PathBuf {
    let tb = testbed();
    let topic = common::unique("secret");
    common::create_topic(tb, &topic, 1);
    let path = work.join("flumen.toml");
    let text = format!(
        r#"[kafka]
bootstrap_servers = "{kafka}"
topics = ["{topic}"]
[kafka.properties]
{properties}
[channel]
dir = "{channel}"
[hdfs]
url = "{hdfs}"
path = "/flumen-tests/{topic}"
[metrics]
listen = "{metrics}"
"#,
        kafka = tb.kafka,
        channel = work.join("channel").display(),
        hdfs = tb.hdfs_url,
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn flumen(args: &[&str], config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flumen"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("FLUMEN_T_SECRET", ENV_SECRET)
        .env("RUST_LOG", "debug")
        .output()
        .expect("run flumen");
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn assert_no_secret(what: &str, text: &str) {
    for s in [ENV_SECRET, FILE_SECRET] {
        assert!(!text.contains(s), "{what} printed a secret:\n{text}");
    }
}

#[test]
fn a_refused_secret_is_named_by_key_not_value() {
    let work = common::workdir();
    let pw = work.path().join("key.pass");
    std::fs::write(&pw, format!("{FILE_SECRET}\n")).unwrap();
    let props = format!("\"ssl.key.password\" = {{ file = \"{}\" }}", pw.display());
    let config = config(work.path(), &props, "");
    let out = flumen(&["check"], &config);
    assert!(out.contains("`kafka.properties.ssl.key.password`"), "{out}");
    assert_no_secret("check", &out);
    let missing = config.with_file_name("missing.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &missing,
        text.replace(&props, "\"sasl.password\" = { env = \"FLUMEN_UNSET_VAR\" }"),
    )
    .unwrap();
    let out = flumen(&["check"], &missing);
    assert!(
        out.contains("`kafka.properties.sasl.password`") && out.contains("FLUMEN_UNSET_VAR"),
        "{out}"
    );
}

#[test]
fn a_secret_from_the_environment_is_printed_nowhere() {
    let work = common::workdir();
    let metrics = format!("127.0.0.1:{}", common::free_port());
    // The testbed's broker speaks PLAINTEXT, so the SASL login fails: every error path runs.
    let props = "\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"PLAIN\"\n\
                 \"sasl.username\" = \"alice\"\n\"sasl.password\" = { env = \"FLUMEN_T_SECRET\" }";
    let config = config(work.path(), props, &metrics);
    assert_no_secret("check", &flumen(&["check"], &config));
    assert_no_secret("offsets", &flumen(&["offsets"], &config));
    assert_no_secret("offsets --json", &flumen(&["offsets", "--json"], &config));

    let log = work.path().join("run.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flumen"))
        .args(["run", "--config"])
        .arg(&config)
        .env("FLUMEN_T_SECRET", ENV_SECRET)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(log.with_extension("err")).unwrap(),
        ))
        .spawn()
        .expect("spawn flumen run");
    let t = Instant::now();
    let health = loop {
        match common::http_get(&metrics, "/health") {
            Some(h) if h.contains("kafka unreachable") => break h,
            _ if t.elapsed() > Duration::from_secs(60) => panic!("/health never named Kafka"),
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    };
    let body = common::http_get(&metrics, "/metrics").unwrap_or_default();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let logs = std::fs::read_to_string(&log).unwrap()
        + &std::fs::read_to_string(log.with_extension("err")).unwrap();
    assert!(
        logs.contains("Authentication"),
        "the login never failed:\n{logs}"
    );
    assert_no_secret("/health", &health);
    assert_no_secret("/metrics", &body);
    assert_no_secret("the log", &logs);
}
