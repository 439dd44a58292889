//! `flumen import-flume`: converts a Flume agent's properties (Kafka source, memory or file
//! channel, HDFS sink) into a flumen TOML config. Every key that cannot be carried over comes
//! back as a warning with the reason; nothing is dropped silently.

mod channel;
mod hdfs;
mod kafka;
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

/// Converts `agent`'s first source, channel and sink; every key not carried over comes back
/// as a warning.
pub fn convert(text: &str, agent: &str, o: &Overrides) -> Result<Imported, ImportError> {
    let props = parse_properties(text);
    let mut w = Vec::new();
    let [src, ch, sink] = components(&props, agent, &mut w)?;
    check_types(&src, &sink)?;
    let (kafka, passthrough) = kafka::section(&src, o, &mut w);
    let channel = channel::section(&ch, agent, o, &mut w);
    let hdfs = hdfs::section(&sink, agent, o, &mut w)?;
    let toml = render(
        agent,
        &[
            ("kafka", kafka),
            ("kafka.properties", passthrough),
            ("channel", channel),
            ("hdfs", hdfs),
        ],
    );
    Ok(Imported { toml, warnings: w })
}

/// The agent's first source, channel and sink; a warning for each kind that lists several.
fn components<'a>(
    props: &'a BTreeMap<String, String>,
    agent: &str,
    w: &mut Vec<String>,
) -> Result<[Component<'a>; 3], ImportError> {
    let names = [
        first_name(props, agent, "sources")?,
        first_name(props, agent, "channels")?,
        first_name(props, agent, "sinks")?,
    ];
    for kind in ["sources", "channels", "sinks"] {
        if let Some(v) = props.get(&format!("{agent}.{kind}")) {
            if v.split_whitespace().count() > 1 {
                w.push(format!("{agent}.{kind} lists several; only the first is converted (run one flumen per pipeline)"));
            }
        }
    }
    let [src, ch, sink] = names;
    Ok([
        format!("{agent}.sources.{src}"),
        format!("{agent}.channels.{ch}"),
        format!("{agent}.sinks.{sink}"),
    ]
    .map(|prefix| Component { prefix, props }))
}

/// Only a Kafka source and an HDFS sink convert (an absent type is taken to be one).
fn check_types(src: &Component, sink: &Component) -> Result<(), ImportError> {
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
    Ok(())
}

/// The TOML: each non-empty section in order, then `[metrics]`.
fn render(agent: &str, sections: &[(&str, Vec<String>)]) -> String {
    let mut toml = format!("# Converted from Flume agent {agent:?} by `flumen import-flume`.\n");
    for (name, lines) in sections.iter().filter(|(_, lines)| !lines.is_empty()) {
        toml += &format!("\n[{name}]\n");
        for l in lines {
            toml += &format!("{l}\n");
        }
    }
    // Written out because a second instance on the same host with the default address
    // exits with "Address already in use".
    toml += "\n[metrics]\n\
             # /metrics and /health. Each flumen instance on a host needs its own address\n\
             # (one per converted agent); \"\" disables the endpoint.\n\
             listen = \"127.0.0.1:9464\"\n";
    toml
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
