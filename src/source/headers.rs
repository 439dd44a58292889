//! Reads a consumed record's headers as bytes. rdkafka's `Headers::iter` turns each name into a
//! `&str` with `unwrap`, so a name that is not UTF-8 panicked the Kafka thread; and librdkafka's
//! public API gives a name only as a C string, so a name holding a NUL (`a\0b`) was cut at it.
//! Kafka promises neither: header names are bytes, and so are they here.

use std::ffi::{c_char, c_void, CStr};

use rdkafka::bindings as rd;

use super::batch::Msg;

#[cfg(test)]
use crate::wal::Header;

/// Every header of `m`, in order, duplicates included, names and values as bytes borrowed
/// from the message (librdkafka parses its headers once and keeps them with the message).
pub fn borrow<'m>(m: &Msg<'m>) -> Borrowed<'m> {
    // SAFETY: `m.ptr()` is the live message `m` borrows.
    if unsafe { surely_none(m.ptr()) } {
        return Borrowed::empty();
    }
    let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m.ptr()` is the live message `m` borrows; librdkafka parses its headers (once)
    // and keeps them with the message, which lives for `'m`.
    let err = unsafe { rd::rd_kafka_message_headers(m.ptr(), &mut hdrs) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
        // `_NOENT`: the record has no headers
        return Borrowed::empty();
    }
    // SAFETY: `hdrs` is the message's live headers object, alive as long as `m`.
    unsafe { Borrowed::new(hdrs) }
}

#[cfg(test)]
fn owned((key, value): (&[u8], Option<&[u8]>)) -> Header {
    Header {
        key: key.to_vec(),
        value: value.map(<[u8]>::to_vec),
    }
}

/// The start of librdkafka's private `rd_kafka_msg_t` (rdkafka_msg.h, 2.12.1) as a fetched
/// message has it, up to the unparsed header block: `rd_kafka_message_t` first, then
/// `rkm_link` (two pointers), `rkm_flags`, `rkm_tstype`, `rkm_timestamp`, `rkm_headers`,
/// `rkm_status`, `rkm_broker_id`, and the union whose consumer side is `binhdrs`
/// (`rd_kafkap_bytes_t`: i32 length, data pointer, one inline byte) and `leader_epoch`.
#[repr(C)]
struct MsgPrefix {
    message: rd::rd_kafka_message_t,
    link: [*mut c_void; 2],
    flags: i32,
    tstype: i32,
    timestamp: i64,
    headers: *mut c_void,
    status: i32,
    broker_id: i32,
    binhdrs_len: i32,
    binhdrs_data: *const u8,
    binhdrs_inline: u8,
    leader_epoch: i32,
}

/// The librdkafka release `MsgPrefix` was read from (2.12.1, bundled by rdkafka-sys 4.10.0).
const LAYOUT_VERSION: i32 = 0x020c_01ff;

/// True only when the linked librdkafka is the release whose private layout `MsgPrefix`
/// mirrors; any other release (a dependency update, a dynamically linked build) always parses.
fn layout_known() -> bool {
    static KNOWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: rd_kafka_version takes no arguments and reads a constant.
    *KNOWN.get_or_init(|| unsafe { rd::rd_kafka_version() } == LAYOUT_VERSION)
}

/// librdkafka's `RD_KAFKA_MSG_F_PRODUCER`.
const MSG_F_PRODUCER: i32 = 0x40000;

