//! Batched consumption: many messages per librdkafka call instead of one `poll` per message.
//! The only place that holds raw `rd_kafka_message_t` pointers.
//!
//! Design, from librdkafka 2.12.1's source (rdkafka-sys 4.10.0):
//! - Not on the consumer queue. `rd_kafka_consume_batch_queue` serves every non-message op it
//!   meets through `rd_kafka_poll_cb(.., RD_KAFKA_Q_CB_RETURN)` (`rd_kafka_q_serve_rkmessages`,
//!   rdkafka_queue.c). rdkafka-rs asks for rebalances as events and sets no rebalance
//!   callback, so a rebalance op met there would take the "Forcing unassign" branch
//!   (rdkafka.c, `RD_KAFKA_OP_REBALANCE`) and drop the assignment; stats and error ops would
//!   not reach `SourceContext` either.
//! - So each assigned partition's fetch queue is forwarded (`rd_kafka_queue_get_partition`,
//!   `rd_kafka_queue_forward`) to one queue of the source's own ([`MessageQueue`]) right when
//!   the assignment is applied, before the partition is sought or resumed. Its messages and
//!   its consumer errors (out of range included: every `rd_kafka_consumer_err` of a partition
//!   targets `rktp_fetchq`) then land there and are drained in batches; the consumer queue
//!   keeps the events, which `BaseConsumer::poll` still serves exactly as before.
//! - One queue, not one per partition: librdkafka bounds the prefetch
//!   (`queued.max.messages.kbytes`) by the size of the queue a fetch queue forwards to, so one
//!   shared queue keeps today's single consumer-wide bound. Split per partition (forwarded to
//!   nothing), the bound became per partition: 3 partitions peaked at 252-259 MiB against
//!   191 MiB on the same data.
//! - The forward must be renewed. It sets `RD_KAFKA_Q_F_FWD_APP` on the fetch queue, nothing
//!   clears that flag, and `rd_kafka_toppar_op_fetch_start` does not forward a queue that has
//!   it (rdkafka_partition.c): a seek or a re-assign can never send the partition's messages
//!   back to the consumer queue. But a fetch stop (revoke, re-assign) clears the forward
//!   itself, asynchronously, and the next start leaves it cleared: messages then wait in the
//!   partition's fetch queue, in order, until the next forward moves them over. So the
//!   source forwards every owned partition again after a re-assign and once a second.
//! - Outdated messages are still dropped: `rd_kafka_q_serve_rkmessages` discards ops whose
//!   version a pause, seek or stop bumped, purges on barriers, skips control records, and moves
//!   the partition's app position past what it returns, exactly as a poll does.
//! - Messages fetched before the split went to the consumer queue under the fetch-start
//!   version. The assignment is paused and every partition is sought before it is resumed,
//!   which outdates them; `poll` would still hand any such message to `accept` as before.
//!
//! Every message taken is destroyed exactly once, when the batch is cleared, refilled or
//! dropped (also on an early return or a panic while it is being handled).

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::Consumer;

use super::KafkaConsumer;
use crate::wal::TopicPartition;

/// The source's message queue: every assigned partition's fetch queue forwards to it.
pub struct MessageQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// The handle must not outlive the client it belongs to.
    _client: Arc<KafkaConsumer>,
}

// SAFETY: librdkafka queue handles may be used and destroyed from any thread.
unsafe impl Send for MessageQueue {}

impl MessageQueue {
    pub fn new(consumer: &Arc<KafkaConsumer>) -> Self {
        // SAFETY: the client is live; the call returns a new queue we own.
        let raw = unsafe { rd::rd_kafka_queue_new(consumer.client().native_ptr()) };
        Self {
            queue: NonNull::new(raw).expect("rd_kafka_queue_new returned null"),
            _client: consumer.clone(),
        }
    }
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        // SAFETY: our handle, destroyed once; partitions still forwarding to it keep the
        // queue itself alive (forwarding holds a reference).
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// A handle on one partition's fetch queue, to forward it to the [`MessageQueue`].
pub struct PartitionQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
    _client: Arc<KafkaConsumer>,
}

// SAFETY: as for `MessageQueue`.
unsafe impl Send for PartitionQueue {}

impl PartitionQueue {
    /// `tp`'s fetch queue; `None` if librdkafka does not know the partition (its messages
    /// then keep coming through `poll`).
    pub fn of(consumer: &Arc<KafkaConsumer>, tp: &TopicPartition) -> Option<Self> {
        let topic = CString::new(tp.topic.as_str()).ok()?;
        let rk = consumer.client().native_ptr();
        // SAFETY: `rk` is the live client; the call returns a new handle we own, or null.
        let raw = unsafe { rd::rd_kafka_queue_get_partition(rk, topic.as_ptr(), tp.partition) };
        Some(Self {
            queue: NonNull::new(raw)?,
            _client: consumer.clone(),
        })
    }

