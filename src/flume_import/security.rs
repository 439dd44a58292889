//! Flume's Java TLS and Kerberos consumer settings (`kafka.consumer.ssl.*`,
//! `kafka.consumer.sasl.jaas.config` with `Krb5LoginModule`) in librdkafka's terms. The Java
//! client reads JKS or PKCS12 stores; librdkafka reads PEM CA files, PKCS12 keystores
//! (`ssl.keystore.location`) and PEM keys, and never JKS. What maps is carried; what needs a
//! file converted is carried under the converted file's name, with a warning that gives the
//! exact `keytool` command. `security.protocol`, `sasl.mechanism` and
//! `sasl.kerberos.service.name` have the same names and values in both and pass through.

use std::path::Path;

use super::{q, Carry};

/// Java-only TLS settings: the JVM's TLS stack has them, OpenSSL does not (or, like cipher
/// suites, names them differently).
const JAVA_ONLY: [&str; 11] = [
    "ssl.protocol",
    "ssl.enabled.protocols",
    "ssl.keymanager.algorithm",
    "ssl.trustmanager.algorithm",
    "ssl.secure.random.implementation",
    "ssl.provider",
    "ssl.engine.factory.class",
    "ssl.truststore.certificates",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.cipher.suites",
];

/// The environment variable a converted secret is read from (the same rule as other secrets).
pub(super) fn env_of(name: &str) -> String {
    format!("FLUMEN_KAFKA_{}", name.replace('.', "_").to_uppercase())
}

/// Where one `kafka.consumer.<name> = <value>` (full key `k`) goes, or None if it is not a TLS
/// or Kerberos setting this module handles. `sibling` reads another `kafka.consumer.*` value.
pub(super) fn carry(
    k: &str,
    name: &str,
    v: &str,
    sibling: &dyn Fn(&str) -> Option<String>,
    w: &mut Vec<String>,
) -> Option<Carry> {
    let carry = match name {
        "ssl.truststore.location" => truststore(k, v, sibling, w),
        "ssl.keystore.location" => keystore(k, v, sibling, w),
        "ssl.truststore.type" | "ssl.keystore.type" => {
            let location = name.replace(".type", ".location");
            if sibling(&location).is_none() {
                w.push(format!("{k}: no {location} beside it; dropped"));
            }
            Carry::Nothing
        }
        "ssl.truststore.password" => {
            w.push(format!(
                "{k}: a secret, not copied; librdkafka reads the CA as PEM, which has no \
                 password (the conversion command above reads it from environment variable {})",
                env_of(name)
            ));
            Carry::Nothing
        }
        "ssl.endpoint.identification.algorithm" => match v {
            // The Java client turns host name verification off with an empty value.
            "" => Carry::Property(format!("{} = \"none\"", q(name))),
            "https" | "none" => Carry::Property(format!("{} = {}", q(name), q(v))),
            other => {
                w.push(format!(
                    "{k} = {other}: unknown value; librdkafka's default (https) applies"
                ));
                Carry::Nothing
            }
        },
        "sasl.jaas.config" if v.contains("Krb5LoginModule") => kerberos(k, v, w),
        _ if JAVA_ONLY.contains(&name) => {
            w.push(format!(
                "{k}: a setting of the Java TLS stack with no librdkafka equivalent (librdkafka \
                 uses OpenSSL: see its ssl.* properties, e.g. ssl.cipher.suites with OpenSSL \
                 names); dropped"
            ));
            Carry::Nothing
        }
        _ => return None,
    };
    Some(carry)
}

/// A store's type as the Java client reads it: `ssl.*store.type`, else the file's extension,
/// else the Java client's default, JKS.
fn store_type(location: &str, given: Option<String>) -> String {
    if let Some(t) = given {
        return t.to_uppercase();
    }
    let ext = Path::new(location)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_lowercase();
    match ext.as_str() {
        "p12" | "pfx" | "pkcs12" => "PKCS12".into(),
        "pem" | "crt" => "PEM".into(),
        _ => "JKS".into(),
    }
}

