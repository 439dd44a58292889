//! Time buckets of a path template, and the completeness rule on them (`wal-format.md` §6.6).
//!
//! A bucket is the half-open UTC interval `[start, end)` that one rendered directory covers:
//! the template's finest time escape sets its width (`%H` an hour, `%M` a minute, `%d` a day,
//! `%m` a month, `%Y` a year, `%S` a second). Every coarser escape must be in the template too,
//! so a directory names exactly one bucket (a `%d` without `%m` would put the 5th of every
//! month in one directory). Only UTC: in local time an hour repeats when daylight saving ends,
//! and its directory would receive records after its marker.
//!
//! The two rules, with `W` a partition's event-time watermark and `L` the allowed lateness:
//! - a record at time `t` is *late* when `end(t) + L <= W` of its partition, W taken before
//!   the record;
//! - a bucket is *complete* when `end + L <= min W` over every partition of every topic.
//!
//! Both compare the same quantity, which is what makes a late record and a marked bucket
//! exclusive (the argument is in `ARCHITECTURE.md`, Invariants).

use chrono::{Datelike, NaiveDate, TimeZone, Timelike, Utc};

use super::path::PathTemplate;

/// How wide one bucket is: the unit of the template's finest time escape.
pub use super::path::TimeUnit as Width;

impl Width {
    /// The bucket width of `template`, or why it has none usable.
    pub fn of(template: &PathTemplate) -> Result<Width, String> {
        let present = template.time_units();
        let finest = *present
            .iter()
            .max()
            .ok_or("holds no time escape (%Y %m %d %H %M %S), so it has no time buckets")?;
        let mut coarser = Width::ALL.into_iter().take_while(|u| *u < finest);
        if let Some(missing) = coarser.find(|u| !present.contains(u)) {
            return Err(format!(
                "has %{} but not %{}: a bucket directory must name one bucket, so every \
                 coarser time escape must be there too",
                finest.escape(),
                missing.escape()
            ));
        }
        Ok(finest)
    }

    /// The start of the bucket holding `t_ms` (UTC, milliseconds since the epoch).
    pub fn start_ms(self, t_ms: i64) -> i64 {
        let Some(t) = Utc.timestamp_millis_opt(t_ms).single() else {
            return t_ms; // out of chrono's range (±262,000 years): its own bucket
        };
        let d = t.date_naive();
        let start = match self {
            Width::Year => NaiveDate::from_ymd_opt(d.year(), 1, 1).map(|d| d.and_hms_opt(0, 0, 0)),
            Width::Month => {
                NaiveDate::from_ymd_opt(d.year(), d.month(), 1).map(|d| d.and_hms_opt(0, 0, 0))
            }
            Width::Day => Some(d.and_hms_opt(0, 0, 0)),
            Width::Hour => Some(d.and_hms_opt(t.hour(), 0, 0)),
            Width::Minute => Some(d.and_hms_opt(t.hour(), t.minute(), 0)),
            Width::Second => Some(d.and_hms_opt(t.hour(), t.minute(), t.second())),
        };
        start
            .flatten()
            .map_or(t_ms, |s| s.and_utc().timestamp_millis())
    }

    /// The end (exclusive) of the bucket holding `t_ms`: the next bucket's start.
    pub fn end_ms(self, t_ms: i64) -> i64 {
        let start = self.start_ms(t_ms);
        let fixed = |ms: i64| start.saturating_add(ms);
        match self {
            Width::Second => fixed(1_000),
            Width::Minute => fixed(60_000),
            Width::Hour => fixed(3_600_000),
            Width::Day => fixed(86_400_000),
            Width::Month | Width::Year => {
                let Some(s) = Utc.timestamp_millis_opt(start).single() else {
                    return fixed(1);
                };
                let (y, m) = match self {
                    Width::Year => (s.year() + 1, 1),
                    _ if s.month() == 12 => (s.year() + 1, 1),
                    _ => (s.year(), s.month() + 1),
                };
                NaiveDate::from_ymd_opt(y, m, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map_or(fixed(1), |d| d.and_utc().timestamp_millis())
            }
        }
    }
}

/// The completeness rule's parameters: the bucket width and the allowed lateness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub width: Width,
    pub lateness_ms: i64,
}

impl Rule {
    /// The watermark a partition must reach before the bucket holding `t_ms` may be complete:
    /// its end plus the allowed lateness. A record at `t_ms` is late once its partition's
    /// watermark reached this.
    pub fn horizon_ms(&self, t_ms: i64) -> i64 {
        self.width.end_ms(t_ms).saturating_add(self.lateness_ms)
    }

    /// Whether a record at `t_ms` is late for a partition whose watermark (the greatest record
    /// time it committed or wrote before this record, or its idle advance) is `watermark`.
    pub fn is_late(&self, t_ms: i64, watermark: Option<i64>) -> bool {
        watermark.is_some_and(|w| self.horizon_ms(t_ms) <= w)
    }

