//! The SASL_SSL listener of `scripts/testbed up --secure` (SCRAM-SHA-512, the testbed's own
//! CA), as tests log in to it. A testbed started without `--secure` fails the test that needs
//! it, saying how to start one: never a skip.

use std::path::PathBuf;

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
    pub fn properties(&self, password: &str, ca: &std::path::Path) -> String {
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
