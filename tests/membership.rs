//! Group membership against the real Kafka and HDFS: static membership (a restart after
//! kill -9 takes its partitions back, a graceful stop keeps them, a duplicate id is fenced
//! loudly) and incremental (cooperative-sticky) rebalances.

mod common;

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use common::{assert_exactly_once, spawn_relay, testbed};

const LANDING_LIMIT: Duration = Duration::from_secs(180);

/// Longer than `LANDING_LIMIT`: a member that had to wait for its dead predecessor's session
/// to expire could not deliver in time, so landing proves the partitions came straight back.
const SESSION_LONGER_THAN_LANDING_MS: u64 = 240_000;

/// The group as the broker describes it: (assignment protocol, member ids).
fn describe_group(group: &str) -> (String, Vec<String>) {
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &testbed().kafka)
        .create()
        .expect("admin consumer");
    let list = consumer
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("describe group {group}: {e}"));
    let info = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .unwrap_or_else(|| panic!("group {group} not described"));
    let members = info.members().iter().map(|m| m.id().to_string()).collect();
    (info.protocol().to_string(), members)
}

/// A case whose relay is a static member with its own `kafka.group_instance_id` (returned) and a
/// session longer than any landing wait.
fn static_member(prefix: &str) -> (common::Case, String) {
    let mut c = common::Case::new(prefix);
    let instance = common::unique("collector");
    c.cfg.session_timeout_ms = SESSION_LONGER_THAN_LANDING_MS;
    c.cfg.extra_kafka = format!("group_instance_id = \"{instance}\"\n");
    c.rewrite();
    (c, instance)
}

#[test]
fn static_member_restarted_after_kill9_takes_its_partitions_back_exactly_once() {
    let tb = testbed();
    let (c, instance) = static_member("static");
    let p = common::producer(tb);
    let client = common::hdfs(tb);
    common::produce(&p, &c.cfg.topic, 0, 1500);
    let mut relay = spawn_relay(&c.config, None);
    common::wait_landed(&client, &c.cfg.hdfs_path, 1500, LANDING_LIMIT);
    // A backlog in flight (fetched, in the channel, in open files) when the member dies.
    common::produce(&p, &c.cfg.topic, 1500, 3000);
    std::thread::sleep(Duration::from_millis(1500));
    relay.kill9();

    let mut relay = spawn_relay(&c.config, None);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 3000, LANDING_LIMIT);
    assert_exactly_once(&landed, 3000);
    let log = relay.log_text();
    assert!(
        log.contains("kind=\"assign\" partitions=3"),
        "the restarted member did not get the whole assignment back:\n{log}"
    );
    // The restart replaced the dead member instead of joining beside it.
    let (_, members) = describe_group(&c.cfg.group);
    assert_eq!(members.len(), 1, "members: {members:?}");
    assert!(members[0].starts_with(&instance), "members: {members:?}");

    // The documented trade-off: a static member does not leave the group when it stops
    // gracefully; its partitions wait for the session timeout (or its return).
    relay.signal(libc::SIGTERM);
    let status = relay
        .wait_for(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", relay.log_text());
    let (_, members) = describe_group(&c.cfg.group);
    assert_eq!(
        members.len(),
        1,
        "a static member left on SIGTERM: {members:?}"
    );
}

/// Two instances configured with the same `kafka.group_instance_id`: the broker fences the
/// one that joined first. It must stop non-zero naming the key, not idle with a dead client;
/// the other delivers everything exactly once.
#[test]
fn a_duplicate_group_instance_id_stops_the_fenced_instance_naming_the_key() {
    let tb = testbed();
    let mut c = common::Case::new("dup-id");
    c.cfg.extra_kafka = format!("group_instance_id = \"{}\"\n", common::unique("twin"));
    c.rewrite();
    let work = common::workdir();
    let mut second = c.cfg.clone();
    second.channel = work.path().join("channel-2");
    let second_path = work.path().join("second.toml");
    second.write(tb, &second_path);

    let p = common::producer(tb);
    common::produce(&p, &c.cfg.topic, 0, 1000);
    let mut first = spawn_relay(&c.config, None);
    first.wait_log("partition reconciled", 3, Duration::from_secs(60));
    let _second = spawn_relay(&second_path, None);
    let status = first.wait_for(Duration::from_secs(90));
    let log = first.log_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the fenced instance must exit non-zero: {status:?}\n{log}"
    );
    assert!(log.contains("kafka.group_instance_id"), "{log}");
    common::produce(&p, &c.cfg.topic, 1000, 2000);
    let client = common::hdfs(tb);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 2000, LANDING_LIMIT);
    assert_exactly_once(&landed, 2000);
}

/// The default assignor is cooperative-sticky: when a second member joins, the first gives up
/// only the partition that moves and keeps fetching the others (eager assignors revoke all
/// three and reconcile them again).
#[test]
fn a_joining_member_moves_only_the_partitions_that_change_owner() {
    let tb = testbed();
    let c = common::Case::new("coop");
    let work = common::workdir();
    let mut second = c.cfg.clone();
    second.channel = work.path().join("channel-2");
    let second_path = work.path().join("second.toml");
    second.write(tb, &second_path);

    let p = common::producer(tb);
    common::produce(&p, &c.cfg.topic, 0, 1500);
    let first = spawn_relay(&c.config, None);
    first.wait_log("partition reconciled", 3, Duration::from_secs(60));
    let joiner = spawn_relay(&second_path, None);
    joiner.wait_log("partition reconciled", 1, Duration::from_secs(60));
    common::produce(&p, &c.cfg.topic, 1500, 3000);
    let client = common::hdfs(tb);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 3000, LANDING_LIMIT);
    assert_exactly_once(&landed, 3000);

    let (protocol, members) = describe_group(&c.cfg.group);
    assert_eq!(protocol, "cooperative-sticky");
    assert_eq!(members.len(), 2, "members: {members:?}");
    let log = first.log_text();
    assert!(
        !log.contains("kind=\"revoke\" partitions=3"),
        "the first member gave up its whole assignment:\n{log}"
    );
    assert!(
        log.contains("kind=\"revoke\" partitions=1"),
        "the first member never handed one partition over:\n{log}"
    );
    // Only the partitions it was first assigned were reconciled: nothing was revoked and
    // reassigned to it.
    assert_eq!(log.matches("partition reconciled").count(), 3, "{log}");
    drop(joiner);
}

