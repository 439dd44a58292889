//! What librdkafka reports through a client's callbacks, made clear and safe: a refused login or
//! TLS handshake as an error that names the config key to look at (librdkafka reports both
//! through the error callback and then retries for ever, so otherwise the only trace is "all
//! brokers are down" and a fetch that never starts), and librdkafka's log lines as tracing
//! events, after the caller hid the secret values in them.

use std::sync::Mutex;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

use crate::config::secret::Redactor;

/// Why Kafka let no data through although a broker answered, with the keys to check, or None
/// for any other error (a broker down, a timeout: reported as unreachable). `reason` is
/// librdkafka's text, already redacted by the caller; it names the broker and the failure
/// (e.g. `Authentication failed ... invalid credentials with SASL mechanism SCRAM-SHA-512`).
pub fn refusal(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<String> {
    match code? {
        // A listener without SASL (or without this mechanism) answers the handshake so.
        RDKafkaErrorCode::Authentication if reason.contains("mechanism handshake failed") => {
            Some(format!(
                "Kafka did not accept the SASL mechanism: check \
                 `kafka.properties.sasl.mechanism` and `kafka.properties.security.protocol` \
                 (the listener's) ({reason})"
            ))
        }
        // GSSAPI: Cyrus SASL found no usable ticket (librdkafka's kinit from the keytab failed,
        // e.g. a keytab without the principal's keys), or the KDC knows no such service. The
        // failed kinit itself is logged by librdkafka (SASLREFRESH) with its command line.
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed
            if is_kerberos(reason) =>
        {
            Some(format!(
                "Kafka refused the Kerberos (GSSAPI) login: check \
                 `kafka.properties.sasl.kerberos.keytab`, `kafka.properties.sasl.kerberos.principal` \
                 and `kafka.properties.sasl.kerberos.service.name` (librdkafka gets the ticket \
                 with `kafka.properties.sasl.kerberos.kinit.cmd`; its failure is logged) \
                 ({reason})"
            ))
        }
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            Some(format!(
                "Kafka refused the SASL login: check `kafka.properties.sasl.username`, \
                 `kafka.properties.sasl.password` and `kafka.properties.sasl.mechanism` \
                 ({reason})"
            ))
        }
        RDKafkaErrorCode::SSL if reason.contains("certificate verify failed") => Some(format!(
            "the Kafka broker's TLS certificate is not trusted: check \
             `kafka.properties.ssl.ca.location` (the CA that signed the broker's certificate) \
             ({reason})"
        )),
        RDKafkaErrorCode::SSL => Some(format!(
            "the TLS handshake with Kafka failed: check `kafka.properties.security.protocol` \
             and the `kafka.properties.ssl.*` keys ({reason})"
        )),
        _ => None,
    }
}

/// Whether librdkafka's text is about a Kerberos (GSSAPI) login: Cyrus SASL's GSSAPI plugin
/// says "GSSAPI Error: <major> (<minor>)".
fn is_kerberos(reason: &str) -> bool {
    reason.contains("GSSAPI")
}

/// Whether an error with this code is a refusal (see [`refusal`]).
pub fn is_refusal(code: Option<RDKafkaErrorCode>) -> bool {
    refusal(code, "").is_some()
}

/// What librdkafka's log lines about a refusal contain; the error callback reports the same
/// refusal, naming the key, once a minute.
/// ("GSSAPI Error" is Cyrus SASL's line, and "Failed to initialize SASL authentication"
/// librdkafka's, when a Kerberos login has no ticket; librdkafka's own "Kerberos ticket refresh
/// failed" stays an error: it names the kinit command and comes once per relogin interval.)
const REFUSAL_LINES: [&str; 5] = [
    "SASL authentication error",
    "SSL handshake failed",
    "certificate verify failed",
    "GSSAPI Error",
    "Failed to initialize SASL authentication",
];

/// One of librdkafka's log lines (already redacted) as a tracing event at its level, under
/// target `librdkafka` as rdkafka's default context logs them. librdkafka emits debug lines
/// only for the contexts named in its `debug` property. A refusal's lines, which librdkafka
/// repeats at each reconnect (several a second at first), go to debug: the error callback's
/// report says it once a minute and names the key.
pub fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, message: &str) {
    use RDKafkaLogLevel::*;
    let level = if REFUSAL_LINES.iter().any(|l| message.contains(l)) {
        Debug
    } else {
        level
    };
    match level {
        Emerg | Alert | Critical | Error => {
            tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}")
        }
        Warning => tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}"),
        Notice | Info => tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}"),
        Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
    }
}

