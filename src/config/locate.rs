//! Finds where in the TOML text a key sits, so every config error names its key and line. A
//! small line scanner rather than a second TOML parser: flumen's config is flat tables of
//! `key = value` lines, and a lookup that misses only loses the line number, never the key.

/// The 1-based line holding byte `byte`.
pub fn line_of_byte(text: &str, byte: usize) -> usize {
    text[..floor_char_boundary(text, byte)]
        .matches('\n')
        .count()
        + 1
}

/// The 1-based line that sets `key` inside `[section]`; 0 when the key is absent (a default or
/// a missing required key), in which case the message still names the key.
pub fn line_of_key(text: &str, section: &str, key: &str) -> usize {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(name) = header(line) {
            current = name;
        } else if current == section && key_of(line).as_deref() == Some(key) {
            return i + 1;
        }
    }
    0
}

/// The dotted key (`channel.capacity_bytes_max`) whose line holds byte `byte`, or the table
/// (`hdfs`) when the byte is on a table header. A value that spans lines (an array) belongs to
/// the nearest `key =` line above it.
pub fn key_at_byte(text: &str, byte: usize) -> Option<String> {
    let line = line_of_byte(text, byte);
    let lines: Vec<&str> = text.lines().take(line).collect();
    let mut key = None;
    for l in lines.iter().rev() {
        if let Some(table) = header(l) {
            return Some(match key {
                Some(k) => format!("{table}.{k}"),
                None => table,
            });
        }
        if key.is_none() {
            key = key_of(l);
        }
    }
    key
}

/// Like [`key_at_byte`], but only when byte `byte` is on a `key = value` line itself: for a
/// syntax error, a key found on another line would point at the wrong place.
pub fn key_on_line(text: &str, byte: usize) -> Option<String> {
    let line = text.lines().nth(line_of_byte(text, byte) - 1)?;
    key_of(line)?;
    key_at_byte(text, byte)
}

/// `[kafka.properties]` → `kafka.properties`; also `[[x]]` and quoted names.
fn header(line: &str) -> Option<String> {
    let t = line.trim();
    let inner = t
        .strip_prefix('[')?
        .split(']')
        .next()?
        .trim_start_matches('[');
    Some(
        inner
            .split('.')
            .map(|p| p.trim().trim_matches('"'))
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// `segment_bytes_max = 5` → `segment_bytes_max`; `"a.b" = 1` → `a.b`.
fn key_of(line: &str) -> Option<String> {
    let t = line.trim();
    if t.starts_with('#') || t.starts_with('[') {
        return None;
    }
    let (k, _) = t.split_once('=')?;
    let k = k.trim().trim_matches('"');
    (!k.is_empty()).then(|| k.to_string())
}

fn floor_char_boundary(text: &str, byte: usize) -> usize {
    let mut b = byte.min(text.len());
    while !text.is_char_boundary(b) {
        b -= 1;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "[kafka]\ntopics = [\n  \"a\",\n]\n\n[kafka.properties]\n\"fetch.min.bytes\" = \"x\"\n";

    #[test]
    fn key_at_byte_names_the_table_and_key() {
        let at = |needle: &str| key_at_byte(TEXT, TEXT.find(needle).unwrap());
        assert_eq!(at("\"a\"").as_deref(), Some("kafka.topics"));
        assert_eq!(at("[kafka.p").as_deref(), Some("kafka.properties"));
        assert_eq!(
            at("\"x\"").as_deref(),
            Some("kafka.properties.fetch.min.bytes")
        );
        assert_eq!(line_of_key(TEXT, "kafka", "topics"), 2);
        assert_eq!(line_of_key(TEXT, "kafka.properties", "fetch.min.bytes"), 7);
    }
}
