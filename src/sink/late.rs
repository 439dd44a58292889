//! The sink's part of completeness markers (`wal-format.md` §6.6): which directory a record
//! goes to (its time bucket, or the late path once its partition's watermark passed the
//! bucket's horizon), what a file's commit must know about event time, and the note that a
//! bucket has data waiting for its marker.

use crate::commit::Marks;
use crate::events;
use crate::wal::TopicPartition;

use super::bucket::Rule;
use super::path::PathTemplate;

/// `[hdfs.completeness]` as the sink needs it.
#[derive(Debug, Clone)]
pub struct Completeness {
    pub rule: Rule,
    /// Where late records go, rendered like `hdfs.path`.
    pub late_path: PathTemplate,
    /// `<state>/completeness/pending`: a bucket directory with data waiting for its marker
    /// is noted here (see [`pending_note`]).
    pub pending_dir: String,
}

impl Completeness {
    pub fn from_settings(c: &crate::config::Settings) -> Option<Self> {
        let k = c.hdfs.completeness.as_ref()?;
        Some(Self {
            rule: k.rule,
            late_path: k.late_path.clone(),
            pending_dir: pending_dir(&c.hdfs.state_dir),
        })
    }
}

/// `<state>/completeness/pending`.
pub fn pending_dir(state_dir: &str) -> String {
    format!("{state_dir}/completeness/pending")
}

/// Where one record goes: the event-time facts of the file it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Late: rendered from the late path, and counted.
    pub late: bool,
    /// The watermark at which the record's file becomes late (its bucket's end plus the allowed
    /// lateness); `None` for a late file or without completeness.
    pub horizon_ms: Option<i64>,
}

/// The route of a record at `time_ms` for a partition whose watermark is `watermark`.
pub fn route(c: Option<&Completeness>, time_ms: i64, watermark: Option<i64>) -> Route {
    match c {
        None => Route {
            late: false,
            horizon_ms: None,
        },
        Some(c) if c.rule.is_late(time_ms, watermark) => Route {
            late: true,
            horizon_ms: None,
        },
        Some(c) => Route {
            late: false,
            horizon_ms: Some(c.rule.horizon_ms(time_ms)),
        },
    }
}

/// Whether the partition's watermark has reached the horizon of the file's bucket: its next
/// record must be routed again (to the late path) rather than appended.
pub fn passed(route: Route, watermark: Option<i64>) -> bool {
    route
        .horizon_ms
        .is_some_and(|h| watermark.is_some_and(|w| h <= w))
}

/// Renders the record's directory: its bucket, or the late path.
pub fn render(
    path: &PathTemplate,
    c: Option<&Completeness>,
    route: Route,
    tp: &TopicPartition,
    time_ms: i64,
    utc: bool,
) -> String {
    match c {
        Some(c) if route.late => c.late_path.render(&tp.topic, tp.partition, time_ms, utc),
        _ => path.render(&tp.topic, tp.partition, time_ms, utc),
    }
}

/// Counts a record written to the late path.
pub fn note_late(tp: &TopicPartition, route: Route) {
    if route.late {
        events::late_record(tp);
    }
}

/// The event-time part of a file's commit: `Marks` sealing the predecessor when completeness
/// is on, nothing otherwise.
pub fn marks(
    c: Option<&Completeness>,
    route: Route,
    before: Option<i64>,
    max: Option<i64>,
) -> Marks {
    match c {
        None => Marks::default(),
        Some(_) => Marks {
            file_max_ms: max,
            before_ms: before,
            horizon_ms: route.horizon_ms,
            seal: true,
        },
    }
}

/// The pending note of a bucket file: `<pending>/<end:020>/<dir…>`, an empty directory made
/// before the file is claimed, so the marker task learns which directories to mark without
/// listing the data tree. `None` for a late file or without completeness.
pub fn pending_note(c: Option<&Completeness>, route: Route, dir: &str) -> Option<String> {
    let c = c?;
    let horizon = route.horizon_ms?;
    let end = horizon - c.rule.lateness_ms;
    Some(format!("{}/{end:020}{dir}", c.pending_dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::bucket::Width;

    fn c() -> Completeness {
        Completeness {
            rule: Rule {
                width: Width::Minute,
                lateness_ms: 5_000,
            },
            late_path: PathTemplate::parse("/d/_late/%Y%m%d/%H%M").unwrap(),
            pending_dir: pending_dir("/d/_flumen"),
        }
    }

    #[test]
    fn a_record_past_its_partitions_watermark_goes_to_the_late_path() {
        let c = c();
        let path = PathTemplate::parse("/d/%Y%m%d/%H%M").unwrap();
        let tp = TopicPartition::new("t", 0);
        let t = 1_732_475_107_000; // 2024-11-24T19:05:07Z, bucket end 19:06:00
        let horizon = 1_732_475_160_000 + 5_000;
        let fresh = route(Some(&c), t, Some(horizon - 1));
        assert_eq!(
            fresh,
            Route {
                late: false,
                horizon_ms: Some(horizon)
            }
        );
        assert_eq!(
            render(&path, Some(&c), fresh, &tp, t, true),
            "/d/20241124/1905"
        );
        assert_eq!(
            pending_note(Some(&c), fresh, "/d/20241124/1905").as_deref(),
            Some("/d/_flumen/completeness/pending/00000001732475160000/d/20241124/1905")
        );
        let late = route(Some(&c), t, Some(horizon));
        assert!(late.late);
        assert_eq!(
            render(&path, Some(&c), late, &tp, t, true),
            "/d/_late/20241124/1905"
        );
        assert_eq!(pending_note(Some(&c), late, "/x"), None);
        assert!(marks(Some(&c), late, None, Some(t)).seal);
        assert_eq!(marks(None, fresh, None, Some(t)), Marks::default());
        // A bucket file stops taking records once the watermark reaches its horizon.
        assert!(!passed(fresh, Some(horizon - 1)));
        assert!(passed(fresh, Some(horizon)));
        assert!(!passed(late, Some(i64::MAX)));
        // Without completeness nothing is late.
        assert!(!route(None, t, Some(i64::MAX)).late);
    }
}