/// A client context for the tools (`check`, `offsets`): remembers the last refusal, so a
/// metadata request that timed out can say why instead of "broker transport failure". The
/// client serves its error events (to this context) only when polled: see `drain`.
/// `redactor` hides the secret values of the client's properties in librdkafka's text.
pub struct LoginWatch {
    refused: Mutex<Option<String>>,
    redactor: Redactor,
}

impl LoginWatch {
    pub fn new(redactor: Redactor) -> Self {
        Self {
            refused: Mutex::new(None),
            redactor,
        }
    }

    /// The last refusal librdkafka reported, if any; poll the client first.
    pub fn refused(&self) -> Option<String> {
        self.refused.lock().expect("login watch lock").clone()
    }
}

impl ClientContext for LoginWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        let reason = self.redactor.apply(reason);
        match refusal(error.rdkafka_error_code(), &reason) {
            Some(r) => *self.refused.lock().expect("login watch lock") = Some(r),
            None => tracing::debug!(%error, reason, "kafka client error"),
        }
    }

    /// librdkafka's own log lines, redacted, at the level they came with (as rdkafka's default
    /// context does, which passes them on unredacted).
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, &self.redactor.apply(message));
    }
}

/// The tools join no group: the default rebalance and commit handling is all they need.
impl rdkafka::consumer::ConsumerContext for LoginWatch {}

/// librdkafka's fetch counters as metrics: records fetched (`rxmsgs`) and fetched records
/// dropped as outdated (`rx_ver_drops`: a pause, seek or reassignment made them stale, so they
/// are fetched again). Fetched over `flumen_records_consumed_total` is the refetch factor.
pub fn fetch_statistics(statistics: &rdkafka::Statistics) {
    let (fetched, dropped) = fetch_counts(statistics);
    crate::events::kafka_fetched(fetched, dropped);
}

/// Sums over real partitions (librdkafka lists an internal partition -1 per topic).
fn fetch_counts(statistics: &rdkafka::Statistics) -> (u64, u64) {
    let parts = statistics
        .topics
        .values()
        .flat_map(|t| t.partitions.values());
    parts
        .filter(|p| p.partition >= 0)
        .fold((0, 0), |(f, d), p| (f + p.rxmsgs, d + p.rx_ver_drops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_keys_and_other_errors_are_not_refusals() {
        let login = refusal(
            Some(RDKafkaErrorCode::Authentication),
            "sasl_ssl://127.0.0.1:1/bootstrap: SASL authentication error",
        )
        .unwrap();
        assert!(
            login.contains("`kafka.properties.sasl.password`"),
            "{login}"
        );
        let mechanism = refusal(
            Some(RDKafkaErrorCode::Authentication),
            "SASL PLAIN mechanism handshake failed: broker's supported mechanisms: ",
        )
        .unwrap();
        assert!(
            mechanism.contains("`kafka.properties.security.protocol`"),
            "{mechanism}"
        );
        let ca = refusal(
            Some(RDKafkaErrorCode::SSL),
            "SSL handshake failed: certificate verify failed: broker certificate could not be \
             verified",
        )
        .unwrap();
        assert!(ca.contains("`kafka.properties.ssl.ca.location`"), "{ca}");
        let gssapi = refusal(
            Some(RDKafkaErrorCode::Authentication),
            "sasl_ssl://localhost:9093/bootstrap: Failed to initialize SASL authentication: SASL \
             handshake failed (start (-1)): SASL(-1): generic failure: GSSAPI Error: No \
             credentials were supplied, or the credentials were unavailable or inaccessible (No \
             Kerberos credentials available (default cache: FILE:/tmp/krb5cc_0))",
        )
        .unwrap();
        assert!(
            gssapi.contains("`kafka.properties.sasl.kerberos.keytab`"),
            "{gssapi}"
        );
        assert!(!gssapi.contains("sasl.password"), "{gssapi}");
        let tls = refusal(Some(RDKafkaErrorCode::SSL), "SSL handshake failed: EOF").unwrap();
        assert!(tls.contains("`kafka.properties.ssl.*`"), "{tls}");
        assert_eq!(
            refusal(
                Some(RDKafkaErrorCode::AllBrokersDown),
                "1/1 brokers are down"
            ),
            None
        );
        assert_eq!(refusal(None, "x"), None);
    }
}
