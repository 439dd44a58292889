//! The SASL_SSL listeners of `scripts/testbed up --secure` (SCRAM-SHA-512, and GSSAPI against
//! the testbed's KDC; the testbed's own CA), as tests log in to them. A testbed started
//! without `--secure` fails the test that needs it, saying how to start one: never a skip.

use std::path::{Path, PathBuf};

use super::testbed;

pub struct SecureKafka {
    /// host:port list of the SASL_SSL listeners.
    pub bootstrap: String,
    /// The CA that signed the brokers' certificate (PEM).
    pub ca_pem: PathBuf,
    /// A CA that signed nothing the brokers show (PEM).
    pub untrusted_ca_pem: PathBuf,
    pub user: String,
    /// A 0600 file holding the SCRAM password.
    pub password_file: PathBuf,
}

/// The testbed's secure listener, from the exports of `scripts/testbed`.
pub fn secure_kafka() -> SecureKafka {
    let tb = testbed();
    let get = |k: &str| tb.secure_export(k);
    SecureKafka {
        bootstrap: get("FLUMEN_KAFKA_SECURE_BOOTSTRAP"),
        ca_pem: get("FLUMEN_KAFKA_CA_PEM").into(),
        untrusted_ca_pem: get("FLUMEN_KAFKA_UNTRUSTED_CA_PEM").into(),
        user: get("FLUMEN_KAFKA_SCRAM_USER"),
        password_file: get("FLUMEN_KAFKA_SCRAM_PASSWORD_FILE").into(),
    }
}

impl SecureKafka {
    /// `[kafka.properties]` lines (TOML) of a SASL_SSL + SCRAM-SHA-512 login. `password` is
    /// the TOML value of `sasl.password` (a `{ file = .. }` or `{ env = .. }` table, or
    /// text); `ca` the CA file to trust.
    pub fn properties(&self, password: &str, ca: &Path) -> String {
        format!(
            "\"security.protocol\" = \"SASL_SSL\"\n\
             \"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\
             \"sasl.username\" = \"{user}\"\n\
             \"sasl.password\" = {password}\n\
             \"ssl.ca.location\" = \"{ca}\"\n",
            user = self.user,
            ca = ca.display(),
        )
    }

    /// The right password, as a `{ file = .. }` reference to the testbed's password file.
    pub fn password_ref(&self) -> String {
        format!("{{ file = \"{}\" }}", self.password_file.display())
    }

    /// The SCRAM password itself, for asserting that no output carries it.
    pub fn password(&self) -> String {
        std::fs::read_to_string(&self.password_file)
            .expect("read the testbed's SCRAM password file")
            .trim_end()
            .to_string()
    }
}

/// The Kerberos listener of `scripts/testbed up --secure`: SASL_SSL with GSSAPI against the
/// testbed's KDC, advertised as `localhost` (the host in the brokers' service principal).
pub struct KerberosKafka {
    /// host:port list of the KERBEROS listeners (`localhost:PORT`).
    pub bootstrap: String,
    /// `sasl.kerberos.service.name` (the brokers' principal is `<service>/localhost@REALM`).
    pub service: String,
    /// The client principal, `flumen@REALM`.
    pub principal: String,
    /// Its keytab (0600).
    pub keytab: PathBuf,
    /// The keytab of another principal (`intruder@REALM`).
    pub intruder_keytab: PathBuf,
    /// The testbed's krb5.conf (the daemon's KRB5_CONFIG).
    pub krb5_conf: PathBuf,
    /// The CA that signed the brokers' certificate (PEM).
    pub ca_pem: PathBuf,
}

/// The testbed's Kerberos listener, from the exports of `scripts/testbed`; fails the test,
/// saying how to start a testbed that has it, when any is missing.
pub fn kerberos_kafka() -> KerberosKafka {
    let tb = testbed();
    let get = |k: &str| tb.secure_export(k);
    KerberosKafka {
        bootstrap: get("FLUMEN_KAFKA_GSSAPI_BOOTSTRAP"),
        service: get("FLUMEN_KAFKA_KERBEROS_SERVICE"),
        principal: get("FLUMEN_KAFKA_CLIENT_PRINCIPAL"),
        keytab: get("FLUMEN_KAFKA_CLIENT_KEYTAB").into(),
        intruder_keytab: get("FLUMEN_HDFS_INTRUDER_KEYTAB").into(),
        krb5_conf: get("FLUMEN_KRB5_CONF").into(),
        ca_pem: get("FLUMEN_KAFKA_CA_PEM").into(),
    }
}

impl KerberosKafka {
    /// `[kafka.properties]` lines (TOML) of a SASL_SSL + GSSAPI login as `self.principal` from
    /// `keytab`. librdkafka runs `kinit` with them (its default `sasl.kerberos.kinit.cmd`).
    /// `broker.address.family = v4`: the listeners are bound to 127.0.0.1 only, and a host
    /// whose `localhost` also resolves to ::1 would have librdkafka try that first.
    pub fn properties(&self, keytab: &Path) -> String {
        format!(
            "\"security.protocol\" = \"SASL_SSL\"\n\
             \"sasl.mechanism\" = \"GSSAPI\"\n\
             \"sasl.kerberos.service.name\" = \"{service}\"\n\
             \"sasl.kerberos.principal\" = \"{principal}\"\n\
             \"sasl.kerberos.keytab\" = \"{keytab}\"\n\
             \"ssl.ca.location\" = \"{ca}\"\n\
             \"broker.address.family\" = \"v4\"\n",
            service = self.service,
            principal = self.principal,
            keytab = keytab.display(),
            ca = self.ca_pem.display(),
        )
    }

    /// The environment of a flumen process that logs in: the testbed's krb5.conf, and a
    /// credential cache of its own in `dir` (librdkafka's kinit and Cyrus SASL use the
    /// default cache, which must be neither the user's nor another test's).
    pub fn env(&self, dir: &Path) -> Vec<(String, String)> {
        vec![
            ("KRB5_CONFIG".into(), self.krb5_conf.display().to_string()),
            (
                "KRB5CCNAME".into(),
                format!("FILE:{}", self.ccache(dir).display()),
            ),
        ]
    }

    /// The credential cache file that [`Self::env`] gives a process working in `dir`.
    pub fn ccache(&self, dir: &Path) -> PathBuf {
        dir.join("krb5cc")
    }
}
