//! flumen against the SASL_SSL listener (SCRAM-SHA-512) of `scripts/testbed up --secure`:
//! exactly-once across a kill -9 through a TLS login, and a wrong password and an untrusted CA
//! each named by its key on `check`, in the log and on `/health`, with no value printed.
//! Topics are created and filled through the plain listener; only flumen logs in.

mod common;

use std::path::Path;
use std::time::Duration;

use common::secure_kafka::{secure_kafka, SecureKafka};
use common::{assert_exactly_once, spawn_relay, testbed, Case};

const LANDING_LIMIT: Duration = Duration::from_secs(180);

/// A case whose relay logs in to the secure listener with `password` (a TOML value) and
/// trusts `ca`; /metrics and /health on a free port, returned.
fn secure_case(prefix: &str, sk: &SecureKafka, password: &str, ca: &Path) -> (Case, String) {
    let mut c = Case::new(prefix);
    c.cfg.kafka_bootstrap = Some(sk.bootstrap.clone());
    c.cfg.extra_properties = sk.properties(password, ca);
    let metrics = c.with_metrics();
    (c, metrics)
}

// The seed's deployment: brokers behind SASL_SSL + SCRAM, a Kerberized HDFS with wire
// encryption, and a crash in the middle.
#[test]
fn exactly_once_through_sasl_ssl_scram_into_kerberized_hdfs_across_a_kill_9() {
    let sk = secure_kafka();
    let tb = testbed();
    let k = common::kerberos::kerberized();
    let (mut c, metrics) = secure_case("secure-eo", &sk, &sk.password_ref(), &sk.ca_pem);
    common::kerberos::write_secure(&mut c.cfg, &k.principal, Path::new(&k.keytab), &c.config);
    let p = common::producer(tb);
    common::produce(&p, &c.cfg.topic, 0, 3000);
    let mut first = spawn_relay(&c.config, None);
    let client = common::kerberos::secure_hdfs();
    let before = common::wait_landed(&client, &c.cfg.hdfs_path, 1, Duration::from_secs(90));
    assert!(
        !before.is_empty(),
        "nothing landed through SASL_SSL within 90 s:\n{}",
        first.key_log_lines()
    );
    first.kill9();
    common::produce(&p, &c.cfg.topic, 3000, 6000);
    let mut second = spawn_relay(&c.config, None);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 6000, LANDING_LIMIT);
    assert_exactly_once(&landed, 6000);
    common::wait_health(&metrics, "\"status\":\"ready\"", Duration::from_secs(30));
    second.signal(libc::SIGTERM);
    let status = second.wait_for(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "graceful exit: {status:?}\n{}",
        second.key_log_lines()
    );
    let password = sk.password();
    for (run, log) in [("first", first.log_text()), ("second", second.log_text())] {
        assert!(
            !log.contains(&password),
            "the {run} run logged the password"
        );
    }
}

/// One refused login: `flumen check` fails naming `key`, the daemon's `/health` is degraded
/// naming it, its log names it, and `secret` (the value that is wrong, or the password of a
/// login refused for another reason) appears nowhere.
fn assert_refused_naming(c: &Case, metrics: &str, key: &str, secret: &str) {
    let config = c.config.to_str().unwrap();
    let out = common::flumen(&["check", "--config", config]);
    let text = common::output_text(&out);
    assert!(
        !out.status.success(),
        "check passed a refused login:\n{text}"
    );
    assert!(
        text.contains(&format!("`kafka.properties.{key}`")),
        "check named no key:\n{text}"
    );
    assert!(!text.contains(secret), "check printed the secret:\n{text}");

    let mut relay = spawn_relay(&c.config, None);
    let named = format!("`kafka.properties.{key}`");
    let health = common::wait_health(metrics, &named, Duration::from_secs(60));
    assert!(health.contains("\"status\":\"degraded\""), "{health}");
    assert!(
        !health.contains(secret),
        "/health printed the secret:\n{health}"
    );
    assert!(
        relay.wait_for(Duration::from_millis(500)).is_none(),
        "the daemon exited on a refused login:\n{}",
        relay.key_log_lines()
    );
    relay.signal(libc::SIGTERM);
    let _ = relay.wait_for(Duration::from_secs(30));
    let log = relay.log_text();
    assert!(
        log.contains(&named),
        "the log named no key:\n{}",
        relay.key_log_lines()
    );
    assert!(!log.contains(secret), "the log printed the secret");
}

#[test]
fn a_wrong_password_is_named_by_key_with_health_degraded_and_never_printed() {
    let sk = secure_kafka();
    let wrong = "wrong-scram-password-5c81e2";
    let (c, metrics) = secure_case("secure-pw", &sk, &format!("\"{wrong}\""), &sk.ca_pem);
    assert_refused_naming(&c, &metrics, "sasl.password", wrong);
}

#[test]
fn an_untrusted_ca_is_named_by_key_with_health_degraded() {
    let sk = secure_kafka();
    let (c, metrics) = secure_case("secure-ca", &sk, &sk.password_ref(), &sk.untrusted_ca_pem);
    assert_refused_naming(&c, &metrics, "ssl.ca.location", &sk.password());
}
