//! The Kerberized HDFS of `scripts/testbed up --secure`: its exports, a client logged in from
//! the testbed's keytab, and relay configs that point at it.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use hdfs_native::Client;

use super::{testbed, RelayConfig};

pub struct Kerberized {
    pub url: String,
    pub krb5_conf: String,
    pub principal: String,
    pub keytab: String,
    pub intruder_principal: String,
    pub intruder_keytab: String,
    pub protection: String,
}

/// The Kerberized HDFS; the test process uses its krb5.conf from here on.
pub fn kerberized() -> &'static Kerberized {
    static K: OnceLock<Kerberized> = OnceLock::new();
    K.get_or_init(|| {
        let tb = testbed();
        let k = Kerberized {
            url: tb.secure_export("FLUMEN_SECURE_HDFS_URL"),
            krb5_conf: tb.secure_export("FLUMEN_KRB5_CONF"),
            principal: tb.secure_export("FLUMEN_HDFS_CLIENT_PRINCIPAL"),
            keytab: tb.secure_export("FLUMEN_HDFS_CLIENT_KEYTAB"),
            intruder_principal: tb.secure_export("FLUMEN_HDFS_INTRUDER_PRINCIPAL"),
            intruder_keytab: tb.secure_export("FLUMEN_HDFS_INTRUDER_KEYTAB"),
            protection: tb.secure_export("FLUMEN_HDFS_PROTECTION"),
        };
        // Before any GSSAPI call of this process; every test wants the same realm.
        std::env::set_var("KRB5_CONFIG", &k.krb5_conf);
        k
    })
}

/// A client of the Kerberized HDFS, logged in as the testbed's flumen principal.
pub fn secure_hdfs() -> Arc<Client> {
    let k = kerberized();
    let client = hdfs_native::ClientBuilder::new()
        .with_url(&k.url)
        .with_config([
            ("hadoop.security.authentication", "kerberos"),
            ("dfs.data.transfer.protection", k.protection.as_str()),
        ])
        .with_kerberos_principal(&k.principal)
        .with_kerberos_keytab(&k.keytab)
        .build()
        .expect("client of the Kerberized HDFS");
    Arc::new(client)
}

/// `cfg` against the Kerberized HDFS, logging in as `principal` from `keytab`, under
/// /user/flumen (the only place the flumen principal may write).
pub fn write_secure(cfg: &mut RelayConfig, principal: &str, keytab: &Path, path: &Path) {
    let k = kerberized();
    cfg.hdfs_path = format!("/user/flumen/{}/out", cfg.topic);
    cfg.extra_hdfs = format!(
        "{}kerberos_principal = \"{principal}\"\nkerberos_keytab = \"{}\"\n\
         [hdfs.properties]\n\"dfs.data.transfer.protection\" = \"{}\"\n",
        cfg.extra_hdfs,
        keytab.display(),
        k.protection
    );
    cfg.hdfs_url = Some(k.url.clone());
    cfg.write(testbed(), path);
}

/// The testbed's krb5.conf with tickets of `lifetime` (krb5.conf syntax, e.g. "2m"), written
/// to `dir`; returns its path, for the daemon's KRB5_CONFIG.
pub fn krb5_conf_with_lifetime(dir: &Path, lifetime: &str) -> String {
    let text = std::fs::read_to_string(&kerberized().krb5_conf).unwrap();
    assert!(text.contains("[libdefaults]"), "krb5.conf: {text}");
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("ticket_lifetime"))
        .collect();
    let text = kept.join("\n").replacen(
        "[libdefaults]",
        &format!("[libdefaults]\n  ticket_lifetime = {lifetime}"),
        1,
    );
    let path = dir.join("krb5-short.conf");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}
