//! The Kafka prefetch's memory budget (`kafka.prefetch_memory_bytes_max`) turned into the
//! librdkafka properties that bound it. ARCHITECTURE.md ("Invariants") states the same formula.
//!
//! What librdkafka holds (issue 12's measurements, librdkafka 2.12):
//! - `queued.max.messages.kbytes` (Q) counts the *values* queued in the whole consumer (the
//!   partition queues forward into one), not librdkafka's ~300 B per message of bookkeeping
//!   (`rd_kafka_op_t`) nor the decompressed producer batch each message keeps alive;
//! - it is checked *before* a fetch, so one response adds up to `fetch.max.bytes` (F) of
//!   *compressed* bytes on top, that is F x the compression ratio of values.
//!
//! So: memory ≈ (Q + F x ratio) x per-value-byte cost, with the cost
//! (`MESSAGE_OVERHEAD_BYTES` + `BUFFER_FACTOR` x value) / value for values of `VALUE_BYTES`
//! (5 for 100-byte events: 120 MB measured for 25 MB of counted values). Half the budget goes
//! to the queue, half to one fetch response. `queued.min.messages` caps the queued count too,
//! so smaller values cannot multiply the per-message overhead beyond the budget.

/// librdkafka's bookkeeping per queued message (`rd_kafka_op_t` and its message), measured.
const MESSAGE_OVERHEAD_BYTES: u64 = 300;
/// The value size the budget is sized for: the 100-byte events. Smaller values cost
/// more per byte; the count limit (`queued.min.messages`) covers them in the queue.
const VALUE_BYTES: u64 = 100;
/// Value bytes per queued value byte held by decompressed producer batches (values, keys,
/// record framing, and batches kept alive by their last queued message): 44.8 MB for 25 MB.
const BUFFER_FACTOR: u64 = 2;
/// Memory per counted value byte, for values of `VALUE_BYTES`: 5.
const COST_PER_VALUE_BYTE: u64 = BUFFER_FACTOR + MESSAGE_OVERHEAD_BYTES / VALUE_BYTES;
/// Compression ratio a fetch response is sized for (lz4 on the bench's events measured 7.5).
/// A higher real ratio overshoots the response's share by that factor.
const COMPRESSION_RATIO: u64 = 8;
/// librdkafka's `message.max.bytes` default and floor, and its `max.partition.fetch.bytes`
/// default: the derived values never exceed what librdkafka would use anyway.
const MESSAGE_MAX_DEFAULT: u64 = 1_000_000;
const MESSAGE_MAX_FLOOR: u64 = 1_000;
const PARTITION_FETCH_DEFAULT: u64 = 1 << 20;
/// `fetch.queue.backoff.ms`: how long the fetcher idles once the queue is full. librdkafka's
/// default 1000 ms capped consumers at 100-200k ev/s with an idle CPU (librdkafka #3662): the
/// queue filled, the fetcher slept, the poll loop emptied it in far less. It is sized to half
/// the time a consumer draining this rate (2M events/s of 100 bytes) empties the queue.
const DRAIN_BYTES_PER_MS: u64 = 200_000;
const BACKOFF_MS_MAX: u64 = 10;
/// librdkafka's upper limit of `queued.min.messages`.
const QUEUED_MESSAGES_MAX: u64 = 10_000_000;

/// The librdkafka properties one budget sets, by name, in the order they are applied.
pub const PROPERTIES: [&str; 6] = [
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "fetch.max.bytes",
    "message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.queue.backoff.ms",
];

/// The derived values; a property the user set keeps the user's value (see `derive`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefetch {
    pub properties: Vec<(&'static str, String)>,
}

/// The properties for `budget` bytes of prefetch memory. `user` answers a property the user
/// set in `[kafka.properties]`: that value wins and the others are made consistent with it
/// (librdkafka refuses `fetch.max.bytes` below `message.max.bytes`).
pub fn derive(budget: u64, user: impl Fn(&str) -> Option<String>) -> Prefetch {
    let number = |name: &str| user(name).and_then(|v| v.trim().parse::<u64>().ok());
    let values = budget / COST_PER_VALUE_BYTE;
    let queue = (values / 2).max(1024);
    let user_message_max = number("message.max.bytes");
    let fetch = number("fetch.max.bytes").unwrap_or_else(|| {
        let f = (values / 2 / COMPRESSION_RATIO).max(MESSAGE_MAX_FLOOR);
        f.max(user_message_max.unwrap_or(0))
    });
    let message_max = fetch.min(MESSAGE_MAX_DEFAULT);
    let backoff = (queue / DRAIN_BYTES_PER_MS / 2).clamp(1, BACKOFF_MS_MAX);
    let derived = [
        queue / 1024,
        (queue / VALUE_BYTES).min(QUEUED_MESSAGES_MAX),
        fetch,
        message_max,
        fetch.min(PARTITION_FETCH_DEFAULT),
        backoff,
    ];
    let properties = PROPERTIES
        .iter()
        .zip(derived)
        .filter(|(name, _)| user(name).is_none())
        .map(|(name, v)| (*name, v.to_string()))
        .collect();
    Prefetch { properties }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(p: &Prefetch, name: &str) -> Option<u64> {
        p.properties
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.parse().unwrap())
    }

    /// The default budget's figures, and the formula holding: queue plus one response at the
    /// assumed ratio, times the cost per value byte, is within the budget.
    #[test]
    fn the_budget_bounds_queue_plus_one_response() {
        for budget in [1u64 << 20, 16 << 20, 256 << 20, 16 << 30] {
            let p = derive(budget, |_| None);
            let q = get(&p, "queued.max.messages.kbytes").unwrap() * 1024;
            let f = get(&p, "fetch.max.bytes").unwrap();
            assert!(
                (q + f * COMPRESSION_RATIO) * COST_PER_VALUE_BYTE <= budget,
                "{budget}"
            );
            assert!(get(&p, "message.max.bytes").unwrap() <= f);
            assert!(get(&p, "max.partition.fetch.bytes").unwrap() <= f);
            let backoff = get(&p, "fetch.queue.backoff.ms").unwrap();
            assert!((1..=10).contains(&backoff));
        }
        let p = derive(16 << 20, |_| None);
        assert_eq!(get(&p, "queued.max.messages.kbytes"), Some(1638));
        assert_eq!(get(&p, "fetch.max.bytes"), Some(209_715));
        assert_eq!(get(&p, "queued.min.messages"), Some(16_777));
    }

    /// A property the user set is not derived; `fetch.max.bytes` follows a user's
    /// `message.max.bytes` up, and `message.max.bytes` a user's `fetch.max.bytes` down.
    #[test]
    fn user_properties_win_and_stay_consistent() {
        let p = derive(16 << 20, |k| {
            (k == "message.max.bytes").then(|| "1000000".into())
        });
        assert_eq!(get(&p, "message.max.bytes"), None);
        assert_eq!(get(&p, "fetch.max.bytes"), Some(1_000_000));
        let p = derive(16 << 20, |k| {
            (k == "fetch.max.bytes").then(|| "50000".into())
        });
        assert_eq!(get(&p, "fetch.max.bytes"), None);
        assert_eq!(get(&p, "message.max.bytes"), Some(50_000));
        assert_eq!(get(&p, "max.partition.fetch.bytes"), Some(50_000));
    }
}
