//! `hdfs.kerberos_principal`, `hdfs.kerberos_keytab` and `[hdfs.properties]`: checked here, so
//! the HDFS client gets a login and a Hadoop configuration that agree.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::KerberosSettings;

/// The Hadoop key that turns on SASL (Kerberos) in hdfs-native.
pub const AUTHENTICATION_KEY: &str = "hadoop.security.authentication";

/// A rejected key (under `[hdfs]`) and why.
pub type Rejected = (String, String);

/// The login the two `[hdfs]` keys describe, if any.
pub fn login(
    principal: Option<&str>,
    keytab: Option<&PathBuf>,
) -> Result<Option<KerberosSettings>, Rejected> {
    let reject = |key: &str, m: &str| Err((key.to_string(), m.to_string()));
    let Some(principal) = principal else {
        if keytab.is_some() {
            return reject(
                "kerberos_keytab",
                "needs hdfs.kerberos_principal: name the principal to log in as",
            );
        }
        return Ok(None);
    };
    if let Some(m) = principal_problem(principal) {
        return reject("kerberos_principal", &m);
    }
    if keytab.is_some_and(|k| !k.is_absolute()) {
        return reject(
            "kerberos_keytab",
            "must be an absolute path (a service's working directory is not yours)",
        );
    }
    Ok(Some(KerberosSettings {
        principal: principal.replace("_HOST", &host_name()),
        keytab: keytab.cloned(),
    }))
}

fn principal_problem(p: &str) -> Option<String> {
    if p.trim().is_empty() {
        return Some("is empty; remove the key for a cluster without Kerberos".into());
    }
    if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("{p:?} holds white space"));
    }
    if p.matches('@').count() > 1 || p.starts_with('@') || p.ends_with('@') {
        return Some(format!(
            "{p:?} is not a principal: primary[/instance][@REALM], e.g. flumen/_HOST@EXAMPLE.COM"
        ));
    }
    None
}

/// `[hdfs.properties]` with what the login needs added; the key at fault on a conflict.
pub fn properties(
    given: &BTreeMap<String, String>,
    login: Option<&KerberosSettings>,
) -> Result<BTreeMap<String, String>, Rejected> {
    let mut out = given.clone();
    if out.contains_key("fs.defaultFS") {
        return Err(("properties.\"fs.defaultFS\"".into(), "use hdfs.url".into()));
    }
    if login.is_some() {
        match out.get(AUTHENTICATION_KEY).map(String::as_str) {
            None | Some("kerberos") => {}
            Some(other) => {
                return Err((
                    format!("properties.\"{AUTHENTICATION_KEY}\""),
                    format!(
                        "is {other:?} but hdfs.kerberos_principal is set; remove it (flumen sets \
                         \"kerberos\")"
                    ),
                ))
            }
        }
        out.insert(AUTHENTICATION_KEY.into(), "kerberos".into());
    }
    Ok(out)
}

/// This host's name, lower case, for `_HOST` (as Hadoop's `SecurityUtil` does).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and the last byte stays 0 either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<PathBuf> {
        Some(PathBuf::from(s))
    }

    #[test]
    fn a_keytab_alone_names_the_missing_principal() {
        let e = login(None, p("/etc/flumen.keytab").as_ref()).unwrap_err();
        assert_eq!(e.0, "kerberos_keytab");
        assert!(e.1.contains("kerberos_principal"), "{e:?}");
    }

    #[test]
    fn host_is_replaced_and_bad_principals_are_named() {
        let k = login(Some("flumen/_HOST@R"), p("/k").as_ref())
            .unwrap()
            .unwrap();
        assert!(!k.principal.contains("_HOST"), "{k:?}");
        assert!(k.principal.starts_with("flumen/") && k.principal.ends_with("@R"));
        for bad in ["", "a b@R", "a@b@R", "@R", "a@"] {
            let e = login(Some(bad), None).unwrap_err();
            assert_eq!(e.0, "kerberos_principal", "{bad:?}");
        }
        let e = login(Some("flumen@R"), p("flumen.keytab").as_ref()).unwrap_err();
        assert_eq!(e.0, "kerberos_keytab");
    }

    #[test]
    fn a_login_turns_kerberos_on_and_refuses_a_contradiction() {
        let k = login(Some("flumen@R"), None).unwrap();
        let out = properties(&BTreeMap::new(), k.as_ref()).unwrap();
        assert_eq!(out[AUTHENTICATION_KEY], "kerberos");
        let simple = BTreeMap::from([(AUTHENTICATION_KEY.to_string(), "simple".to_string())]);
        let e = properties(&simple, k.as_ref()).unwrap_err();
        assert!(
            e.0.contains(AUTHENTICATION_KEY) && e.1.contains("simple"),
            "{e:?}"
        );
        assert_eq!(properties(&simple, None).unwrap(), simple);
        let fs = BTreeMap::from([("fs.defaultFS".to_string(), "hdfs://x".to_string())]);
        assert!(properties(&fs, None).unwrap_err().1.contains("hdfs.url"));
    }
}
