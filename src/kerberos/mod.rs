//! Kerberos login for HDFS. hdfs-native authenticates every NameNode connection with GSSAPI;
//! flumen gives it the principal, the keytab and one private in-memory credential cache, and
//! [`keeper`] watches that cache's ticket so `/health` and `/metrics` show it.
//!
//! Renewal is MIT krb5's client-keytab login: an acquire on a cache whose ticket is past half
//! its life logs in from the keytab again. The keeper acquires at a quarter of the ticket's
//! remaining life (5 to 60 s), so a fresh ticket is in the cache long before the old one ends,
//! and a connection made at any moment (a NameNode restart, a failover) finds a valid one.

mod gss;
pub mod keeper;
mod keytab;

use std::time::Duration;

use crate::config::KerberosSettings;

/// The credential cache flumen's keytab login uses: private to the process, never on disk.
pub const CACHE: &str = "MEMORY:flumen-hdfs";

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("hdfs.kerberos_keytab = {path:?}: cannot read it: {source}")]
    Keytab {
        path: String,
        source: std::io::Error,
    },
    #[error("hdfs.kerberos_principal = {principal:?}: no Kerberos ticket {how}: {reason}")]
    Ticket {
        principal: String,
        how: String,
        reason: String,
    },
}

/// A configured login: who, and from which keytab (if any).
#[derive(Debug, Clone)]
pub struct Login {
    settings: KerberosSettings,
}

impl Login {
    pub fn new(settings: &KerberosSettings) -> Self {
        Self {
            settings: settings.clone(),
        }
    }

    pub fn principal(&self) -> &str {
        &self.settings.principal
    }

    /// The hdfs-native client settings for this login.
    pub fn apply(&self, b: hdfs_native::ClientBuilder) -> hdfs_native::ClientBuilder {
        let b = b.with_kerberos_principal(&self.settings.principal);
        match self.keytab() {
            Some(k) => b.with_kerberos_keytab(k).with_kerberos_cache(CACHE),
            None => b,
        }
    }

    fn keytab(&self) -> Option<String> {
        let k = self.settings.keytab.as_ref()?;
        Some(k.to_string_lossy().into_owned())
    }

    /// Gets or keeps a ticket (blocking: it may talk to the KDC); its remaining lifetime.
    pub fn acquire(&self) -> Result<Duration, LoginError> {
        let keytab = self.keytab();
        if let Some(path) = &keytab {
            self.check_keytab(path)?;
        }
        let cache = keytab.as_ref().map(|_| CACHE);
        let fail = |reason: String| LoginError::Ticket {
            principal: self.settings.principal.clone(),
            how: match &keytab {
                Some(k) => format!("from keytab {k:?}"),
                None => "in the default credential cache (no hdfs.kerberos_keytab)".into(),
            },
            reason,
        };
        match gss::acquire(&self.settings.principal, keytab.as_deref(), cache).map_err(fail)? {
            0 => Err(fail(
                "the ticket has expired; renew it (kinit) or set hdfs.kerberos_keytab".into(),
            )),
            s => Ok(Duration::from_secs(s.into())),
        }
    }

    /// The keytab is readable and holds the principal's keys.
    fn check_keytab(&self, path: &str) -> Result<(), LoginError> {
        let bytes = std::fs::read(path).map_err(|source| LoginError::Keytab {
            path: path.into(),
            source,
        })?;
        let bad = |m: String| LoginError::Keytab {
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, m),
        };
        let held = keytab::principals(&bytes).map_err(bad)?;
        let wanted = &self.settings.principal;
        // Without a realm the default realm (krb5.conf) applies, which only MIT knows.
        let same = |p: &String| match wanted.contains('@') {
            true => p == wanted,
            false => p.split('@').next() == Some(wanted.as_str()),
        };
        if held.iter().any(same) {
            return Ok(());
        }
        Err(bad(format!(
            "it holds no keys for {} (it holds: {})",
            self.settings.principal,
            if held.is_empty() {
                "nothing".into()
            } else {
                held.join(", ")
            }
        )))
    }
}
