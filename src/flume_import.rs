//! `flumen import-flume`: converts a Flume agent's properties (Kafka source, memory or file
//! channel, HDFS sink) into a flumen TOML config. Every key that cannot be carried over comes
//! back as a warning with the reason; nothing is dropped silently.

mod security;

use std::collections::BTreeMap;

/// What the conversion produced.
#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    pub warnings: Vec<String>,
}

/// Values the Flume file cannot supply (Kafka 4 has no ZooKeeper; Flume paths may lack a
/// NameNode URL; a memory channel has no directory).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bootstrap_servers: Option<String>,
    pub hdfs_url: Option<String>,
    pub channel_dir: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("agent {0:?} defines no {1}")]
    Missing(String, &'static str),
    #[error("{0}")]
    Unsupported(String),
}

/// Parses Java-properties lines `key = value` (or `key: value`); other lines (comments, prose
/// around a pasted config) are ignored.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(idx) = line.find(['=', ':']) else {
            continue;
        };
        let (k, v) = (line[..idx].trim(), line[idx + 1..].trim());
        if k.is_empty() || k.contains(char::is_whitespace) {
            continue;
        }
        out.insert(k.to_string(), v.to_string());
    }
    out
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

struct Component<'a> {
    prefix: String,
    props: &'a BTreeMap<String, String>,
}

