//! flumen: an exactly-once relay from Apache Kafka through a durable local channel into HDFS.
//!
//! Data flows one way: `source` (Kafka) -> `wal` (local channel) -> `sink` (HDFS files) ->
//! `commit` (the exactly-once file commit). `relay` wires them together. See ARCHITECTURE.md.

pub mod check;
pub mod commit;
pub mod completeness;
pub mod config;
pub mod events;
pub mod flume_import;
pub mod hdfs;
pub mod hdfs_fault;
pub mod hdfs_window;
pub mod health;
pub mod http;
pub mod kerberos;
pub mod poison;
pub mod relay;
pub mod repair;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod tools;
pub mod wal;

/// A named crash site (see wal-format.md, "Crash analysis"). With the `failpoints` feature and
/// `FAILPOINTS=<name>=return`, the process aborts there, as abruptly as kill -9: no destructor,
/// flush or fsync runs. Without the feature this compiles to nothing.
#[macro_export]
macro_rules! crash_site {
    ($name:literal) => {
        fail::fail_point!($name, |_| {
            eprintln!("flumen: failpoint {} hit: aborting", $name);
            std::process::abort()
        })
    };
}