/// True only when `m` certainly holds no headers, so the caller may skip
/// `rd_kafka_message_headers`: it allocates twice per message (a shadow buffer to parse the
/// header count) even when the count is 0, because a v2 record always carries the count.
///
/// A fetched v2 record's unparsed header block (`binhdrs`) starts right after its value
/// (`rdkafka_msgset_reader.c`: key, value, then the rest of the record is the headers), and
/// a block of exactly one byte 0 is a header count of 0 (zigzag varint). The private fields
/// are believed only when every field around them matches what the public API answers for
/// this message (headers not parsed yet, a consumer message, the broker id, the timestamp and
/// its type, the leader epoch) and the block starts exactly where the value ends. Anything
/// else, a null value (tombstone) included, answers false and the headers are parsed as
/// before: a wrong layout can only cost the two allocations, never a header.
/// `Borrowed` is checked against the real thing by the `records` integration suite.
///
/// # Safety
/// `m` must be a live message fetched by a consumer.
unsafe fn surely_none(m: *const rd::rd_kafka_message_t) -> bool {
    let value = (*m).payload as *const u8;
    let ok = rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
    if !layout_known() || value.is_null() || (*m).rkt.is_null() || (*m).err != ok {
        return false;
    }
    let rkm = &*(m as *const MsgPrefix);
    let mut tstype = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    let timestamp = rd::rd_kafka_message_timestamp(m, &mut tstype);
    let fields_match = rkm.headers.is_null()
        && rkm.flags & MSG_F_PRODUCER == 0
        && rkm.broker_id == rd::rd_kafka_message_broker_id(m)
        && rkm.leader_epoch == rd::rd_kafka_message_leader_epoch(m)
        && rkm.tstype == tstype as i32
        && rkm.timestamp == timestamp;
    fields_match
        && rkm.binhdrs_len == 1
        && rkm.binhdrs_data == value.add((*m).len)
        && *rkm.binhdrs_data == 0
}

/// The headers of one message as (name, value) byte slices, in order.
pub struct Borrowed<'m> {
    hdrs: *const rd::rd_kafka_headers_t,
    next: usize,
    count: usize,
    _message: std::marker::PhantomData<&'m ()>,
}

impl Borrowed<'_> {
    fn empty() -> Self {
        Self {
            hdrs: std::ptr::null(),
            next: 0,
            count: 0,
            _message: std::marker::PhantomData,
        }
    }

    /// # Safety
    /// `hdrs` must be a live librdkafka headers object for the lifetime of the result.
    unsafe fn new(hdrs: *const rd::rd_kafka_headers_t) -> Self {
        Self {
            hdrs,
            next: 0,
            count: rd::rd_kafka_header_cnt(hdrs),
            _message: std::marker::PhantomData,
        }
    }
}

impl<'m> Iterator for Borrowed<'m> {
    type Item = (&'m [u8], Option<&'m [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        let idx = self.next;
        self.next += 1;
        let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0);
        // SAFETY: `hdrs` is live for `'m` (see `new`) and `idx` is below its count.
        let err = unsafe {
            rd::rd_kafka_header_get_all(self.hdrs, idx, &mut name, &mut value, &mut size)
        };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            // Not reachable below the count; refuse loudly rather than lose a header.
            panic!("librdkafka refused header {idx} of {}: {err:?}", self.count);
        }
        // SAFETY: what `rd_kafka_header_get_all` just returned, owned by `hdrs` for `'m`.
        unsafe {
            let name = name_bytes(name, value, size);
            let value =
                (!value.is_null()).then(|| std::slice::from_raw_parts(value as *const u8, size));
            Some((name, value))
        }
    }
}

/// # Safety
/// `hdrs` must be a live librdkafka headers object for the duration of the call.
#[cfg(test)]
pub(crate) unsafe fn read_native(hdrs: *const rd::rd_kafka_headers_t) -> Vec<Header> {
    Borrowed::new(hdrs).map(owned).collect()
}

/// A header name's bytes, NULs included.
///
/// librdkafka's private `rd_kafka_header_t` (rdkafka_header.h, the same since headers arrived
/// in 0.11.4) is `{ size_t ser_size; size_t value_size; size_t name_size; char *value;
/// char name[]; }`, and `rd_kafka_header_get_all` returns a pointer to its `name` field. The
/// length of a name holding a NUL is only in `name_size`, so it is read from there, but only
/// when the fields beside it are exactly what `get_all` returned (`value`, `value_size`),
/// `ser_size` is the size librdkafka derives from the two lengths, and the name's terminating
/// NUL sits at `name_size`. Any other layout falls back to the C string (cut at a NUL).
/// `headers_keep_nul_names_through_librdkafka` checks the layout against the linked library.
///
/// # Safety
/// `name`, `value` and `size` must be what `rd_kafka_header_get_all` just returned.
unsafe fn name_bytes<'a>(name: *const c_char, value: *const c_void, size: usize) -> &'a [u8] {
    let c_string = CStr::from_ptr(name).to_bytes();
    let field = |back: usize| (name as *const usize).sub(back).read_unaligned();
    let (ser_size, value_size, name_size) = (field(4), field(3), field(2));
    let stored_value = field(1) as *const c_void;
    let plausible = stored_value == value
        && value_size == size
        && name_size >= c_string.len()
        && Some(ser_size) == serialized_size(name_size, value_size)
        && (value.is_null() || value == name.add(name_size + 1) as *const c_void);
    if !plausible || *name.add(name_size) != 0 {
        return c_string;
    }
    std::slice::from_raw_parts(name as *const u8, name_size)
}