impl Component<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.props
            .get(&format!("{}.{key}", self.prefix))
            .map(String::as_str)
    }
    /// Keys of this component not in `known`, for the "not carried over" warnings.
    fn unknown<'k>(&'k self, known: &'k [&str]) -> impl Iterator<Item = String> + 'k {
        let p = format!("{}.", self.prefix);
        self.props.keys().filter_map(move |k| {
            let rest = k.strip_prefix(&p)?;
            (!known.iter().any(|kn| {
                rest == *kn || (kn.ends_with('*') && rest.starts_with(&kn[..kn.len() - 1]))
            }))
            .then(|| k.clone())
        })
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

fn first_name(
    props: &BTreeMap<String, String>,
    agent: &str,
    kind: &'static str,
) -> Result<String, ImportError> {
    props
        .get(&format!("{agent}.{kind}"))
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .ok_or_else(|| ImportError::Missing(agent.to_string(), kind))
}

/// Where one of the Flume source's `kafka.consumer.*` properties goes.
enum Carry {
    /// A line of flumen's own `[kafka]` section.
    Key(String),
    /// A line of `[kafka.properties]` (librdkafka, verbatim).
    Property(String),
    /// Dropped, with a warning already pushed.
    Nothing,
}

/// Maps one Flume `kafka.consumer.<name> = <value>` (full key `k`). A property that flumen sets
/// itself (`config::RESERVED_PROPERTIES`) never goes to `[kafka.properties]`: there it would be
/// refused by validation, or, before that check existed, silently overridden. It becomes
/// flumen's own key when there is one, else a warning.
/// `sibling` reads another `kafka.consumer.*` value (a store's type beside its location).
fn consumer_property(
    k: &str,
    name: &str,
    v: &str,
    sibling: &dyn Fn(&str) -> Option<String>,
    w: &mut Vec<String>,
) -> Carry {
    if let Some(carry) = security::carry(k, name, v, sibling, w) {
        return carry;
    }
    let numeric = |key: &str, w: &mut Vec<String>| match v.parse::<u64>() {
        Ok(n) => Carry::Key(format!("{key} = {n}")),
        Err(_) => {
            w.push(format!(
                "{k} = {v}: not a number; kafka.{key} keeps its default"
            ));
            Carry::Nothing
        }
    };
    match name {
        // Carried as kafka.group_id with the source's groupId.
        "group.id" => Carry::Nothing,
        "auto.offset.reset" => match v {
            // Flume's Java consumer also accepts the pre-0.9 names.
            "earliest" | "smallest" => Carry::Key("auto_offset_reset = \"earliest\"".into()),
            "latest" | "largest" => Carry::Key("auto_offset_reset = \"latest\"".into()),
            "none" => {
                w.push(format!(
                    "{k} = none: flumen has no `none`; a partition the HDFS ledger has never seen \
                     starts at kafka.auto_offset_reset (default earliest), and offsets lost to \
                     retention always halt their partition instead of being skipped"
                ));
                Carry::Nothing
            }
            other => {
                w.push(format!(
                    "{k} = {other}: unknown value; kafka.auto_offset_reset keeps its default \
                     (earliest)"
                ));
                Carry::Nothing
            }
        },
        "isolation.level" => match v {
            "read_committed" | "read_uncommitted" => {
                Carry::Key(format!("isolation_level = {}", q(v)))
            }
            other => {
                w.push(format!(
                    "{k} = {other}: unknown value; kafka.isolation_level keeps its default \
                     (read_committed)"
                ));
                Carry::Nothing
            }
        },
        "session.timeout.ms" => numeric("session_timeout_ms", w),
        "max.poll.interval.ms" => numeric("max_poll_interval_ms", w),
        "group.instance.id" => Carry::Key(format!("group_instance_id = {}", q(v))),
        "partition.assignment.strategy" => assignment_strategy(k, v, w),
        _ if crate::config::secret::is_secret(name) => secret_property(k, name, v, w),
        _ => match crate::config::RESERVED_PROPERTIES
            .iter()
            .find(|(reserved, _)| *reserved == name)
        {
            Some((_, instead)) => {
                w.push(format!("{k}: flumen sets {name} itself ({instead})"));
                Carry::Nothing
            }
            None => Carry::Property(format!("{} = {}", q(name), q(v))),
        },
    }
}

/// A secret is never copied into the generated config (which is printed, and often kept in
/// version control): it becomes a reference to an environment variable, with a warning that
/// names the variable and never the value. Java's `sasl.jaas.config` (PLAIN or SCRAM login
/// module) becomes librdkafka's `sasl.username` and such a `sasl.password`.
fn secret_property(k: &str, name: &str, v: &str, w: &mut Vec<String>) -> Carry {
    let env_of = security::env_of;
    if name == "sasl.jaas.config" {
        let env = env_of("sasl.password");
        w.push(format!(
            "{k}: a secret, not copied; its password goes in environment variable {env} \
             (or write {{ file = \"...\" }} in its place)"
        ));
        let user = jaas_option(v, "username").unwrap_or_default();
        return Carry::Property(format!(
            "{} = {}\n{} = {{ env = {} }}",
            q("sasl.username"),
            q(&user),
            q("sasl.password"),
            q(&env)
        ));
    }
    let env = env_of(name);
    w.push(format!(
        "{k}: a secret, not copied; set environment variable {env} \
         (or write {{ file = \"...\" }} in its place)"
    ));
    Carry::Property(format!("{} = {{ env = {} }}", q(name), q(&env)))
}

/// `username="alice"` out of a JAAS login-module line.
fn jaas_option(jaas: &str, option: &str) -> Option<String> {
    let start = jaas.find(&format!("{option}=\""))? + option.len() + 2;
    let len = jaas[start..].find('"')?;
    Some(jaas[start..start + len].to_string())
}

/// Flume's Java consumer names assignors by class; librdkafka by short name, and it has no
/// eager `sticky`. flumen's default is `cooperative-sticky`.
fn assignment_strategy(k: &str, v: &str, w: &mut Vec<String>) -> Carry {
    let mut names = Vec::new();
    for class in v.split(',').map(str::trim) {
        match class.rsplit('.').next().unwrap_or(class) {
            "RangeAssignor" | "range" => names.push("range"),
            "RoundRobinAssignor" | "roundrobin" => names.push("roundrobin"),
            "CooperativeStickyAssignor" | "cooperative-sticky" => names.push("cooperative-sticky"),
            other => w.push(format!(
                "{k}: assignor {other} has no librdkafka equivalent; dropped"
            )),
        }
    }
    if names.is_empty() || names == ["cooperative-sticky"] {
        // flumen's default; nothing to carry.
        return Carry::Nothing;
    }
    if names.contains(&"cooperative-sticky") {
        w.push(format!(
            "{k} = {v}: librdkafka cannot mix cooperative and eager assignors; using flumen's \
             default (cooperative-sticky)"
        ));
        return Carry::Nothing;
    }
    w.push(format!(
        "{k} = {v}: carried as {:?}; flumen's default, cooperative-sticky, moves only the \
         partitions that change owner on a rebalance",
        names.join(",")
    ));
    Carry::Property(format!(
        "{} = {}",
        q("partition.assignment.strategy"),
        q(&names.join(","))
    ))
}

pub fn convert(text: &str, agent: &str, o: &Overrides) -> Result<Imported, ImportError> {
    let props = parse_properties(text);
    let mut w = Vec::new();
    let src_name = first_name(&props, agent, "sources")?;
    let ch_name = first_name(&props, agent, "channels")?;
    let sink_name = first_name(&props, agent, "sinks")?;
    for kind in ["sources", "channels", "sinks"] {
        if let Some(v) = props.get(&format!("{agent}.{kind}")) {
            if v.split_whitespace().count() > 1 {
                w.push(format!("{agent}.{kind} lists several; only the first is converted (run one flumen per pipeline)"));
            }
        }
    }
    let src = Component {
        prefix: format!("{agent}.sources.{src_name}"),
        props: &props,
    };
    let ch = Component {
        prefix: format!("{agent}.channels.{ch_name}"),
        props: &props,
    };
    let sink = Component {
        prefix: format!("{agent}.sinks.{sink_name}"),
        props: &props,
    };

    if let Some(t) = src.get("type") {
        if !t.ends_with("KafkaSource") {
            return Err(ImportError::Unsupported(format!(
                "source type {t}: only the Kafka source converts"
            )));
        }
    }
    if let Some(t) = sink.get("type") {
        if t != "hdfs" && !t.ends_with("HDFSEventSink") {
            return Err(ImportError::Unsupported(format!(
                "sink type {t}: only the HDFS sink converts"
            )));
        }
    }

    // [kafka]
    let mut kafka = Vec::new();
    let bootstrap = match (
        o.bootstrap_servers.clone(),
        src.get("kafka.bootstrap.servers"),
    ) {
        (Some(b), _) => b,
        (None, Some(b)) => b.to_string(),
        (None, None) => {
            if src.get("zookeeperConnect").is_some() {
                w.push(format!("{}.zookeeperConnect: Kafka 4 has no ZooKeeper; pass --bootstrap-servers (set to a placeholder)", src.prefix));
            }
            "CHANGE-ME:9092".into()
        }
    };
    if o.bootstrap_servers.is_some() && src.get("zookeeperConnect").is_some() {
        w.push(format!("{}.zookeeperConnect: Kafka 4 has no ZooKeeper; using the given bootstrap servers instead", src.prefix));
    }
    kafka.push(format!("bootstrap_servers = {}", q(&bootstrap)));
    let topics: Vec<String> = src
        .get("kafka.topics")
        .or(src.get("topic"))
        .map(|t| t.split(',').map(|s| q(s.trim())).collect())
        .unwrap_or_default();
    if topics.is_empty() {
        w.push(format!(
            "{}: no kafka.topics or topic; set kafka.topics",
            src.prefix
        ));
    }
    if src.get("kafka.topics.regex").is_some() {
        w.push(format!(
            "{}.kafka.topics.regex: topic patterns are not supported; list the topics",
            src.prefix
        ));
    }
    kafka.push(format!("topics = [{}]", topics.join(", ")));
    let group = src
        .get("kafka.consumer.group.id")
        .or(src.get("groupId"))
        .unwrap_or("flume");
    kafka.push(format!("group_id = {}", q(group)));
    if let Some(v) = src.get("batchSize") {
        kafka.push(format!("batch_records_max = {v}"));
    }
    if let Some(v) = src.get("batchDurationMillis") {
        kafka.push(format!("batch_duration_ms = {v}"));
    }
    let mut passthrough = Vec::new();
    let sibling = |n: &str| src.get(&format!("kafka.consumer.{n}")).map(str::to_string);
    for (k, v) in props.range(format!("{}.kafka.consumer.", src.prefix)..) {
        let Some(name) = k.strip_prefix(&format!("{}.kafka.consumer.", src.prefix)) else {
            break;
        };
        match consumer_property(k, name, v, &sibling, &mut w) {
            Carry::Key(line) => kafka.push(line),
            Carry::Property(line) => passthrough.push(line),
            Carry::Nothing => {}
        }
    }
    for k in src.unknown(&[
        "type",
        "channels",
        "kafka.bootstrap.servers",
        "kafka.topics",
        "topic",
        "kafka.topics.regex",
        "kafka.consumer.*",
        "groupId",
        "batchSize",
        "batchDurationMillis",
        "zookeeperConnect",
    ]) {
        w.push(format!("{k}: not carried over (no flumen equivalent)"));
    }

    // [channel]
    let mut channel = Vec::new();
    let ch_type = ch.get("type").unwrap_or("memory");
    let dir = match (o.channel_dir.clone(), ch.get("dataDirs")) {
        (Some(d), _) => d,
        (None, Some(d)) => d.split(',').next().unwrap_or(d).trim().to_string(),
        (None, None) => format!("/var/lib/flumen/{agent}/channel"),
    };
    channel.push(format!("dir = {}", q(&dir)));
    if ch_type == "memory" {
        w.push(format!("{}.type = memory: replaced by flumen's durable channel (nothing is lost when the process dies)", ch.prefix));
    }
    if let Some(v) = ch.get("maxFileSize") {
        channel.push(format!("segment_bytes_max = {v}"));
    }
    for (k, why) in [
        (
            "capacity",
            "counted in events; flumen bounds the channel in bytes (capacity_bytes_max)",
        ),
        (
            "transactionCapacity",
            "flumen commits whole batches; see kafka.batch_records_max",
        ),
        ("byteCapacity", "see channel.capacity_bytes_max"),
        ("checkpointDir", "flumen's channel needs no checkpoint"),
    ] {
        if ch.get(k).is_some() {
            w.push(format!("{}.{k}: {why}", ch.prefix));
        }
    }
    for k in ch.unknown(&[
        "type",
        "dataDirs",
        "maxFileSize",
        "capacity",
        "transactionCapacity",
        "byteCapacity",
        "checkpointDir",
    ]) {
        w.push(format!("{k}: not carried over (no flumen equivalent)"));
    }

    // [hdfs]
    let mut hdfs = Vec::new();
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
    hdfs.push(format!("url = {}", q(&url)));
    hdfs.push(format!("path = {}", q(&path)));
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
    let file_type = sink.get("hdfs.fileType").unwrap_or("SequenceFile");
    let codec = sink.get("hdfs.codeC");
    match file_type {
        "DataStream" => {
            if codec.is_some() {
                w.push(format!(
                    "{}.hdfs.codeC with DataStream is an error in Flume; ignored",
                    sink.prefix
                ));
            }
        }
        "CompressedStream" => match codec {
            Some("gzip") | Some("GzipCodec") => hdfs.push("compression = \"gzip\"".into()),
            Some("zstd") | Some("ZStandardCodec") => hdfs.push("compression = \"zstd\"".into()),
            other => w.push(format!(
                "{}.hdfs.codeC = {other:?}: only gzip and zstd are supported; writing uncompressed",
                sink.prefix
            )),
        },
        other => w.push(format!(
            "{}.hdfs.fileType = {other}: SequenceFile is not supported; writing text (DataStream)",
            sink.prefix
        )),
    }
    hdfs.push("format = \"text\"".into());
    // Flume splits such a record into two lines without a word; flumen's default halts the
    // partition instead, so a converted pipeline must be told before its first such record.
    w.push(format!(
        "{}: Flume writes a record holding a line break as two lines; flumen halts the \
         partition on one (hdfs.text_newline_policy = \"fail\"). Set it to \"raw\" for \
         Flume's behaviour, or \"dead_letter\" with hdfs.dead_letter_dir",
        sink.prefix
    ));
    if let Some(f) = sink.get("hdfs.writeFormat") {
        if f != "Text" {
            w.push(format!(
                "{}.hdfs.writeFormat = {f}: flumen writes the event bytes as text",
                sink.prefix
            ));
        }
    }
    // Flume's own defaults apply to absent roll keys, so carry them explicitly.
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
    kerberos(&sink, &mut hdfs, &mut w);
    for k in sink.unknown(&[
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
    ]) {
        w.push(format!("{k}: not carried over (no flumen equivalent)"));
    }

    let mut toml =
        format!("# Converted from Flume agent {agent:?} by `flumen import-flume`.\n\n[kafka]\n");
    for l in kafka {
        toml += &format!("{l}\n");
    }
    if !passthrough.is_empty() {
        toml += "\n[kafka.properties]\n";
        for l in passthrough {
            toml += &format!("{l}\n");
        }
    }
    toml += "\n[channel]\n";
    for l in channel {
        toml += &format!("{l}\n");
    }
    toml += "\n[hdfs]\n";
    for l in hdfs {
        toml += &format!("{l}\n");
    }
    // Written out because a second instance on the same host with the default address
    // exits with "Address already in use".
    toml += "\n[metrics]\n\
             # /metrics and /health. Each flumen instance on a host needs its own address\n\
             # (one per converted agent); \"\" disables the endpoint.\n\
             listen = \"127.0.0.1:9464\"\n";
    Ok(Imported { toml, warnings: w })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IsolationLevel, OffsetReset};

    const SEED: &str = include_str!("../tests/data/seed-flume.properties");

    #[test]
    fn kerberos_keys_of_the_hdfs_sink_carry_over() {
        let o = Overrides {
            bootstrap_servers: Some("127.0.0.1:9092".into()),
            hdfs_url: None,
            channel_dir: Some("/tmp/ch".into()),
        };
        let text = format!(
            "{SEED}\nflume1.sinks.hdfs-sink-1.hdfs.kerberosPrincipal = flume/_HOST@EXAMPLE.COM\n\
             flume1.sinks.hdfs-sink-1.hdfs.kerberosKeytab = /etc/security/keytabs/flume.keytab\n\
             flume1.sinks.hdfs-sink-1.hdfs.proxyUser = etl\n"
        );
        let r = convert(&text, "flume1", &o).unwrap();
        let c = crate::config::Settings::parse(&r.toml, std::path::Path::new("imported.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{}", r.toml));
        let k = c.hdfs.kerberos.expect("kerberos carried over");
        assert!(k.principal.starts_with("flume/") && k.principal.ends_with("@EXAMPLE.COM"));
        assert!(!k.principal.contains("_HOST"), "{k:?}");
        assert_eq!(
            k.keytab.as_deref(),
            Some(std::path::Path::new("/etc/security/keytabs/flume.keytab"))
        );
        assert_eq!(c.hdfs.user.as_deref(), Some("etl"));
        assert_eq!(
            c.hdfs.properties["hadoop.security.authentication"],
            "kerberos"
        );
        let all = r.warnings.join("\n");
        assert!(all.contains("dfs.data.transfer.protection"), "{all}");
        assert!(!all.contains("kerberosKeytab: not carried over"), "{all}");

        let half = format!("{SEED}\nflume1.sinks.hdfs-sink-1.hdfs.kerberosKeytab = /k\n");
        let r = convert(&half, "flume1", &o).unwrap();
        assert!(!r.toml.contains("kerberos_keytab"), "{}", r.toml);
        assert!(r.warnings.join("\n").contains("only one is set"));
    }

    #[test]
    fn seed_converts_to_a_valid_config_with_warnings_for_what_it_drops() {
        let o = Overrides {
            bootstrap_servers: Some("127.0.0.1:9092".into()),
            hdfs_url: Some("hdfs://127.0.0.1:9000".into()),
            channel_dir: Some("/tmp/ch".into()),
        };
        let r = convert(SEED, "flume1", &o).unwrap();
        let c = crate::config::Settings::parse(&r.toml, std::path::Path::new("imported.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{}", r.toml));
        assert_eq!(c.kafka.topics, vec!["flume.txn"]);
        assert_eq!(c.kafka.batch_records_max, 100);
        assert_eq!(c.hdfs.roll_records_max, 100);
        assert_eq!(c.hdfs.roll_bytes_max, 0);
        assert_eq!(
            c.hdfs.roll_interval.as_secs(),
            30,
            "Flume's default rollInterval is carried"
        );
        assert_eq!(c.hdfs.file_prefix, "test-events");
        assert_eq!(
            c.hdfs.path.static_prefix(),
            "/user/edureka_960126/flume_kafka"
        );
        assert!(c.hdfs.use_local_timestamp);
        let all = r.warnings.join("\n");
        assert!(
            all.contains("zookeeperConnect") && all.contains("no ZooKeeper"),
            "{all}"
        );
        assert!(all.contains("capacity"), "{all}");
        assert!(all.contains("transactionCapacity"), "{all}");
        assert!(all.contains("type = memory"), "{all}");
    }

    #[test]
    fn without_overrides_placeholders_are_flagged() {
        let r = convert(SEED, "flume1", &Overrides::default()).unwrap();
        assert!(r.toml.contains("CHANGE-ME:9092"));
        assert!(r.warnings.iter().any(|w| w.contains("--bootstrap-servers")));
        assert!(r.warnings.iter().any(|w| w.contains("--hdfs-url")));
    }

    fn overrides() -> Overrides {
        Overrides {
            bootstrap_servers: Some("127.0.0.1:9092".into()),
            hdfs_url: Some("hdfs://127.0.0.1:9000".into()),
            channel_dir: Some("/tmp/ch".into()),
        }
    }

    /// The seed agent plus `kafka.consumer.<name> = <value>` lines; converted and parsed.
    fn with_consumer(lines: &[(&str, &str)]) -> (crate::config::Settings, Imported) {
        let mut text = SEED.to_string();
        for (name, value) in lines {
            text += &format!("flume1.sources.kafka-source-1.kafka.consumer.{name} = {value}\n");
        }
        let r = convert(&text, "flume1", &overrides()).unwrap();
        let c = crate::config::Settings::parse(&r.toml, std::path::Path::new("imported.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{}", r.toml));
        (c, r)
    }

    /// Regression: `kafka.consumer.sasl.jaas.config` was copied as-is, so the converted config
    /// (printed to stdout) and its first `check` leaked the password.
    #[test]
    fn secrets_become_environment_references_and_are_never_printed() {
        let mut text = SEED.to_string();
        let prefix = "flume1.sources.kafka-source-1.kafka.consumer";
        text += &format!(
            "{prefix}.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule \
             required username=\"alice\" password=\"hunter2-jaas\";\n\
             {prefix}.ssl.key.password = hunter2-keypass\n"
        );
        let r = convert(&text, "flume1", &overrides()).unwrap();
        let all = format!("{}\n{}", r.toml, r.warnings.join("\n"));
        assert!(!all.contains("hunter2"), "{all}");
        assert!(
            r.toml.contains("\"sasl.username\" = \"alice\""),
            "{}",
            r.toml
        );
        assert!(
            r.toml
                .contains("\"sasl.password\" = { env = \"FLUMEN_KAFKA_SASL_PASSWORD\" }"),
            "{}",
            r.toml
        );
        assert!(
            r.toml
                .contains("\"ssl.key.password\" = { env = \"FLUMEN_KAFKA_SSL_KEY_PASSWORD\" }"),
            "{}",
            r.toml
        );
        assert!(
            all.contains("set environment variable FLUMEN_KAFKA_SSL_KEY_PASSWORD"),
            "{all}"
        );
    }

    /// Regression: `kafka.consumer.auto.offset.reset = latest` was copied into
    /// `[kafka.properties]`, where flumen's own `auto.offset.reset = error` silently replaced
    /// it, and every new partition started at earliest.
    #[test]
    fn auto_offset_reset_maps_onto_flumens_key() {
        for (flume, flumen) in [
            ("latest", OffsetReset::Latest),
            ("earliest", OffsetReset::Earliest),
            ("largest", OffsetReset::Latest),
            ("smallest", OffsetReset::Earliest),
        ] {
            let (c, r) = with_consumer(&[("auto.offset.reset", flume)]);
            assert_eq!(c.kafka.auto_offset_reset, flumen, "{flume}\n{}", r.toml);
            assert!(!c.kafka.properties.contains_key("auto.offset.reset"));
        }
        let (c, r) = with_consumer(&[("auto.offset.reset", "none")]);
        assert_eq!(c.kafka.auto_offset_reset, OffsetReset::Earliest);
        let all = r.warnings.join("\n");
        assert!(all.contains("auto.offset.reset = none"), "{all}");
        assert!(all.contains("kafka.auto_offset_reset"), "{all}");
    }

    /// No property flumen sets itself reaches `[kafka.properties]` (where it would be refused or
    /// overridden): each becomes flumen's own key or a warning naming it.
    #[test]
    fn properties_flumen_sets_never_pass_through() {
        let value = |name: &str| match name {
            "isolation.level" => "read_uncommitted",
            "auto.offset.reset" => "latest",
            "session.timeout.ms" => "30000",
            "max.poll.interval.ms" => "600000",
            "group.instance.id" => "collector-1",
            _ => "true",
        };
        let lines: Vec<_> = crate::config::RESERVED_PROPERTIES
            .iter()
            .map(|(name, _)| (*name, value(name)))
            .collect();
        let (c, r) = with_consumer(&lines);
        assert!(
            c.kafka.properties.is_empty(),
            "{:?}\n{}",
            c.kafka.properties,
            r.toml
        );
        assert_eq!(c.kafka.isolation_level, IsolationLevel::ReadUncommitted);
        assert_eq!(c.kafka.session_timeout.as_millis(), 30_000);
        assert_eq!(c.kafka.max_poll_interval.as_millis(), 600_000);
        assert_eq!(c.kafka.group_instance_id.as_deref(), Some("collector-1"));
        let all = r.warnings.join("\n");
        for dropped in [
            "enable.auto.commit",
            "enable.auto.offset.store",
            "enable.partition.eof",
        ] {
            assert!(
                all.contains(&format!("flumen sets {dropped} itself")),
                "{all}"
            );
        }
        // Other consumer properties still pass through.
        let (c, _) = with_consumer(&[("fetch.min.bytes", "1024")]);
        assert_eq!(c.kafka.properties["fetch.min.bytes"], "1024");
    }

    #[test]
    fn java_assignor_classes_map_to_librdkafka_names() {
        let class = "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
        let (c, _) = with_consumer(&[("partition.assignment.strategy", class)]);
        assert!(
            c.kafka.properties.is_empty(),
            "flumen's default needs no property"
        );
        let class = "org.apache.kafka.clients.consumer.RangeAssignor";
        let (c, r) = with_consumer(&[("partition.assignment.strategy", class)]);
        assert_eq!(c.kafka.properties["partition.assignment.strategy"], "range");
        assert!(r.warnings.iter().any(|w| w.contains("cooperative-sticky")));
        let class = "org.apache.kafka.clients.consumer.StickyAssignor";
        let (c, r) = with_consumer(&[("partition.assignment.strategy", class)]);
        assert!(c.kafka.properties.is_empty());
        assert!(r.warnings.iter().any(|w| w.contains("StickyAssignor")));
    }

    /// Regression: without a `[metrics]` section the second converted agent on a host started
    /// on the default address and exited with "Address already in use".
    #[test]
    fn metrics_section_is_emitted_with_its_one_per_instance_note() {
        let (c, r) = with_consumer(&[]);
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        let section = &r.toml[r.toml.find("[metrics]").expect("a [metrics] section")..];
        assert!(section.contains("Each flumen instance on a host needs its own address"));
    }

    /// The TLS and SASL settings of a Flume agent on a SASL_SSL cluster: what librdkafka
    /// shares is carried, a JKS truststore becomes the PEM file the warning's keytool command
    /// writes, Java-only settings are dropped with a warning, and the result parses (each
    /// property accepted by librdkafka's own parser).
    #[test]
    fn tls_and_sasl_settings_map_onto_librdkafka() {
        let (c, r) = with_consumer(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("ssl.truststore.location", "/etc/kafka/truststore.jks"),
            ("ssl.truststore.type", "JKS"),
            ("ssl.keystore.location", "/etc/kafka/client.p12"),
            ("ssl.keystore.type", "PKCS12"),
            ("ssl.endpoint.identification.algorithm", ""),
            ("ssl.enabled.protocols", "TLSv1.2,TLSv1.3"),
        ]);
        let p = &c.kafka.properties;
        let get = |k: &str| p.get(k).map(String::as_str);
        assert_eq!(get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(get("ssl.ca.location"), Some("/etc/kafka/truststore.pem"));
        assert_eq!(get("ssl.keystore.location"), Some("/etc/kafka/client.p12"));
        assert_eq!(get("ssl.endpoint.identification.algorithm"), Some("none"));
        for java_only in [
            "ssl.truststore.location",
            "ssl.truststore.type",
            "ssl.keystore.type",
        ] {
            assert_eq!(get(java_only), None, "{java_only} carried:\n{}", r.toml);
        }
        assert_eq!(get("ssl.enabled.protocols"), None);
        let all = r.warnings.join("\n");
        assert!(
            all.contains(
                "keytool -list -rfc -keystore /etc/kafka/truststore.jks -storetype JKS > \
                 /etc/kafka/truststore.pem"
            ),
            "{all}"
        );
        assert!(
            all.contains("ssl.enabled.protocols: a setting of the Java TLS stack"),
            "{all}"
        );
        assert!(!all.contains("client.p12: librdkafka reads no"), "{all}");
    }

    /// Store passwords go to environment variables like every secret; a JKS keystore is
    /// carried as the PKCS12 file of the exact keytool command in the warning.
    #[test]
    fn a_jks_keystore_is_converted_and_store_passwords_are_never_copied() {
        let mut text = SEED.to_string();
        let prefix = "flume1.sources.kafka-source-1.kafka.consumer";
        for (name, value) in [
            ("ssl.truststore.location", "/etc/kafka/truststore.jks"),
            ("ssl.truststore.password", "hunter2-trust"),
            ("ssl.keystore.location", "/etc/kafka/client.keystore.jks"),
            ("ssl.keystore.password", "hunter2-store"),
            ("ssl.key.password", "hunter2-key"),
        ] {
            text += &format!("{prefix}.{name} = {value}\n");
        }
        let r = convert(&text, "flume1", &overrides()).unwrap();
        let all = format!("{}\n{}", r.toml, r.warnings.join("\n"));
        assert!(!all.contains("hunter2"), "{all}");
        for line in [
            "\"ssl.keystore.location\" = \"/etc/kafka/client.keystore.p12\"",
            "\"ssl.keystore.password\" = { env = \"FLUMEN_KAFKA_SSL_KEYSTORE_PASSWORD\" }",
            "\"ssl.ca.location\" = \"/etc/kafka/truststore.pem\"",
        ] {
            assert!(r.toml.contains(line), "no {line} in\n{}", r.toml);
        }
        assert!(!r.toml.contains("ssl.truststore.password"), "{}", r.toml);
        assert!(
            all.contains(
                "keytool -importkeystore -srckeystore /etc/kafka/client.keystore.jks \
                 -srcstoretype JKS -srcstorepass:env FLUMEN_KAFKA_SSL_KEYSTORE_PASSWORD \
                 -destkeystore /etc/kafka/client.keystore.p12 -deststoretype PKCS12 \
                 -deststorepass:env FLUMEN_KAFKA_SSL_KEYSTORE_PASSWORD"
            ),
            "{all}"
        );
        assert!(
            all.contains(
                "-storepass:env FLUMEN_KAFKA_SSL_TRUSTSTORE_PASSWORD > /etc/kafka/truststore.pem"
            ),
            "{all}"
        );
    }

    /// A Kerberos login (`Krb5LoginModule`) is no password: its keytab and principal become
    /// librdkafka's `sasl.kerberos.*`, where the SCRAM/PLAIN path would have made an empty
    /// `sasl.username` and an environment reference for a password that does not exist.
    #[test]
    fn a_kerberos_jaas_login_becomes_sasl_kerberos_properties() {
        let (c, r) = with_consumer(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "GSSAPI"),
            ("sasl.kerberos.service.name", "kafka"),
            (
                "sasl.jaas.config",
                "com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true \
                 storeKey=true keyTab=\"/etc/security/flume.keytab\" \
                 principal=\"flume/edge1@EXAMPLE.COM\";",
            ),
        ]);
        let p = &c.kafka.properties;
        let get = |k: &str| p.get(k).map(String::as_str);
        assert_eq!(
            get("sasl.kerberos.keytab"),
            Some("/etc/security/flume.keytab")
        );
        assert_eq!(
            get("sasl.kerberos.principal"),
            Some("flume/edge1@EXAMPLE.COM")
        );
        assert_eq!(get("sasl.kerberos.service.name"), Some("kafka"));
        assert_eq!(get("sasl.password"), None);
        assert_eq!(get("sasl.username"), None);
        assert!(r
            .warnings
            .join("\n")
            .contains("libsasl2-modules-gssapi-mit"));
    }

    #[test]
    fn unknown_agent_is_an_error() {
        assert!(convert(SEED, "nope", &Overrides::default()).is_err());
    }
}
