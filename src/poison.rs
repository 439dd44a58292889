//! Poison records: a record the relay will not write into an HDFS file as it is, why, and what
//! the configuration says to do about it. The source (which halts a partition under `fail`,
//! so no poison record enters the channel) and the sink (which diverts `dead_letter` records
//! and counts `raw` ones) both ask [`Rules::judge`], so they can never disagree.
//!
//! Imports only `wal`, so the layering source → wal → sink holds: both sides import this.

use std::fmt;

/// What to do with a poison record (`kafka.oversized_record_policy`,
/// `hdfs.text_newline_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Deliver everything before it, then halt the partition loudly.
    Fail,
    /// Write it whole to `hdfs.dead_letter_dir` and go on.
    DeadLetter,
    /// Write it as it is (Flume's behaviour for line breaks), counted and warned about.
    Raw,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Fail => "fail",
            Policy::DeadLetter => "dead_letter",
            Policy::Raw => "raw",
        }
    }
}

/// Why a record is poison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poison {
    /// The value is above `kafka.record_bytes_max`.
    Oversized { bytes: usize, max: usize },
    /// `format = "text"` and the value holds `\n` or `\r` (Hadoop's and so Spark's text
    /// reader end a line at either) at byte `at`: one record would read as two.
    TextLineBreak { at: usize },
    /// `format = "parquet"` with a value schema, and the value does not fit it (not JSON, a
    /// field of another type, a missing field that is not nullable). Judged by the sink's
    /// encoder, not by [`Rules::judge`]: always diverted, so the source never halts on it.
    ValueSchemaMisfit,
}

impl Poison {
    /// The `reason` label of `flumen_poison_records_total`.
    pub fn label(self) -> &'static str {
        match self {
            Poison::Oversized { .. } => "oversized",
            Poison::TextLineBreak { .. } => "text_line_break",
            Poison::ValueSchemaMisfit => "value_schema_misfit",
        }
    }

    /// What an operator sets to let such records through, for messages.
    pub fn fix(self) -> &'static str {
        match self {
            Poison::Oversized { .. } => {
                "set kafka.oversized_record_policy = \"dead_letter\" and hdfs.dead_letter_dir to \
                 divert such records"
            }
            Poison::TextLineBreak { .. } => {
                "set hdfs.text_newline_policy = \"dead_letter\" and hdfs.dead_letter_dir to \
                 divert such records (or \"raw\" to write them as Flume does, or use \
                 format = \"jsonl\")"
            }
            Poison::ValueSchemaMisfit => {
                "fix the producer or widen hdfs.parquet.value_schema (a nullable field, \
                 another type)"
            }
        }
    }
}

impl fmt::Display for Poison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Poison::Oversized { bytes, max } => {
                write!(f, "is {bytes} bytes, above kafka.record_bytes_max ({max})")
            }
            Poison::TextLineBreak { at } => write!(
                f,
                "holds a line break at byte {at}, which format = \"text\" would split into \
                 two lines"
            ),
            Poison::ValueSchemaMisfit => write!(f, "does not fit hdfs.parquet.value_schema"),
        }
    }
}

/// The configured rules, shared by the source and the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub record_bytes_max: usize,
    /// `Fail` or `DeadLetter`.
    pub oversized: Policy,
    /// `None` unless `hdfs.format = "text"`: JSON escapes line breaks.
    pub text_line_break: Option<Policy>,
}

impl Rules {
    pub fn from_settings(c: &crate::config::Settings) -> Self {
        use crate::config::{Format, OversizedRecordPolicy, TextNewlinePolicy};
        Self {
            record_bytes_max: c.kafka.record_bytes_max,
            oversized: match c.kafka.oversized_record_policy {
                OversizedRecordPolicy::Fail => Policy::Fail,
                OversizedRecordPolicy::DeadLetter => Policy::DeadLetter,
            },
            text_line_break: (c.hdfs.format == Format::Text).then_some(
                match c.hdfs.text_newline_policy {
                    TextNewlinePolicy::Fail => Policy::Fail,
                    TextNewlinePolicy::DeadLetter => Policy::DeadLetter,
                    TextNewlinePolicy::Raw => Policy::Raw,
                },
            ),
        }
    }