    /// Whether the bucket ending at `end_ms` is complete when the least watermark over every
    /// partition is `min_watermark`. The same comparison as [`Rule::is_late`]: a bucket is
    /// complete exactly when a record for it would now be late in every partition.
    pub fn is_complete(&self, end_ms: i64, min_watermark: Option<i64>) -> bool {
        min_watermark.is_some_and(|w| end_ms.saturating_add(self.lateness_ms) <= w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    fn width(t: &str) -> Result<Width, String> {
        Width::of(&PathTemplate::parse(t).unwrap())
    }

    #[test]
    fn the_finest_escape_sets_the_width() {
        assert_eq!(width("/d/dt=%Y-%m-%d/hr=%H"), Ok(Width::Hour));
        assert_eq!(width("/d/%{topic}/%Y/%m/%d/%H/%M"), Ok(Width::Minute));
        assert_eq!(width("/d/%Y-%m-%d"), Ok(Width::Day));
        assert_eq!(width("/d/%Y/%m"), Ok(Width::Month));
        assert_eq!(width("/d/%Y"), Ok(Width::Year));
        assert_eq!(width("/d/%Y%m%d%H%M%S"), Ok(Width::Second));
        // Order in the template does not matter, presence does.
        assert_eq!(width("/d/%H/%d/%m/%Y"), Ok(Width::Hour));
    }

    #[test]
    fn a_template_without_a_unique_bucket_directory_is_refused() {
        assert!(width("/d/%{topic}").unwrap_err().contains("no time escape"));
        let e = width("/d/%d").unwrap_err();
        assert!(e.contains("%d but not %Y"), "{e}");
        let e = width("/d/%Y-%m-%d/%M").unwrap_err();
        assert!(e.contains("%M but not %H"), "{e}");
    }

    #[test]
    fn bucket_bounds_in_utc() {
        let t = ms("2024-11-24T19:05:07.123Z");
        assert_eq!(Width::Second.start_ms(t), ms("2024-11-24T19:05:07Z"));
        assert_eq!(Width::Minute.start_ms(t), ms("2024-11-24T19:05:00Z"));
        assert_eq!(Width::Minute.end_ms(t), ms("2024-11-24T19:06:00Z"));
        assert_eq!(Width::Hour.end_ms(t), ms("2024-11-24T20:00:00Z"));
        assert_eq!(Width::Day.start_ms(t), ms("2024-11-24T00:00:00Z"));
        assert_eq!(Width::Day.end_ms(t), ms("2024-11-25T00:00:00Z"));
        assert_eq!(Width::Month.end_ms(t), ms("2024-12-01T00:00:00Z"));
        assert_eq!(Width::Year.end_ms(t), ms("2025-01-01T00:00:00Z"));
        // December rolls into the next year; February of a leap year has 29 days.
        assert_eq!(
            Width::Month.end_ms(ms("2024-12-31T23:59:59Z")),
            ms("2025-01-01T00:00:00Z")
        );
        assert_eq!(
            Width::Day.end_ms(ms("2024-02-28T12:00:00Z")),
            ms("2024-02-29T00:00:00Z")
        );
    }

    #[test]
    fn bounds_are_half_open() {
        let end = ms("2024-11-24T20:00:00Z");
        assert_eq!(Width::Hour.end_ms(end - 1), end);
        assert_eq!(Width::Hour.start_ms(end), end);
        assert_eq!(Width::Hour.end_ms(end), end + 3_600_000);
        // Before the epoch the floor still goes down, not towards zero.
        assert_eq!(Width::Minute.start_ms(-1), -60_000);
        assert_eq!(Width::Minute.end_ms(-1), 0);
    }

    #[test]
    fn late_and_complete_are_the_same_comparison() {
        let rule = Rule {
            width: Width::Minute,
            lateness_ms: 10_000,
        };
        let t = ms("2024-11-24T19:05:07Z");
        let horizon = ms("2024-11-24T19:06:10Z");
        assert_eq!(rule.horizon_ms(t), horizon);
        assert!(!rule.is_late(t, None));
        assert!(!rule.is_late(t, Some(horizon - 1)));
        assert!(rule.is_late(t, Some(horizon)));
        let end = ms("2024-11-24T19:06:00Z");
        assert!(!rule.is_complete(end, None));
        assert!(!rule.is_complete(end, Some(horizon - 1)));
        assert!(rule.is_complete(end, Some(horizon)));
        // For every watermark: a record of the bucket is late exactly when it is complete.
        for w in [horizon - 60_000, horizon - 1, horizon, horizon + 1] {
            assert_eq!(rule.is_late(t, Some(w)), rule.is_complete(end, Some(w)));
        }
    }
}