/// librdkafka's `rkhdr_ser_size`: both lengths as zigzag varints, plus the bytes.
fn serialized_size(name_size: usize, value_size: usize) -> Option<usize> {
    let varint = |n: usize| -> Option<usize> {
        let zigzag = (n as u64).checked_mul(2)?;
        Some(((64 - zigzag.leading_zeros() as usize).max(1)).div_ceil(7))
    };
    name_size
        .checked_add(value_size)?
        .checked_add(varint(name_size)?)?
        .checked_add(varint(value_size)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new librdkafka turns the header skip off (always correct, two allocations more per
    /// message): this fails so that `MsgPrefix` is checked against the new `rdkafka_msg.h`
    /// and `LAYOUT_VERSION` moved with it.
    #[test]
    fn the_header_skip_knows_the_linked_librdkafka() {
        let v = unsafe { rd::rd_kafka_version() };
        assert!(
            layout_known(),
            "librdkafka {v:#010x}: review MsgPrefix, then LAYOUT_VERSION"
        );
    }
    use rdkafka::message::{BorrowedHeaders, OwnedHeaders};

    /// Headers made by the linked librdkafka's own `rd_kafka_header_add`, as the consumer
    /// makes them from a fetched record.
    fn native(headers: &[(&[u8], Option<&[u8]>)]) -> OwnedHeaders {
        let owned = OwnedHeaders::new();
        // `BorrowedHeaders` is a view whose address is the native headers object.
        let ptr = owned.as_borrowed() as *const BorrowedHeaders as *mut rd::rd_kafka_headers_t;
        for (k, v) in headers {
            let (vp, vl) = v.map_or((std::ptr::null(), 0), |v| (v.as_ptr(), v.len() as isize));
            // SAFETY: `ptr` is the live headers object of `owned`; librdkafka copies both.
            let err = unsafe {
                rd::rd_kafka_header_add(ptr, k.as_ptr().cast(), k.len() as isize, vp.cast(), vl)
            };
            assert_eq!(err, rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
        }
        owned
    }

    /// Regression: a header name that is not UTF-8 panicked the Kafka thread (rdkafka's
    /// iterator unwraps a `Utf8Error`), and a name holding a NUL was cut at it, so `a\0b` and
    /// `a\0c` both became `a`. This also checks the header layout `name_bytes` relies on.
    #[test]
    fn headers_keep_nul_names_through_librdkafka() {
        let long = vec![b'n'; 300]; // a two-byte varint length
        let input: Vec<(&[u8], Option<&[u8]>)> = vec![
            (b"a", Some(b"1")),
            (b"a", Some(b"2")),
            (b"a\0b", Some(b"x")),
            (b"a\0c", None),
            (&[0xff, 0xc3, 0x28], Some(&[0x00, 0xff])),
            (b"", Some(b"")),
            (&long, Some(&long)),
            (b"\0", None),
        ];
        let owned = native(&input);
        let ptr = owned.as_borrowed() as *const BorrowedHeaders as *const rd::rd_kafka_headers_t;
        // SAFETY: `owned` lives until the end of the test.
        let got = unsafe { read_native(ptr) };
        let want: Vec<Header> = input
            .iter()
            .map(|(k, v)| Header {
                key: k.to_vec(),
                value: v.map(<[u8]>::to_vec),
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn serialized_size_matches_librdkafka_varints() {
        assert_eq!(serialized_size(0, 0), Some(2));
        assert_eq!(serialized_size(3, 1), Some(6));
        assert_eq!(serialized_size(63, 0), Some(65)); // zigzag 126: one byte
        assert_eq!(serialized_size(64, 0), Some(67)); // zigzag 128: two bytes
        assert_eq!(serialized_size(usize::MAX, 0), None);
    }
}
