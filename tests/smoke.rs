//! Smoke test of the testbed itself: the real Kafka and the real HDFS behave the way the
//! commit protocol relies on (consumer-group commits; hsync, exclusive rename, read back).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdfs_native::{HdfsError, WriteOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;

#[test]
fn kafka_round_trip_with_group_commit() {
    let tb = common::testbed();
    let topic = common::unique("smoke");
    common::create_topic(tb, &topic, 3);
    let p = common::producer(tb);
    common::produce(&p, &topic, 0, 1000);

    let group = common::unique("smoke-g");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &tb.kafka)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut seen = HashSet::new();
    let mut partitions = HashSet::new();
    let t = Instant::now();
    while seen.len() < 1000 && t.elapsed() < Duration::from_secs(60) {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            partitions.insert(m.partition());
            seen.insert(m.payload().unwrap().to_vec());
        }
    }
    assert_eq!(seen.len(), 1000, "consumed distinct messages");
    assert_eq!(partitions.len(), 3, "keys spread over all partitions");
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    let committed = consumer.committed(Duration::from_secs(10)).unwrap();
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap())
        .sum();
    assert_eq!(total, 1000, "committed offsets cover every message");
}

#[test]
fn hdfs_write_hsync_exclusive_rename_read_back() {
    let tb = common::testbed();
    let client = common::hdfs(tb);
    let rt = common::runtime();
    let base = format!("/smoke/{}", common::unique("h"));
    rt.block_on(async {
        let tmp = format!("{base}/_tmp/part.inprogress");
        let mut w = client
            .create(&tmp, WriteOptions::default().create_parent(true))
            .await
            .unwrap();
        w.write_bytes(Bytes::from_static(b"hello hdfs\n"))
            .await
            .unwrap();
        w.hsync().await.unwrap();
        w.close().await.unwrap();
        client
            .mkdirs(&format!("{base}/final"), 0o755, true)
            .await
            .unwrap();
        let dst = format!("{base}/final/part-0");
        client.rename(&tmp, &dst, false).await.unwrap();
        // A second rename onto the same name must fail: this is the compare-and-set the
        // commit protocol builds on.
        let mut w2 = client
            .create(&tmp, WriteOptions::default().create_parent(true))
            .await
            .unwrap();
        w2.write_bytes(Bytes::from_static(b"other\n"))
            .await
            .unwrap();
        w2.close().await.unwrap();
        let second = client.rename(&tmp, &dst, false).await;
        assert!(
            matches!(second, Err(HdfsError::AlreadyExists(_))),
            "rename onto an existing name must fail, got {second:?}"
        );
        // An exclusive create of an existing path fails too.
        let again = client
            .create(&dst, WriteOptions::default().overwrite(false))
            .await;
        assert!(
            matches!(again, Err(HdfsError::AlreadyExists(_))),
            "{:?}",
            again.err()
        );
        let r = client.read(&dst).await.unwrap();
        let bytes = r.read_range(0, r.file_length()).await.unwrap();
        assert_eq!(&bytes[..], b"hello hdfs\n");
        client.delete(&base, true).await.unwrap();
    });
}
