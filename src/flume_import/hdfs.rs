//! The Flume HDFS sink as flumen's `[hdfs]` section: where files go and how they are named,
//! their format, when they roll, the time their paths use, and Kerberos.

use super::{q, Component, ImportError, Overrides};

/// The sink keys this module reads; any other is warned about as not carried over.
const KNOWN: [&str; 22] = [
    "type",
    "channel",
    "hdfs.kerberosPrincipal",
    "hdfs.kerberosKeytab",
    "hdfs.proxyUser",
    "hdfs.path",
    "hdfs.filePrefix",
    "hdfs.fileSuffix",
    "hdfs.inUsePrefix",
    "hdfs.inUseSuffix",
    "hdfs.fileType",
    "hdfs.codeC",
    "hdfs.writeFormat",
    "hdfs.rollCount",
    "hdfs.rollSize",
    "hdfs.rollInterval",
    "hdfs.idleTimeout",
    "hdfs.useLocalTimeStamp",
    "hdfs.timeZone",
    "hdfs.round",
    "hdfs.roundValue",
    "hdfs.roundUnit",
];

/// The `[hdfs]` lines; an error if the sink has no `hdfs.path`.
pub(super) fn section(
    sink: &Component,
    agent: &str,
    o: &Overrides,
    w: &mut Vec<String>,
) -> Result<Vec<String>, ImportError> {
    let mut hdfs = location(sink, agent, o, w)?;
    file_names(sink, &mut hdfs, w);
    format(sink, &mut hdfs, w);
    roll(sink, &mut hdfs, w);
    time(sink, &mut hdfs, w);
    kerberos(sink, &mut hdfs, w);
    for k in sink.unknown(&KNOWN) {
        w.push(format!("{k}: not carried over (no flumen equivalent)"));
    }
    Ok(hdfs)
}

/// `url` and `path` from `hdfs.path`, whose `hdfs://authority` (if any) `--hdfs-url` replaces.
fn location(
    sink: &Component,
    agent: &str,
    o: &Overrides,
    w: &mut Vec<String>,
) -> Result<Vec<String>, ImportError> {
    let path = sink
        .get("hdfs.path")
        .ok_or_else(|| ImportError::Missing(agent.into(), "hdfs.path"))?;
    let (url, path) = match path.strip_prefix("hdfs://") {
        Some(rest) => {
            let (auth, p) = rest.split_once('/').unwrap_or((rest, ""));
            (format!("hdfs://{auth}"), format!("/{p}"))
        }
        None => {
            let url = o.hdfs_url.clone().unwrap_or_else(|| {
                w.push(format!(
                    "{}.hdfs.path has no hdfs:// URL; pass --hdfs-url (set to a placeholder)",
                    sink.prefix
                ));
                "hdfs://CHANGE-ME:8020".into()
            });
            (url, path.to_string())
        }
    };
    let url = o.hdfs_url.clone().unwrap_or(url);
    Ok(vec![
        format!("url = {}", q(&url)),
        format!("path = {}", q(&path)),
    ])
}

/// The final files' prefix and suffix; Flume's in-use names have no equivalent.
fn file_names(sink: &Component, hdfs: &mut Vec<String>, w: &mut Vec<String>) {
    hdfs.push(format!(
        "file_prefix = {}",
        q(sink.get("hdfs.filePrefix").unwrap_or("FlumeData"))
    ));
    if let Some(s) = sink.get("hdfs.fileSuffix") {
        hdfs.push(format!("file_suffix = {}", q(s)));
    }
    for k in ["hdfs.inUsePrefix", "hdfs.inUseSuffix"] {
        if sink.get(k).is_some() {
            w.push(format!("{}.{k}: in-use files always live under <path>/_flumen/tmp, hidden from Spark and Hive (Flume's .tmp suffix is read by Spark mid-write)", sink.prefix));
        }
    }
}

