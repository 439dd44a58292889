//! flumen: an exactly-once relay from Apache Kafka through a durable local channel into HDFS.
//!
//! Data flows one way: `source` (Kafka) -> `wal` (local channel) -> `sink` (HDFS files) ->
//! `commit` (the exactly-once file commit). `relay` wires them together. See ARCHITECTURE.md.

pub mod wal;