/// A static member restarted within its session timeout with a changed `kafka.topics`: the
/// coordinator hands it its previous assignment without a rebalance (KAFKA-12759, classic
/// protocol). It must not consume the old topic, must say why, and must end up with the
/// topic it is configured for, exactly once, well before its session could time out.
#[test]
fn a_static_member_restarted_with_other_topics_consumes_the_new_ones() {
    restart_with_other_topics(false);
}

/// As above, with the old topic deleted meanwhile: the stale assignment names partitions that
/// no longer exist (a relay used to retry reconciling them for ever).
#[test]
fn a_static_member_whose_old_topic_is_deleted_consumes_the_new_one() {
    restart_with_other_topics(true);
}

fn restart_with_other_topics(delete_old: bool) {
    let tb = testbed();
    let (mut c, _) = static_member("retopic-a");
    let old_topic = c.cfg.topic.clone();
    let p = common::producer(tb);
    let client = common::hdfs(tb);
    common::produce(&p, &old_topic, 0, 300);
    let mut relay = spawn_relay(&c.config, None);
    common::wait_landed(&client, &c.cfg.hdfs_path, 300, LANDING_LIMIT);
    relay.stop_gracefully(Duration::from_secs(30));

    let new_topic = common::unique("retopic-b");
    common::create_topic(tb, &new_topic, 3);
    common::produce(&p, &new_topic, 0, 300);
    if delete_old {
        common::delete_topic(tb, &old_topic);
    } else {
        // Records of the old topic that only a member still reading it would deliver.
        common::produce(&p, &old_topic, 300, 400);
    }
    let old_path = c.cfg.hdfs_path.clone();
    c.cfg.topic = new_topic.clone();
    c.cfg.hdfs_path = format!("/flumen-tests/{new_topic}/out");
    c.rewrite();
    let relay = spawn_relay(&c.config, None);
    let landed = common::wait_landed(&client, &c.cfg.hdfs_path, 300, LANDING_LIMIT);
    let log = relay.log_text();
    assert_exactly_once(&landed, 300);
    let old = common::runtime().block_on(common::read_landed(&client, &old_path));
    assert_exactly_once(&old, 300);
    // The stale assignment was seen, named and never consumed.
    let named = format!("partitions of topics not in kafka.topics [\"{new_topic}\"]");
    assert!(log.contains(&named), "{log}");
    assert!(log.contains("KAFKA-12759"), "{log}");
    assert!(
        !log.contains(&format!("partition={old_topic}")),
        "the restarted member worked on its old topic:\n{log}"
    );
    assert_eq!(log.matches("partition reconciled").count(), 3, "{log}");
    assert!(
        log.contains("assignment matches kafka.topics again"),
        "{log}"
    );
}

/// Two static members restarted with other topics. The follower comes back first and is
/// handed its share of the old topic; unlike the leader, it cannot make the group rebalance
/// by rejoining (KAFKA-12759), so it must leave. The new topic lands exactly once.
#[test]
fn two_static_members_restarted_with_other_topics_share_the_new_one() {
    let tb = testbed();
    let (mut c, _) = static_member("retopic-2a");
    let old_topic = c.cfg.topic.clone();
    let work = common::workdir();
    let mut second = c.cfg.clone();
    second.channel = work.path().join("channel-2");
    second.extra_kafka = format!("group_instance_id = \"{}\"\n", common::unique("collector"));
    let second_path = work.path().join("second.toml");
    second.write(tb, &second_path);
    let p = common::producer(tb);
    let client = common::hdfs(tb);
    common::produce(&p, &old_topic, 0, 300);
    let mut first = spawn_relay(&c.config, None);
    let mut other = spawn_relay(&second_path, None);
    common::wait_landed(&client, &c.cfg.hdfs_path, 300, LANDING_LIMIT);
    other.wait_log("partition reconciled", 1, Duration::from_secs(60));
    first.stop_gracefully(Duration::from_secs(30));
    other.stop_gracefully(Duration::from_secs(30));

    let new_topic = common::unique("retopic-2b");
    common::create_topic(tb, &new_topic, 3);
    common::produce(&p, &new_topic, 0, 300);
    let new_path = format!("/flumen-tests/{new_topic}/out");
    for (cfg, path) in [(&mut c.cfg, &c.config), (&mut second, &second_path)] {
        cfg.topic = new_topic.clone();
        cfg.hdfs_path = new_path.clone();
        cfg.write(tb, path);
    }
    // The member that joined second (a follower: the group's leader is its first member)
    // comes back first, into a Stable group that hands it its old partitions.
    let other = spawn_relay(&second_path, None);
    other.wait_log(
        "partitions of topics not in kafka.topics",
        1,
        Duration::from_secs(60),
    );
    let first = spawn_relay(&c.config, None);
    let landed = common::wait_landed(&client, &new_path, 300, LANDING_LIMIT);
    let logs = format!("{}\n{}", first.log_text(), other.log_text());
    assert_exactly_once(&landed, 300);
    assert!(
        !logs.contains(&format!("partition={old_topic}")),
        "a restarted member worked on the old topic:\n{logs}"
    );
}
