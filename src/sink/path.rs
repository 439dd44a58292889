//! Flume-style path escapes: `%Y %m %d %H %M %S`, `%{topic}`, `%{partition}` and `%%`.

use std::fmt::Write;

use chrono::{DateTime, Datelike, Local, NaiveDateTime, TimeZone, Timelike, Utc};

/// The unit of a time escape, coarsest first (the order `Ord` follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimeUnit {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl TimeUnit {
    pub const ALL: [TimeUnit; 6] = [
        TimeUnit::Year,
        TimeUnit::Month,
        TimeUnit::Day,
        TimeUnit::Hour,
        TimeUnit::Minute,
        TimeUnit::Second,
    ];

    /// The letter after `%` in a template.
    pub fn escape(self) -> char {
        match self {
            TimeUnit::Year => 'Y',
            TimeUnit::Month => 'm',
            TimeUnit::Day => 'd',
            TimeUnit::Hour => 'H',
            TimeUnit::Minute => 'M',
            TimeUnit::Second => 'S',
        }
    }

    fn of_escape(c: char) -> Option<Self> {
        Self::ALL.into_iter().find(|u| u.escape() == c)
    }

    /// Appends this field of `t`, zero-padded as Flume does (four digits for the year).
    fn render(self, t: &NaiveDateTime, out: &mut String) {
        let _ = match self {
            TimeUnit::Year => write!(out, "{:04}", t.year()),
            TimeUnit::Month => write!(out, "{:02}", t.month()),
            TimeUnit::Day => write!(out, "{:02}", t.day()),
            TimeUnit::Hour => write!(out, "{:02}", t.hour()),
            TimeUnit::Minute => write!(out, "{:02}", t.minute()),
            TimeUnit::Second => write!(out, "{:02}", t.second()),
        };
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Time(TimeUnit),
    Topic,
    Partition,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    parts: Vec<Part>,
}

impl PathTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let part = match chars.next() {
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some('{') => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!("%{{{name} is not closed with '}}'"));
                    }
                    match name.as_str() {
                        "topic" => Part::Topic,
                        "partition" => Part::Partition,
                        other => return Err(format!("unsupported escape %{{{other}}}")),
                    }
                }
                Some(other) => match TimeUnit::of_escape(other) {
                    Some(unit) => Part::Time(unit),
                    None => return Err(format!("unsupported escape %{other}")),
                },
                None => return Err("ends with a lone %".into()),
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// The directory prefix before the first escape, e.g. `/data/flume` for `/data/flume/%Y`.
    pub fn static_prefix(&self) -> String {
        let lead = match self.parts.first() {
            Some(Part::Literal(s)) if self.parts.len() == 1 => return s.clone(),
            Some(Part::Literal(s)) => s.as_str(),
            _ => "",
        };
        match lead.rfind('/') {
            Some(0) | None => "/".into(),
            Some(i) => lead[..i].to_string(),
        }
    }

    /// The units of the time escapes the template holds, in template order, once each.
    pub fn time_units(&self) -> Vec<TimeUnit> {
        let mut out = Vec::new();
        for part in &self.parts {
            if let Part::Time(u) = part {
                if !out.contains(u) {
                    out.push(*u);
                }
            }
        }
        out
    }

    /// Renders the directory for a record of `topic`/`partition` at `time_ms`.
    pub fn render(&self, topic: &str, partition: i32, time_ms: i64, utc: bool) -> String {
        if utc {
            self.render_in(topic, partition, Utc.timestamp_millis_opt(time_ms).single())
        } else {
            self.render_in(
                topic,
                partition,
                Local.timestamp_millis_opt(time_ms).single(),
            )
        }
    }

    fn render_in<Tz: TimeZone>(
        &self,
        topic: &str,
        partition: i32,
        time: Option<DateTime<Tz>>,
    ) -> String {
        let t = time.map(|t| t.naive_local()).unwrap_or_default();
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Time(u) => u.render(&t, &mut out),
                Part::Topic => out.push_str(topic),
                Part::Partition => {
                    let _ = write!(out, "{partition}");
                }
            }
        }
        out.trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_flume_escapes_in_utc() {
        let t = PathTemplate::parse("/data/%{topic}/p%{partition}/%Y-%m-%d/%H%M%S%%").unwrap();
        // 2024-11-24T19:05:07Z
        let ms = 1_732_475_107_000;
        assert_eq!(
            t.render("flume.txn", 2, ms, true),
            "/data/flume.txn/p2/2024-11-24/190507%"
        );
        assert_eq!(t.static_prefix(), "/data");
    }

    /// The recommended Hive-style layout: `=` is a literal, and the state directory (under the
    /// static prefix, `_`-named) stays beside the partitions, hidden from Spark's discovery.
    #[test]
    fn renders_hive_style_partitions() {
        let t = PathTemplate::parse("/data/flume.txn/dt=%Y-%m-%d/hr=%H").unwrap();
        assert_eq!(
            t.render("flume.txn", 0, 1_732_475_107_000, true),
            "/data/flume.txn/dt=2024-11-24/hr=19"
        );
        assert_eq!(t.static_prefix(), "/data/flume.txn");
    }

    #[test]
    fn static_prefix_of_plain_path_is_itself() {
        let t = PathTemplate::parse("/user/flumen/flume_kafka").unwrap();
        assert_eq!(t.static_prefix(), "/user/flumen/flume_kafka");
        assert_eq!(PathTemplate::parse("/%Y").unwrap().static_prefix(), "/");
    }

    #[test]
    fn unknown_escapes_are_errors() {
        assert!(PathTemplate::parse("/a/%q").is_err());
        assert!(PathTemplate::parse("/a/%{host}").is_err());
        assert!(PathTemplate::parse("/a/%").is_err());
        // Regression: an unclosed `%{topic` was read as `%{topic}`.
        assert!(PathTemplate::parse("/a/%{topic").is_err());
    }
}