/// `path` with its extension replaced by `ext`.
fn beside(path: &str, ext: &str) -> String {
    Path::new(path).with_extension(ext).display().to_string()
}

/// The truststore becomes `ssl.ca.location`: a PEM store as it is; a JKS or PKCS12 store as
/// the PEM file `keytool -list -rfc` writes beside it (OpenSSL reads the certificates in that
/// listing and skips the text around them).
fn truststore(
    k: &str,
    v: &str,
    sibling: &dyn Fn(&str) -> Option<String>,
    w: &mut Vec<String>,
) -> Carry {
    let kind = store_type(v, sibling("ssl.truststore.type"));
    let ca = |path: &str| Carry::Property(format!("{} = {}", q("ssl.ca.location"), q(path)));
    if kind == "PEM" {
        return ca(v);
    }
    let pem = beside(v, "pem");
    let pass = match sibling("ssl.truststore.password") {
        Some(_) => format!(" -storepass:env {}", env_of("ssl.truststore.password")),
        None => String::new(),
    };
    w.push(format!(
        "{k}: librdkafka reads no {kind} truststore; carried as ssl.ca.location = {pem}. \
         Convert it once: keytool -list -rfc -keystore {v} -storetype {kind}{pass} > {pem}"
    ));
    ca(&pem)
}

/// The keystore: PKCS12 is librdkafka's `ssl.keystore.location` as it is; PEM (key and
/// certificate in one file) is `ssl.certificate.location` and `ssl.key.location`; JKS is
/// carried as the PKCS12 file `keytool -importkeystore` writes beside it.
fn keystore(
    k: &str,
    v: &str,
    sibling: &dyn Fn(&str) -> Option<String>,
    w: &mut Vec<String>,
) -> Carry {
    let kind = store_type(v, sibling("ssl.keystore.type"));
    let location =
        |path: &str| Carry::Property(format!("{} = {}", q("ssl.keystore.location"), q(path)));
    match kind.as_str() {
        "PKCS12" => location(v),
        "PEM" => Carry::Property(format!(
            "{} = {}\n{} = {}",
            q("ssl.certificate.location"),
            q(v),
            q("ssl.key.location"),
            q(v)
        )),
        _ => {
            let p12 = beside(v, "p12");
            let pass = env_of("ssl.keystore.password");
            w.push(format!(
                "{k}: librdkafka reads no {kind} keystore; carried as ssl.keystore.location = \
                 {p12}. Convert it once: keytool -importkeystore -srckeystore {v} -srcstoretype \
                 {kind} -srcstorepass:env {pass} -destkeystore {p12} -deststoretype PKCS12 \
                 -deststorepass:env {pass} (librdkafka opens the key with \
                 ssl.keystore.password, so keytool asks for the key's password if it differs)"
            ));
            location(&p12)
        }
    }
}

/// `Krb5LoginModule` with a keytab: librdkafka's own Kerberos settings (it runs `kinit`
/// itself). A keytab's path and a principal are no secrets, so they are carried as text.
fn kerberos(k: &str, v: &str, w: &mut Vec<String>) -> Carry {
    let mut lines = Vec::new();
    for (option, property) in [
        ("keyTab", "sasl.kerberos.keytab"),
        ("principal", "sasl.kerberos.principal"),
    ] {
        match jaas_option(v, option) {
            Some(value) => lines.push(format!("{} = {}", q(property), q(&value))),
            None => w.push(format!("{k}: no {option}=\"...\"; set {property} by hand")),
        }
    }
    w.push(format!(
        "{k}: Krb5LoginModule carried as librdkafka's sasl.kerberos.* (GSSAPI needs \
         libsasl2-modules-gssapi-mit and kinit on the host; see README, Secure clusters)"
    ));
    Carry::Property(lines.join("\n"))
}

/// `username="alice"` out of a JAAS login-module line.
pub(super) fn jaas_option(jaas: &str, option: &str) -> Option<String> {
    let start = jaas.find(&format!("{option}=\""))? + option.len() + 2;
    let len = jaas[start..].find('"')?;
    Some(jaas[start..start + len].to_string())
}
