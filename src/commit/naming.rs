//! Every HDFS name the ledger uses, built and parsed in one place. The layout and the meaning
//! of each name are specified in `wal-format.md` §6.
//!
//! ```text
//! <state>/ledger/<topic>/<partition>/genesis/v1.start.<first:020>.<token>
//! <state>/ledger/<topic>/<partition>/<first:020>/v1.file.<last:020>.<token>/<final path…>
//! <state>/ledger/<topic>/<partition>/<first:020>/v1.skip.<last:020>.<token>
//! <state>/ledger/<topic>/<partition>/.staging/<token>/data
//! ```

use crate::wal::TopicPartition;

/// The genesis slot's name: it fixes the partition's first offset once.
pub const GENESIS: &str = "genesis";
/// Staging area of a partition: in-use files and claims being built.
pub const STAGING: &str = ".staging";
/// The in-use file inside a staging directory.
pub const DATA: &str = "data";
/// Version tag of the entry names this code writes.
const VERSION: &str = "v1";

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// The partition starts at the entry's first offset (genesis slot only).
    Start,
    /// `[first, last]` is delivered as one HDFS file.
    File,
    /// `[first, last]` was skipped by an operator: gone from the channel and from Kafka.
    Skip,
}

impl EntryKind {
    fn as_str(self) -> &'static str {
        match self {
            EntryKind::Start => "start",
            EntryKind::File => "file",
            EntryKind::Skip => "skip",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "start" => Some(EntryKind::Start),
            "file" => Some(EntryKind::File),
            "skip" => Some(EntryKind::Skip),
            _ => None,
        }
    }
}

/// The parsed name of an entry's single child:
/// `v1.<kind>.<offset:020>.<token>[.w<watermark>][.s<sealer>]`. The offset is the range's
/// last offset (`File`, `Skip`) or the first offset (`Start`). The two optional fields serve
/// completeness markers (`wal-format.md` §6.6): `watermark` is the partition's event-time
/// watermark in ms through this entry, `sealer` the token of the writer that claims the next
/// range on the strength of this watermark. A name is changed only by a rename of the whole
/// child (a compare-and-set), and only while the entry is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    pub kind: EntryKind,
    pub offset: i64,
    pub token: String,
    pub watermark: Option<i64>,
    pub sealer: Option<String>,
}

impl EntryMeta {
    /// An entry without watermark or seal.
    pub fn new(kind: EntryKind, offset: i64, token: String) -> Self {
        Self {
            kind,
            offset,
            token,
            watermark: None,
            sealer: None,
        }
    }

    pub fn name(&self) -> String {
        let mut name = format!(
            "{VERSION}.{}.{:020}.{}",
            self.kind.as_str(),
            self.offset,
            self.token
        );
        if let Some(w) = self.watermark {
            name.push_str(&format!(".w{w}"));
        }
        if let Some(s) = &self.sealer {
            name.push_str(&format!(".s{s}"));
        }
        name
    }

    pub fn parse(name: &str) -> Option<Self> {
        let mut parts = name.splitn(4, '.');
        if parts.next()? != VERSION {
            return None;
        }
        let kind = EntryKind::parse(parts.next()?)?;
        let offset = parts.next()?.parse().ok()?;
        let mut rest = parts.next()?.split('.');
        let token = rest.next()?.to_string();
        if token.is_empty() {
            return None;
        }
        let mut meta = Self::new(kind, offset, token);
        for field in rest {
            match field.split_at_checked(1)? {
                ("w", ms) if meta.watermark.is_none() && meta.sealer.is_none() => {
                    meta.watermark = Some(ms.parse().ok()?)
                }
                ("s", t) if meta.sealer.is_none() && !t.is_empty() => {
                    meta.sealer = Some(t.to_string())
                }
                _ => return None,
            }
        }
        Some(meta)
    }
}

/// The slot name of a range starting at `first`: zero-padded so names sort by offset.
pub fn slot_name(first: i64) -> String {
    format!("{first:020}")
}

/// A slot's first offset, or None for `genesis`, `.staging` and anything else.
pub fn parse_slot(name: &str) -> Option<i64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// A fresh token naming one writer's attempt at one file or entry.
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Paths of one partition's ledger.
#[derive(Debug, Clone)]
pub struct PartitionPaths {
    pub dir: String,
}

impl PartitionPaths {
    pub fn new(root: &str, tp: &TopicPartition) -> Self {
        Self {
            dir: format!("{root}/{}/{}", tp.topic, tp.partition),
        }
    }
    pub fn slot(&self, first: i64) -> String {
        format!("{}/{}", self.dir, slot_name(first))
    }
    pub fn genesis(&self) -> String {
        format!("{}/{GENESIS}", self.dir)
    }
    pub fn staging(&self, token: &str) -> String {
        format!("{}/{STAGING}/{token}", self.dir)
    }
    pub fn staging_root(&self) -> String {
        format!("{}/{STAGING}", self.dir)
    }
    pub fn staged_data(&self, token: &str) -> String {
        format!("{}/{DATA}", self.staging(token))
    }
}

/// `dir/name` split at its last `/`; the parent of a top-level path is `/`.
pub fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((d, _)) => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_names_round_trip() {
        let m = EntryMeta::new(EntryKind::File, 1234, new_token());
        assert_eq!(EntryMeta::parse(&m.name()), Some(m.clone()));
        let w = EntryMeta {
            watermark: Some(-5),
            ..m.clone()
        };
        assert_eq!(w.name(), format!("{}.w-5", m.name()));
        assert_eq!(EntryMeta::parse(&w.name()), Some(w.clone()));
        let sealed = EntryMeta {
            watermark: Some(1_732_475_107_000),
            sealer: Some("abc".into()),
            ..m.clone()
        };
        assert_eq!(EntryMeta::parse(&sealed.name()), Some(sealed.clone()));
        let seal_only = EntryMeta {
            sealer: Some("abc".into()),
            ..m.clone()
        };
        assert_eq!(EntryMeta::parse(&seal_only.name()), Some(seal_only));
        // Fields in the wrong order, twice, empty or unknown do not parse.
        assert_eq!(EntryMeta::parse(&format!("{}.sabc.w5", m.name())), None);
        assert_eq!(EntryMeta::parse(&format!("{}.w5.w6", m.name())), None);
        assert_eq!(EntryMeta::parse(&format!("{}.s", m.name())), None);
        assert_eq!(EntryMeta::parse(&format!("{}.x1", m.name())), None);
        assert_eq!(EntryMeta::parse(&format!("{}.wx", m.name())), None);
        assert_eq!(EntryMeta::parse("v2.file.00000000000000001234.abc"), None);
        assert_eq!(EntryMeta::parse("v1.file.00000000000000001234."), None);
        assert_eq!(EntryMeta::parse("v1.nope.00000000000000001234.abc"), None);
    }

    #[test]
    fn slots_sort_by_offset_and_skip_other_names() {
        assert_eq!(parse_slot(&slot_name(42)), Some(42));
        assert!(slot_name(9) < slot_name(10));
        assert_eq!(parse_slot(GENESIS), None);
        assert_eq!(parse_slot(STAGING), None);
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(parent("/a"), "/");
    }
}
