//! The Flume channel (memory or file) as flumen's `[channel]` section: flumen's channel is
//! always durable, so only its directory and segment size carry over.

use super::{q, Component, Overrides};

/// Flume channel keys with no flumen equivalent, and what to use instead.
const INSTEAD: [(&str, &str); 4] = [
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
];

/// The channel keys this module reads; any other is warned about as not carried over.
const KNOWN: [&str; 7] = [
    "type",
    "dataDirs",
    "maxFileSize",
    "capacity",
    "transactionCapacity",
    "byteCapacity",
    "checkpointDir",
];

/// The `[channel]` lines: `--channel-dir`, else the file channel's first `dataDirs`, else a
/// directory named after the agent.
pub(super) fn section(
    ch: &Component,
    agent: &str,
    o: &Overrides,
    w: &mut Vec<String>,
) -> Vec<String> {
    let dir = match (o.channel_dir.clone(), ch.get("dataDirs")) {
        (Some(d), _) => d,
        (None, Some(d)) => d.split(',').next().unwrap_or(d).trim().to_string(),
        (None, None) => format!("/var/lib/flumen/{agent}/channel"),
    };
    let mut channel = vec![format!("dir = {}", q(&dir))];
    if ch.get("type").unwrap_or("memory") == "memory" {
        w.push(format!("{}.type = memory: replaced by flumen's durable channel (nothing is lost when the process dies)", ch.prefix));
    }
    if let Some(v) = ch.get("maxFileSize") {
        channel.push(format!("segment_bytes_max = {v}"));
    }
    for (k, why) in INSTEAD {
        if ch.get(k).is_some() {
            w.push(format!("{}.{k}: {why}", ch.prefix));
        }
    }
    for k in ch.unknown(&KNOWN) {
        w.push(format!("{k}: not carried over (no flumen equivalent)"));
    }
    channel
}
