//! `flumen check`: after the config parsed, everything the daemon needs before it can run:
//! a channel directory it can write, the Kafka topics, and a NameNode that accepts a write
//! under the state directory. Each failure names the key to look at.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;

use crate::config::Settings;
use crate::hdfs_fault::Brief;
use crate::health::Health;
use crate::relay;
use crate::tools::{kafka_client, kafka_failed, ToolError};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("`channel.dir` {dir}: {reason}")]
    Channel { dir: PathBuf, reason: String },
    #[error("`hdfs.url` {url}: {op} {path}: {reason}")]
    Hdfs {
        url: String,
        op: &'static str,
        path: String,
        reason: String,
    },
    #[error(transparent)]
    Kerberos(#[from] crate::kerberos::LoginError),
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// How long the NameNode has to answer the probe.
const HDFS_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn check(config: &Settings) -> Result<(), CheckError> {
    check_channel_dir(&config.channel.dir)?;
    check_topics(config).await?;
    check_kerberos(config).await?;
    check_hdfs(config).await
}

/// The HDFS login gets a ticket now, naming the key at fault if it cannot.
async fn check_kerberos(config: &Settings) -> Result<(), CheckError> {
    let Some(k) = &config.hdfs.kerberos else {
        return Ok(());
    };
    let login = crate::kerberos::Login::new(k);
    let remaining = tokio::task::spawn_blocking(move || login.acquire())
        .await
        .expect("kerberos acquire panicked")?;
    println!(
        "hdfs: kerberos ticket for {} ({} s left)",
        k.principal,
        remaining.as_secs()
    );
    Ok(())
}

/// The channel directory (or, before the first run, the nearest ancestor the daemon would
/// create it in) is a directory that takes a file and an fsync. A file in its place, missing
/// permissions and a read-only mount all fail here instead of at the daemon's first batch.
pub fn check_channel_dir(dir: &Path) -> Result<(), CheckError> {
    let fail = |reason: String| CheckError::Channel {
        dir: dir.to_path_buf(),
        reason,
    };
    let existing = dir
        .ancestors()
        .find(|a| a.exists())
        .ok_or_else(|| fail("no ancestor of it exists".into()))?;
    if !existing.is_dir() {
        return Err(fail(format!("{} is not a directory", existing.display())));
    }
    let probe = existing.join(format!(".flumen-check-{}", std::process::id()));
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(b"flumen check\n")?;
        f.sync_data()
    });
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| fail(format!("cannot write in {}: {e}", existing.display())))
}

async fn check_topics(config: &Settings) -> Result<(), ToolError> {
    let consumer = kafka_client(config)?;
    let servers = config.kafka.bootstrap_servers.clone();
    let topics = config.kafka.topics.clone();
    tokio::task::spawn_blocking(move || {
        for t in &topics {
            let md = consumer
                .fetch_metadata(Some(t), Duration::from_secs(10))
                .map_err(|e| kafka_failed(&servers, &consumer, format!("topic {t}: {e}")))?;
            let topic = md
                .topics()
                .first()
                .filter(|m| m.error().is_none() && !m.partitions().is_empty());
            if topic.is_none() {
                return Err(ToolError::Kafka {
                    servers: servers.clone(),
                    reason: format!("topic {t} does not exist"),
                });
            }
        }
        Ok(())
    })
    .await
    .expect("check task")
}

/// `mkdirs` of the state directory: needs a NameNode that is up, out of safe mode, and lets
/// this user write there.
async fn check_hdfs(config: &Settings) -> Result<(), CheckError> {
    let hdfs = relay::native_hdfs(config, Arc::new(Health::default())).map_err(ToolError::from)?;
    let probe = config.hdfs.state_dir.clone();
    let fail = |reason: String| CheckError::Hdfs {
        url: config.hdfs.url.clone(),
        op: "mkdirs",
        path: probe.clone(),
        reason,
    };
    match tokio::time::timeout(
        HDFS_PROBE_TIMEOUT,
        hdfs.client().mkdirs(&probe, 0o755, true),
    )
    .await
    {
        Err(_) => Err(fail(format!(
            "no answer in {} s",
            HDFS_PROBE_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) => Err(fail(Brief(&e).to_string())),
        Ok(Ok(())) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdfs_native::HdfsError;

    /// Regression: `check` against a NameNode in safe mode printed a 20-line Java trace.
    #[test]
    fn a_java_exception_is_one_line() {
        let e = HdfsError::RPCError(
            "org.apache.hadoop.hdfs.server.namenode.SafeModeException".into(),
            "Cannot create directory /x. Name node is in safe mode.\n\
             \tat org.apache.hadoop.hdfs.server.namenode.FSNamesystem.checkNameNodeSafeMode"
                .into(),
        );
        let s = Brief(&e).to_string();
        assert_eq!(
            s,
            "SafeModeException: Cannot create directory /x. Name node is in safe mode."
        );
    }

    /// Regression: `check` said OK when `channel.dir` was a file.
    #[test]
    fn a_file_in_place_of_the_channel_dir_is_refused() {
        let dir = std::env::temp_dir().join(format!("flumen-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("channel");
        std::fs::write(&file, b"x").unwrap();
        let err = check_channel_dir(&file.join("sub"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`channel.dir`"), "{err}");
        assert!(err.contains("is not a directory"), "{err}");
        check_channel_dir(&dir.join("new/channel")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
