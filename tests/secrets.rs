//! Secrets given as text, through a file or an environment variable never appear in any
//! output: the errors and tables of `check` and `offsets` (`--json` too), the daemon's log at
//! trace level with librdkafka's `debug = all`, `/health` and `/metrics`. Regression:
//! librdkafka's config errors carry the value, and flumen printed them
//! (`... "ssl.key.password" not supported in this build ... hunter2-keypass`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::secure_kafka::secure_kafka;
use common::testbed;

const ENV_SECRET: &str = "planted-env-9f3c27";
const FILE_SECRET: &str = "planted-file-71ab04";
const TEXT_SECRET: &str = "planted-text-e0d45b";
/// The password inside a planted JAAS-style value: what must never show, quoted, escaped
/// (as in JSON) or whole.
const JAAS_SECRET: &str = "planted-jaas-3b9a6f";

fn jaas_value() -> String {
    format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required \
         username=\\\"flumen\\\" password=\\\"{JAAS_SECRET}\\\";"
    )
}

/// A config for `bootstrap` whose `[kafka.properties]` are `properties` (TOML lines).
fn config(work: &Path, bootstrap: &str, properties: &str, metrics: &str) -> PathBuf {
    let tb = testbed();
    let topic = common::unique("secret");
    common::create_topic(tb, &topic, 1);
    let path = work.join("flumen.toml");
    let text = format!(
        r#"[kafka]
bootstrap_servers = "{bootstrap}"
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
        channel = work.join("channel").display(),
        hdfs = tb.hdfs_url,
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A file holding `FILE_SECRET` in `work`, as a `{ file = .. }` value.
fn secret_file(work: &Path) -> String {
    let pw = work.join("key.pass");
    std::fs::write(&pw, format!("{FILE_SECRET}\n")).unwrap();
    format!("{{ file = \"{}\" }}", pw.display())
}

fn flumen(args: &[&str], config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flumen"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("FLUMEN_T_SECRET", ENV_SECRET)
        .env("RUST_LOG", "trace")
        .output()
        .expect("run flumen");
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} printed secret {s}:\n{text}");
    }
}

#[test]
fn a_refused_secret_is_named_by_key_not_value() {
    let work = common::workdir();
    // librdkafka has no sasl.jaas.config (a Java client setting): its refusal quotes the value.
    let props = format!("\"sasl.jaas.config\" = {}", secret_file(work.path()));
    let tb = testbed();
    let config = config(work.path(), &tb.kafka, &props, "");
    let out = flumen(&["check"], &config);
    assert!(out.contains("`kafka.properties.sasl.jaas.config`"), "{out}");
    assert_no_secret("check", &out, &[FILE_SECRET]);
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

/// Runs `check`, `offsets`, `offsets --json` and the daemon (until `/health` contains
/// `health_needle`) on `config`, and asserts none of them printed any of `secrets`.
fn assert_printed_nowhere(config: &Path, metrics: &str, health_needle: &str, secrets: &[&str]) {
    assert_no_secret("check", &flumen(&["check"], config), secrets);
    assert_no_secret("offsets", &flumen(&["offsets"], config), secrets);
    let json = flumen(&["offsets", "--json"], config);
    assert_no_secret("offsets --json", &json, secrets);

    let log = config.with_file_name("run.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flumen"))
        .args(["run", "--config"])
        .arg(config)
        .env("FLUMEN_T_SECRET", ENV_SECRET)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(log.with_extension("err")).unwrap(),
        ))
        .spawn()
        .expect("spawn flumen run");
    let t = Instant::now();
    let health = loop {
        match common::http_get(metrics, "/health") {
            Some(h) if h.contains(health_needle) => break h,
            _ if t.elapsed() > Duration::from_secs(60) => {
                panic!("/health never said {health_needle:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    };
    let body = common::http_get(metrics, "/metrics").unwrap_or_default();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let logs = std::fs::read_to_string(&log).unwrap()
        + &std::fs::read_to_string(log.with_extension("err")).unwrap();
    // The refusal was logged too (so the log's error path ran, not only /health's).
    assert!(
        logs.contains(health_needle),
        "the log never said {health_needle}:\n{}",
        &logs[logs.len().saturating_sub(4000)..]
    );
    assert_no_secret("/health", &health, secrets);
    assert_no_secret("/metrics", &body, secrets);
    assert_no_secret("the log", &logs, secrets);
}

#[test]
fn a_secret_from_the_environment_is_printed_nowhere() {
    let work = common::workdir();
    let metrics = format!("127.0.0.1:{}", common::free_port());
    // The testbed's plain listener speaks PLAINTEXT, so the SASL handshake fails (no mechanism
    // offered): every error path runs, and /health names the keys to check.
    let props = "\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"PLAIN\"\n\
                 \"sasl.username\" = \"alice\"\n\"sasl.password\" = { env = \"FLUMEN_T_SECRET\" }";
    let config = config(work.path(), &testbed().kafka, props, &metrics);
    assert_printed_nowhere(
        &config,
        &metrics,
        "`kafka.properties.security.protocol`",
        &[ENV_SECRET],
    );
}

/// Against the SASL_SSL listener with librdkafka's `debug = all` and `RUST_LOG=trace`: a
/// wrong `sasl.password` from the environment (the broker refuses it, so the refusal path
/// runs), `ssl.key.password` from a file, a JAAS-style value and `ssl.keystore.password` as
/// text.
/// librdkafka's own config dump at `debug = all` shows secret properties as `[redacted]`;
/// flumen hides them in every librdkafka line too, so neither layer alone is trusted.
#[test]
fn secrets_of_a_tls_login_are_printed_nowhere_even_at_debug_all() {
    let sk = secure_kafka();
    let work = common::workdir();
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let props = format!(
        "\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\
         \"sasl.username\" = \"{user}\"\n\"sasl.password\" = {{ env = \"FLUMEN_T_SECRET\" }}\n\
         \"ssl.ca.location\" = \"{ca}\"\n\"ssl.key.password\" = {file}\n\
         \"sasl.oauthbearer.config\" = \"{jaas}\"\n\"debug\" = \"all\"\n\
         \"ssl.keystore.password\" = \"{TEXT_SECRET}\"",
        user = sk.user,
        ca = sk.ca_pem.display(),
        file = secret_file(work.path()),
        jaas = jaas_value(),
    );
    let config = config(work.path(), &sk.bootstrap, &props, &metrics);
    let secrets = [ENV_SECRET, FILE_SECRET, TEXT_SECRET, JAAS_SECRET];
    assert_printed_nowhere(
        &config,
        &metrics,
        "`kafka.properties.sasl.password`",
        &secrets,
    );
}
