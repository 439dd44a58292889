//! flumen against the SASL_SSL listeners of `scripts/testbed up --secure`: with SCRAM-SHA-512,
//! exactly-once across a kill -9 through a TLS login, and a wrong password and an untrusted CA
//! each named by its key on `check`, in the log and on `/health`, with no value printed; with
//! GSSAPI (Kerberos, the testbed's KDC), exactly-once across a kill -9 with librdkafka running
//! kinit from a keytab, and a keytab of another principal named by its key.
//! Topics are created and filled through the plain listener; only flumen logs in.

mod common;

use std::path::Path;
use std::time::Duration;

use common::secure_kafka::{kerberos_kafka, secure_kafka, KerberosKafka, SecureKafka};
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
    second.stop_gracefully(Duration::from_secs(30));
    let password = sk.password();
    for (run, log) in [("first", first.log_text()), ("second", second.log_text())] {
        assert!(
            !log.contains(&password),
            "the {run} run logged the password"
        );
    }
}

/// One refused login: `flumen check` fails naming `key`, the daemon's `/health` is degraded
/// naming it, the daemon stays up, its log names it, and `secret` (the value that is wrong,
/// or the password of a login refused for another reason), if any, appears nowhere. `env`:
/// the processes' extra environment.
fn assert_refused_naming(
    c: &Case,
    metrics: &str,
    key: &str,
    secret: Option<&str>,
    env: &[(&str, &str)],
) {
    let printed = |text: &str| secret.is_some_and(|s| text.contains(s));
    let named = format!("`kafka.properties.{key}`");
    let config = c.config.to_str().unwrap();
    let out = common::flumen_with(&["check", "--config", config], env);
    let text = common::output_text(&out);
    assert!(
        !out.status.success(),
        "check passed a refused login:\n{text}"
    );
    assert!(text.contains(&named), "check named no key:\n{text}");
    assert!(!printed(&text), "check printed the secret:\n{text}");

    let mut relay = common::spawn_relay_with(&c.config, None, env);
    let health = common::wait_health(metrics, &named, Duration::from_secs(60));
    assert!(health.contains("\"status\":\"degraded\""), "{health}");
    assert!(!printed(&health), "/health printed the secret:\n{health}");
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
    assert!(!printed(&log), "the log printed the secret");
}

#[test]
fn a_wrong_password_is_named_by_key_with_health_degraded_and_never_printed() {
    let sk = secure_kafka();
    let wrong = "wrong-scram-password-5c81e2";
    let (c, metrics) = secure_case("secure-pw", &sk, &format!("\"{wrong}\""), &sk.ca_pem);
    assert_refused_naming(&c, &metrics, "sasl.password", Some(wrong), &[]);
}

#[test]
fn an_untrusted_ca_is_named_by_key_with_health_degraded() {
    let sk = secure_kafka();
    let (c, metrics) = secure_case("secure-ca", &sk, &sk.password_ref(), &sk.untrusted_ca_pem);
    assert_refused_naming(&c, &metrics, "ssl.ca.location", Some(&sk.password()), &[]);
}

/// A case whose relay logs in to the Kerberos listener as the testbed's flumen principal with
/// `keytab`, delivering to the plain HDFS; /metrics and /health on a free port, returned.
fn kerberos_case(prefix: &str, kk: &KerberosKafka, keytab: &Path) -> (Case, String) {
    let mut c = Case::new(prefix);
    c.cfg.kafka_bootstrap = Some(kk.bootstrap.clone());
    c.cfg.extra_properties = kk.properties(keytab);
    let metrics = c.with_metrics();
    (c, metrics)
}

/// `klist` of the credential cache `ccache` (its principals, never keys).
fn klist(kk: &KerberosKafka, ccache: &Path) -> String {
    let out = std::process::Command::new("klist")
        .arg("-c")
        .arg(format!("FILE:{}", ccache.display()))
        .env("KRB5_CONFIG", &kk.krb5_conf)
        .output()
        .expect("run klist (Debian package krb5-user)");
    common::output_text(&out)
}

// Kafka over Kerberos: librdkafka runs kinit from the keytab into the daemon's own credential
// cache, Cyrus SASL's GSSAPI plugin gets a ticket for kafka/localhost, and the relay delivers
// every record once across a kill -9 (the second run finds the first run's ticket: kinit -R).
#[test]
fn exactly_once_through_sasl_ssl_gssapi_across_a_kill_9() {
    let kk = kerberos_kafka();
    let tb = testbed();
    let (c, metrics) = kerberos_case("gssapi-eo", &kk, &kk.keytab);
    let env = kk.env(c.work.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let ccache = kk.ccache(c.work.path());

    let config = c.config.to_str().unwrap();
    let out = common::flumen_with(&["check", "--config", config], &env);
    assert!(
        out.status.success(),
        "check failed through GSSAPI:\n{}",
        common::output_text(&out)
    );

    let p = common::producer(tb);
    common::produce(&p, &c.cfg.topic, 0, 2000);
    let mut first = common::spawn_relay_with(&c.config, None, &env);
    let client = common::hdfs(tb);
    let before = common::wait_landed(&client, &c.cfg.hdfs_path, 1, Duration::from_secs(90));
    assert!(
        !before.is_empty(),
        "nothing landed through SASL_SSL + GSSAPI within 90 s:\n{}",
        first.key_log_lines()
    );
    // The login was Kerberos: the daemon's own cache holds its TGT and a service ticket for
    // the brokers' principal (and the default cache was not used).
    let tickets = klist(&kk, &ccache);
    assert!(
        tickets.contains(&format!("Default principal: {}", kk.principal)),
        "the daemon's credential cache is not flumen's:\n{tickets}"
    );
    let realm = kk.principal.split_once('@').unwrap().1;
    let service = format!("{}/localhost@{realm}", kk.service);
    assert!(
        tickets.contains(&service),
        "no service ticket for {service} in the daemon's credential cache:\n{tickets}"
    );
    first.kill9();

    common::produce(&p, &c.cfg.topic, 2000, 4000);
    let mut second = common::spawn_relay_with(&c.config, None, &env);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 4000, LANDING_LIMIT);
    assert_exactly_once(&landed, 4000);
    let health = common::wait_health(&metrics, "\"status\":\"ready\"", Duration::from_secs(30));
    assert!(!health.contains("kerberos"), "{health}");
    second.stop_gracefully(Duration::from_secs(30));
    for (run, relay) in [("first", &first), ("second", &second)] {
        let log = relay.log_text();
        assert!(
            !log.contains("Kerberos ticket refresh failed"),
            "the {run} run's kinit failed:\n{}",
            relay.key_log_lines()
        );
    }
}

// A keytab that holds another principal's keys: kinit cannot log flumen in, so Cyrus SASL has
// no credentials and Kafka lets no data through. `check` fails and `/health` is degraded, each
// naming the keytab's key; the daemon keeps running (a fixed keytab needs no broker change,
// but librdkafka's kinit runs again every sasl.kerberos.min.time.before.relogin).
#[test]
fn a_keytab_of_another_principal_is_named_by_key_with_health_degraded() {
    let kk = kerberos_kafka();
    let (c, metrics) = kerberos_case("gssapi-kt", &kk, &kk.intruder_keytab);
    let env = kk.env(c.work.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_refused_naming(&c, &metrics, "sasl.kerberos.keytab", None, &env);
}
