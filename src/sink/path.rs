//! Flume-style path escapes: `%Y %m %d %H %M %S`, `%{topic}`, `%{partition}` and `%%`.

use chrono::{DateTime, Datelike, Local, TimeZone, Timelike, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
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
                Some('Y') => Part::Year,
                Some('m') => Part::Month,
                Some('d') => Part::Day,
                Some('H') => Part::Hour,
                Some('M') => Part::Minute,
                Some('S') => Part::Second,
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
                Some(other) => return Err(format!("unsupported escape %{other}")),
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

    /// The time escapes the template holds (`Y m d H M S`), in template order, once each.
    pub fn time_escapes(&self) -> Vec<char> {
        let mut out = Vec::new();
        for part in &self.parts {
            let c = match part {
                Part::Year => 'Y',
                Part::Month => 'm',
                Part::Day => 'd',
                Part::Hour => 'H',
                Part::Minute => 'M',
                Part::Second => 'S',
                _ => continue,
            };
            if !out.contains(&c) {
                out.push(c);
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
                Part::Year => out.push_str(&format!("{:04}", t.year())),
                Part::Month => out.push_str(&format!("{:02}", t.month())),
                Part::Day => out.push_str(&format!("{:02}", t.day())),
                Part::Hour => out.push_str(&format!("{:02}", t.hour())),
                Part::Minute => out.push_str(&format!("{:02}", t.minute())),
                Part::Second => out.push_str(&format!("{:02}", t.second())),
                Part::Topic => out.push_str(topic),
                Part::Partition => out.push_str(&partition.to_string()),
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
