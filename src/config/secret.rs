//! Secret values: where a `[kafka.properties]` value may come from instead of the config text
//! (`{ file = "/etc/flumen/kafka.pass" }` or `{ env = "FLUMEN_KAFKA_PASSWORD" }`), which
//! property names hold secrets, and the redaction that keeps their values out of every error,
//! log line and `Debug` print.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A property's value as written: text, or a reference to a file or environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawValue {
    Text(String),
    File(FileRef),
    Env(EnvRef),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// Read whole; one trailing newline is dropped, as `echo` and editors leave one.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvRef {
    pub env: String,
}

impl RawValue {
    /// The value itself, or why it cannot be had (the message names no secret).
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            RawValue::Text(s) => Ok(s.clone()),
            RawValue::File(FileRef { file }) => std::fs::read_to_string(file)
                .map(|s| s.strip_suffix('\n').unwrap_or(&s).to_string())
                .map_err(|e| format!("cannot read {}: {e}", file.display())),
            RawValue::Env(EnvRef { env }) => std::env::var(env)
                .map_err(|_| format!("names environment variable {env}, which is not set")),
        }
    }
}

/// Whether a librdkafka property holds a secret: its value is never printed.
pub fn is_secret(name: &str) -> bool {
    const MARKS: [&str; 6] = [
        "password",
        "secret",
        "jaas",
        "token",
        "oauthbearer.config",
        "key.pem",
    ];
    MARKS.iter().any(|m| name.contains(m))
}

/// The pass-through librdkafka properties, values resolved. `Debug` hides secret values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties(pub BTreeMap<String, String>);

impl std::ops::Deref for Properties {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret(k) { "<hidden>" } else { v.as_str() };
                (k, shown)
            }))
            .finish()
    }
}

/// `text` with every secret value among `properties` replaced by `<hidden>`. librdkafka's
/// config errors quote the value they refuse, and a refused value may be a password.
pub fn redact<'a>(text: &str, properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    Redactor::new(properties).apply(text)
}

/// The secret values among a client's properties, kept to hide them in whatever librdkafka
/// says later (its error callback and log lines). `Debug` shows how many, never which.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Vec<String>,
}

impl Redactor {
    pub fn new<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let values = properties
            .into_iter()
            .filter(|(name, _)| is_secret(name))
            .map(|(_, value)| value.to_string())
            .collect();
        Self { values }
    }

    /// `text` with every secret value replaced by `<hidden>`.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for value in &self.values {
            out = hide(&out, value);
        }
        out
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secret values)", self.values.len())
    }
}

/// `text` with `value` replaced by `<hidden>`. A value of a few bytes is left: hiding it would
/// garble the message, and it is no secret worth the name.
pub fn hide(text: &str, value: &str) -> String {
    if value.len() < 4 {
        text.to_string()
    } else {
        text.replace(value, "<hidden>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_and_redaction() {
        for name in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "sasl.jaas.config",
            "ssl.key.pem",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in ["sasl.username", "ssl.key.location", "fetch.min.bytes"] {
            assert!(!is_secret(name), "{name}");
        }
        let props = [("sasl.password", "hunter22"), ("sasl.username", "alice")];
        assert_eq!(
            redact("bad value \"hunter22\" for alice", props),
            "bad value \"<hidden>\" for alice"
        );
        let p = Properties(
            props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let r = Redactor::new(props);
        assert_eq!(r.apply("hunter22 hunter22"), "<hidden> <hidden>");
        assert!(!format!("{r:?}").contains("hunter22"));
        let debug = format!("{p:?}");
        assert!(
            !debug.contains("hunter22") && debug.contains("alice"),
            "{debug}"
        );
    }
}