/// Text, from `hdfs.fileType` and `hdfs.codeC`: a DataStream, or a CompressedStream with
/// gzip or zstd. A record holding a line break is where Flume and flumen differ, so it is
/// always warned about.
fn format(sink: &Component, hdfs: &mut Vec<String>, w: &mut Vec<String>) {
    let p = &sink.prefix;
    let codec = sink.get("hdfs.codeC");
    match sink.get("hdfs.fileType").unwrap_or("SequenceFile") {
        "DataStream" => {
            if codec.is_some() {
                w.push(format!(
                    "{p}.hdfs.codeC with DataStream is an error in Flume; ignored"
                ));
            }
        }
        "CompressedStream" => match codec {
            Some("gzip") | Some("GzipCodec") => hdfs.push("compression = \"gzip\"".into()),
            Some("zstd") | Some("ZStandardCodec") => hdfs.push("compression = \"zstd\"".into()),
            other => w.push(format!(
                "{p}.hdfs.codeC = {other:?}: only gzip and zstd are supported; writing uncompressed"
            )),
        },
        other => w.push(format!(
            "{p}.hdfs.fileType = {other}: SequenceFile is not supported; writing text (DataStream)"
        )),
    }
    hdfs.push("format = \"text\"".into());
    // Flume splits such a record into two lines without a word; flumen's default halts the
    // partition instead, so a converted pipeline must be told before its first such record.
    w.push(format!(
        "{p}: Flume writes a record holding a line break as two lines; flumen halts the \
         partition on one (hdfs.text_newline_policy = \"fail\"). Set it to \"raw\" for \
         Flume's behaviour, or \"dead_letter\" with hdfs.dead_letter_dir"
    ));
    if let Some(f) = sink.get("hdfs.writeFormat") {
        if f != "Text" {
            w.push(format!(
                "{p}.hdfs.writeFormat = {f}: flumen writes the event bytes as text"
            ));
        }
    }
}

/// The roll limits. Flume's own defaults apply to absent keys, so they are carried
/// explicitly; limits that make many small files are warned about.
fn roll(sink: &Component, hdfs: &mut Vec<String>, w: &mut Vec<String>) {
    let roll = |key: &str, default: &str| sink.get(key).unwrap_or(default).to_string();
    let count = roll("hdfs.rollCount", "10");
    let size = roll("hdfs.rollSize", "1024");
    let interval = roll("hdfs.rollInterval", "30");
    hdfs.push(format!("roll_records_max = {count}"));
    hdfs.push(format!("roll_bytes_max = {size}"));
    hdfs.push(format!("roll_interval_s = {interval}"));
    if count.parse::<u64>().is_ok_and(|c| c > 0 && c < 10_000)
        || size.parse::<u64>().is_ok_and(|s| s > 0 && s < 1 << 20)
    {
        w.push(format!("{}: rollCount={count} / rollSize={size} make many small files in HDFS; consider larger limits", sink.prefix));
    }
    if let Some(v) = sink.get("hdfs.idleTimeout") {
        hdfs.push(format!("idle_timeout_s = {v}"));
    }
}

/// Which clock and time zone the path's escapes use; rounding is not carried.
fn time(sink: &Component, hdfs: &mut Vec<String>, w: &mut Vec<String>) {
    if let Some(v) = sink.get("hdfs.useLocalTimeStamp") {
        hdfs.push(format!(
            "use_local_timestamp = {}",
            v.eq_ignore_ascii_case("true")
        ));
    }
    match sink.get("hdfs.timeZone") {
        None => hdfs.push("time_zone = \"local\"".into()),
        Some(z) if z.eq_ignore_ascii_case("UTC") || z == "GMT" => {
            hdfs.push("time_zone = \"UTC\"".into())
        }
        Some(z) => {
            w.push(format!(
                "{}.hdfs.timeZone = {z}: only UTC and local are supported; using local",
                sink.prefix
            ));
            hdfs.push("time_zone = \"local\"".into());
        }
    }
    if sink
        .get("hdfs.round")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        w.push(format!(
            "{}.hdfs.round*: timestamp rounding is not supported; paths use the exact time",
            sink.prefix
        ));
    }
}

/// The HDFS sink's `hdfs.kerberosPrincipal`, `hdfs.kerberosKeytab` and `hdfs.proxyUser`.
fn kerberos(sink: &Component, hdfs: &mut Vec<String>, w: &mut Vec<String>) {
    let p = &sink.prefix;
    let principal = sink.get("hdfs.kerberosPrincipal");
    let keytab = sink.get("hdfs.kerberosKeytab");
    match (principal, keytab) {
        (Some(pr), Some(kt)) => {
            hdfs.push(format!("kerberos_principal = {}", q(pr)));
            hdfs.push(format!("kerberos_keytab = {}", q(kt)));
            w.push(format!(
                "{p}.hdfs.kerberosPrincipal: Flume read the cluster's client settings \
                 (hdfs-site.xml) from its classpath; flumen reads $HADOOP_CONF_DIR. Without it, \
                 set the cluster's \"dfs.data.transfer.protection\" under [hdfs.properties]"
            ));
        }
        (None, None) => {}
        _ => w.push(format!(
            "{p}.hdfs.kerberosPrincipal and hdfs.kerberosKeytab: Flume needs both and so does \
             flumen; only one is set, so neither is carried over"
        )),
    }
    if let Some(user) = sink.get("hdfs.proxyUser") {
        hdfs.push(format!("user = {}", q(user)));
    }
}
