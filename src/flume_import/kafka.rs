//! The Kafka source: its keys as flumen's `[kafka]` section, and its `kafka.consumer.*`
//! properties as `[kafka.properties]` (librdkafka's), flumen's own keys or warnings.

use super::{q, security, Carry, Component, Overrides};

/// The source keys this module reads; any other is warned about as not carried over.
const KNOWN: [&str; 11] = [
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
];

/// The `[kafka]` lines and the `[kafka.properties]` lines.
pub(super) fn section(
    src: &Component,
    o: &Overrides,
    w: &mut Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let mut kafka = vec![
        format!("bootstrap_servers = {}", q(&bootstrap(src, o, w))),
        topics(src, w),
    ];
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
    let passthrough = consumer_properties(src, &mut kafka, w);
    for k in src.unknown(&KNOWN) {
        w.push(format!("{k}: not carried over (no flumen equivalent)"));
    }
    (kafka, passthrough)
}

/// `--bootstrap-servers`, else the source's `kafka.bootstrap.servers`, else a placeholder.
/// Flume's old `zookeeperConnect` has no Kafka 4 equivalent either way.
fn bootstrap(src: &Component, o: &Overrides, w: &mut Vec<String>) -> String {
    let zookeeper = src.get("zookeeperConnect").is_some();
    let p = &src.prefix;
    match (
        o.bootstrap_servers.clone(),
        src.get("kafka.bootstrap.servers"),
    ) {
        (Some(b), _) => {
            if zookeeper {
                w.push(format!("{p}.zookeeperConnect: Kafka 4 has no ZooKeeper; using the given bootstrap servers instead"));
            }
            b
        }
        (None, Some(b)) => b.to_string(),
        (None, None) => {
            if zookeeper {
                w.push(format!("{p}.zookeeperConnect: Kafka 4 has no ZooKeeper; pass --bootstrap-servers (set to a placeholder)"));
            }
            "CHANGE-ME:9092".into()
        }
    }
}

/// The `topics` line, from `kafka.topics` or the old `topic`; patterns are not carried.
fn topics(src: &Component, w: &mut Vec<String>) -> String {
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
    format!("topics = [{}]", topics.join(", "))
}

/// Each `kafka.consumer.*` property, in key order: a line pushed onto `kafka`, a returned
/// `[kafka.properties]` line, or a warning.
fn consumer_properties(
    src: &Component,
    kafka: &mut Vec<String>,
    w: &mut Vec<String>,
) -> Vec<String> {
    let mut passthrough = Vec::new();
    let prefix = format!("{}.kafka.consumer.", src.prefix);
    let sibling = |n: &str| src.get(&format!("kafka.consumer.{n}")).map(str::to_string);
    for (k, v) in src.props.range(prefix.clone()..) {
        let Some(name) = k.strip_prefix(&prefix) else {
            break;
        };
        match consumer_property(k, name, v, &sibling, w) {
            Carry::Key(line) => kafka.push(line),
            Carry::Property(line) => passthrough.push(line),
            Carry::Nothing => {}
        }
    }
    passthrough
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
        let user = security::jaas_option(v, "username").unwrap_or_default();
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