    /// Whether a record with this value is poison, why, and what to do with it. Size first:
    /// an oversized record is not searched for line breaks.
    pub fn judge(&self, value: Option<&[u8]>) -> Option<(Poison, Policy)> {
        let value = value.unwrap_or_default();
        if value.len() > self.record_bytes_max {
            let p = Poison::Oversized {
                bytes: value.len(),
                max: self.record_bytes_max,
            };
            return Some((p, self.oversized));
        }
        let policy = self.text_line_break?;
        // Every record of a text partition passes here, twice (source and sink): SIMD search.
        let at = memchr::memchr2(b'\n', b'\r', value)?;
        Some((Poison::TextLineBreak { at }, policy))
    }

    /// The poison the source must halt on (policy `fail`), if any.
    pub fn halts(&self, value: Option<&[u8]>) -> Option<Poison> {
        match self.judge(value) {
            Some((p, Policy::Fail)) => Some(p),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: Option<Policy>) -> Rules {
        Rules {
            record_bytes_max: 8,
            oversized: Policy::Fail,
            text_line_break: text,
        }
    }

    #[test]
    fn oversized_is_judged_on_the_value_length_only_above_the_limit() {
        let r = rules(None);
        assert_eq!(r.judge(Some(b"12345678")), None);
        assert_eq!(r.judge(None), None);
        assert_eq!(
            r.judge(Some(b"123456789")),
            Some((Poison::Oversized { bytes: 9, max: 8 }, Policy::Fail))
        );
        assert_eq!(
            r.halts(Some(b"123456789")),
            Some(Poison::Oversized { bytes: 9, max: 8 })
        );
        let dl = Rules {
            oversized: Policy::DeadLetter,
            ..r
        };
        assert_eq!(dl.halts(Some(b"123456789")), None);
        assert_eq!(dl.judge(Some(b"123456789")).unwrap().1, Policy::DeadLetter);
    }

    /// Regression: in `text`, a record holding `\n` or `\r\n` became two lines (Spark read two
    /// records) without a word. Hadoop's LineReader also ends a line at a lone `\r`.
    #[test]
    fn text_line_breaks_are_poison_only_in_text() {
        let r = rules(Some(Policy::Fail));
        for (v, at) in [(&b"a\nb"[..], 1), (b"ab\r\nc", 2), (b"\rx", 0)] {
            assert_eq!(
                r.judge(Some(v)),
                Some((Poison::TextLineBreak { at }, Policy::Fail))
            );
        }
        assert_eq!(r.judge(Some(b"a\tb\0c")), None, "tabs and NULs are bytes");
        assert_eq!(r.judge(None), None);
        assert_eq!(rules(None).judge(Some(b"a\nb")), None, "jsonl escapes them");
        let raw = rules(Some(Policy::Raw));
        assert_eq!(raw.halts(Some(b"a\nb")), None);
        assert_eq!(raw.judge(Some(b"a\nb")).unwrap().1, Policy::Raw);
    }

    #[test]
    fn size_wins_over_a_line_break() {
        let r = rules(Some(Policy::DeadLetter));
        assert_eq!(
            r.judge(Some(b"a\nbcdefghij")),
            Some((Poison::Oversized { bytes: 11, max: 8 }, Policy::Fail))
        );
    }

    #[test]
    fn messages_name_the_key_that_fixes_it() {
        let o = Poison::Oversized { bytes: 9, max: 8 };
        assert_eq!(
            o.to_string(),
            "is 9 bytes, above kafka.record_bytes_max (8)"
        );
        assert!(o
            .fix()
            .contains("kafka.oversized_record_policy = \"dead_letter\""));
        assert!(Poison::TextLineBreak { at: 0 }
            .fix()
            .contains("hdfs.text_newline_policy = \"dead_letter\""));
    }
}
