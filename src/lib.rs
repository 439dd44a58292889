//! flumen: an exactly-once relay from Apache Kafka through a durable local channel into HDFS.
//!
//! Data flows one way: `source` (Kafka) -> `wal` (local channel) -> `sink` (HDFS files) ->
//! `commit` (the exactly-once file commit). `relay` wires them together. See ARCHITECTURE.md.

pub mod commit;
pub mod config;
pub mod events;
pub mod health;
pub mod http;
pub mod relay;
pub mod sink;
pub mod source;
pub mod tools;
pub mod wal;