    /// Forwards the partition's fetch queue to `to` (again: a fetch stop clears the forward).
    /// Ops already waiting in it move over, in order.
    pub fn forward_to(&self, to: &MessageQueue) {
        // SAFETY: both handles are live.
        unsafe { rd::rd_kafka_queue_forward(self.queue.as_ptr(), to.queue.as_ptr()) };
    }
}

impl Drop for PartitionQueue {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and dropped once.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// Messages taken from the message queue, owned until the next `take` or `clear`.
pub struct Batch {
    messages: Vec<*mut rd::rd_kafka_message_t>,
}

// SAFETY: messages may be destroyed from any thread; the batch gives out only shared views.
unsafe impl Send for Batch {}

impl Batch {
    pub fn new(capacity: usize) -> Self {
        Self {
            messages: Vec::with_capacity(capacity.max(1)),
        }
    }

    /// Destroys the messages held, then takes up to the batch's capacity from `q`. librdkafka
    /// returns once the batch is full or `wait` (one deadline for the call) has passed, so a
    /// non-zero wait also waits for a batch that is only part full. Returns how many it took.
    pub fn take(&mut self, q: &MessageQueue, wait: Duration) -> usize {
        self.clear();
        let cap = self.messages.capacity();
        let timeout_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the array has room for `cap` pointers; librdkafka writes `n <= cap` of them
        // and hands each message to us.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(
                q.queue.as_ptr(),
                timeout_ms,
                self.messages.as_mut_ptr(),
                cap,
            )
        };
        let n = usize::try_from(n).unwrap_or(0).min(cap);
        // SAFETY: the first `n` slots were just written with owned message pointers.
        unsafe { self.messages.set_len(n) };
        n
    }

    /// The messages, in queue order.
    pub fn iter(&self) -> impl Iterator<Item = Msg<'_>> {
        self.messages.iter().map(|&m| {
            // SAFETY: every pointer held is a live message owned until `clear`, which needs
            // `&mut self` and so cannot run while a view borrows the batch.
            unsafe { Msg::from_raw(m) }
        })
    }

    /// Destroys every message held, each once.
    pub fn clear(&mut self) {
        for m in self.messages.drain(..) {
            // SAFETY: owned by us and destroyed only here, after `drain` removed it.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A borrowed view of one message (a fetched record or a partition's consumer error).
#[derive(Clone, Copy)]
pub struct Msg<'a> {
    m: &'a rd::rd_kafka_message_t,
}

impl<'a> Msg<'a> {
    /// # Safety
    /// `m` must be a live message for `'a`.
    pub unsafe fn from_raw(m: *const rd::rd_kafka_message_t) -> Self {
        Self { m: &*m }
    }

    pub fn ptr(&self) -> *const rd::rd_kafka_message_t {
        self.m
    }

    pub fn partition(&self) -> i32 {
        self.m.partition
    }

    /// The address of the message's topic handle: equal for two live messages only if they
    /// share the topic.
    pub fn topic_handle(&self) -> usize {
        self.m.rkt as usize
    }

    /// The topic's name; empty if librdkafka gave none or it is not UTF-8 (topic names are
    /// ASCII by Kafka's rules, and flumen asked for them by name).
    pub fn topic(&self) -> &'a str {
        if self.m.rkt.is_null() {
            return "";
        }
        // SAFETY: the message's topic handle lives as long as the message.
        let name = unsafe { std::ffi::CStr::from_ptr(rd::rd_kafka_topic_name(self.m.rkt)) };
        name.to_str().unwrap_or("")
    }

    pub fn offset(&self) -> i64 {
        self.m.offset
    }

    /// The error this message carries instead of a record, if any.
    pub fn error(&self) -> Option<rd::rd_kafka_resp_err_t> {
        let err = self.m.err;
        (err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then_some(err)
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: librdkafka's key pointer and length describe the message's own bytes.
        unsafe { bytes(self.m.key, self.m.key_len) }
    }

    pub fn payload(&self) -> Option<&'a [u8]> {
        // SAFETY: as for `key`.
        unsafe { bytes(self.m.payload, self.m.len) }
    }

    /// The record's timestamp in milliseconds, as rdkafka's `Timestamp::to_millis` gives it.
    pub fn timestamp_ms(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: `m` is live.
        let t = unsafe { rd::rd_kafka_message_timestamp(self.m, &mut kind) };
        let available = kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        (available && t != -1).then_some(t)
    }
}

unsafe fn bytes<'a>(p: *mut std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    (!p.is_null()).then(|| std::slice::from_raw_parts(p as *const u8, len))
}
