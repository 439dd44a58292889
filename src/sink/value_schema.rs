//! `hdfs.parquet.value_schema`: the declared shape of JSON record values, which the Parquet
//! encoder writes as typed columns after the envelope. The text is a list of fields separated
//! by commas or line breaks, each `name type` with an optional `nullable`:
//!
//! ```text
//! seq long, run_id string, setup_latency_ms double nullable
//! ```
//!
//! Types: `string`, `long` (a JSON integer that fits i64), `double` (any JSON number),
//! `boolean`. A field that is not `nullable` must be present and not null. Fields the schema
//! does not name are ignored (they stay in the `value` column, which is always written).
//! A value that does not fit is a [`Misfit`]: the sink diverts the record whole to the
//! dead-letter directory.

use serde_json::Value;

/// The envelope's column names: a value field may not take one.
pub const RESERVED: [&str; 7] = [
    "topic",
    "partition",
    "offset",
    "timestamp",
    "key",
    "value",
    "headers",
];

/// At most this many declared fields (each is a column buffered per open file).
const FIELDS_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Long,
    Double,
    Boolean,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSchema {
    pub fields: Vec<Field>,
}

/// One typed value read from a record's JSON, `None` for null or absent.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed<'a> {
    String(Option<&'a str>),
    Long(Option<i64>),
    Double(Option<f64>),
    Boolean(Option<bool>),
}

/// Why a value does not fit the schema (for the dead letter and the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Misfit(pub String);

impl ValueSchema {
    /// Parses the schema text; the error says what is wrong, the caller adds the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut fields: Vec<Field> = Vec::new();
        for item in text.split([',', '\n']).map(str::trim) {
            if item.is_empty() || item.starts_with('#') {
                continue;
            }
            let field = parse_field(item)?;
            if fields.iter().any(|f| f.name == field.name) {
                return Err(format!("declares the field {:?} twice", field.name));
            }
            fields.push(field);
        }
        if fields.is_empty() {
            return Err("declares no field (e.g. \"seq long, region string\")".into());
        }
        if fields.len() > FIELDS_MAX {
            return Err(format!(
                "declares {} fields; at most {FIELDS_MAX}",
                fields.len()
            ));
        }
        Ok(Self { fields })
    }

    /// Whether a record's value fits: what `ParquetEncoder::push` would refuse, asked before
    /// a file is opened for the record. A tombstone (no value) fits, its columns null.
    pub fn check(&self, value: Option<&[u8]>) -> Result<(), Misfit> {
        let Some(value) = value else {
            return Ok(());
        };
        let json = parse(value)?;
        self.extract(&json, &mut Vec::new())
    }

    /// The declared fields of `value` (a JSON object), in schema order, into `out`. On a
    /// misfit `out` holds a prefix and the record must not be written.
    pub fn extract<'a>(&self, value: &'a Value, out: &mut Vec<Typed<'a>>) -> Result<(), Misfit> {
        out.clear();
        let Value::Object(m) = value else {
            return Err(Misfit("the value is JSON but not an object".into()));
        };
        for f in &self.fields {
            let v = m.get(&f.name).filter(|v| !v.is_null());
            if v.is_none() && !f.nullable {
                return Err(Misfit(format!(
                    "the field {:?} is missing or null and not nullable",
                    f.name
                )));
            }
            out.push(typed(f, v)?);
        }
        Ok(())
    }
}

/// A record's value as JSON.
pub fn parse(value: &[u8]) -> Result<Value, Misfit> {
    serde_json::from_slice(value).map_err(|e| Misfit(format!("the value is not JSON: {e}")))
}

fn parse_field(item: &str) -> Result<Field, String> {
    let words: Vec<&str> = item.split_whitespace().collect();
    let (name, ty, nullable) = match words.as_slice() {
        [name, ty] => (*name, *ty, false),
        [name, ty, "nullable"] => (*name, *ty, true),
        _ => {
            return Err(format!(
                "has {item:?}; each field is \"name type\" or \"name type nullable\""
            ))
        }
    };
    let valid_start = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if !valid_start || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "has the field name {name:?}; use letters, digits and '_' (not first a digit)"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "has the field {name:?}, which is an envelope column; the envelope names {RESERVED:?} are reserved"
        ));
    }
    let ty = match ty {
        "string" => FieldType::String,
        "long" => FieldType::Long,
        "double" => FieldType::Double,
        "boolean" => FieldType::Boolean,
        other => {
            return Err(format!(
                "gives {name:?} the type {other:?}; use string, long, double or boolean"
            ))
        }
    };
    Ok(Field {
        name: name.to_string(),
        ty,
        nullable,
    })
}

/// `v` (present and not null, or `None`) as the field's type.
fn typed<'a>(f: &Field, v: Option<&'a Value>) -> Result<Typed<'a>, Misfit> {
    let wrong = |v: &Value| {
        Misfit(format!(
            "the field {:?} is {v}, not a {}",
            f.name,
            match f.ty {
                FieldType::String => "string",
                FieldType::Long => "long (an integer within i64)",
                FieldType::Double => "number",
                FieldType::Boolean => "boolean",
            }
        ))
    };
    Ok(match (f.ty, v) {
        (FieldType::String, None) => Typed::String(None),
        (FieldType::Long, None) => Typed::Long(None),
        (FieldType::Double, None) => Typed::Double(None),
        (FieldType::Boolean, None) => Typed::Boolean(None),
        (FieldType::String, Some(v)) => Typed::String(Some(v.as_str().ok_or_else(|| wrong(v))?)),
        (FieldType::Long, Some(v)) => Typed::Long(Some(v.as_i64().ok_or_else(|| wrong(v))?)),
        (FieldType::Double, Some(v)) => Typed::Double(Some(v.as_f64().ok_or_else(|| wrong(v))?)),
        (FieldType::Boolean, Some(v)) => Typed::Boolean(Some(v.as_bool().ok_or_else(|| wrong(v))?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> ValueSchema {
        ValueSchema::parse("seq long,\n region string\n lat double nullable, ok boolean nullable")
            .unwrap()
    }

    #[test]
    fn parses_names_types_and_nullability() {
        let s = schema();
        assert_eq!(s.fields.len(), 4);
        assert_eq!(
            s.fields[2],
            Field {
                name: "lat".into(),
                ty: FieldType::Double,
                nullable: true
            }
        );
        assert!(!s.fields[0].nullable);
    }

    #[test]
    fn refuses_bad_schemas_with_a_reason() {
        for (text, says) in [
            ("", "no field"),
            ("seq", "name type"),
            ("seq int", "\"int\""),
            ("offset long", "envelope"),
            ("a long, a string", "twice"),
            ("1a long", "field name"),
            ("a long nulable", "name type"),
        ] {
            let err = ValueSchema::parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn extracts_typed_values_and_nulls() {
        let v: Value = serde_json::json!({"seq": 7, "region": "north", "lat": 1, "extra": [1]});
        let mut out = Vec::new();
        schema().extract(&v, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                Typed::Long(Some(7)),
                Typed::String(Some("north")),
                Typed::Double(Some(1.0)),
                Typed::Boolean(None),
            ]
        );
    }

    #[test]
    fn misfits_name_the_field() {
        for (v, says) in [
            (serde_json::json!({"seq": 1.5, "region": "n"}), "\"seq\""),
            (serde_json::json!({"seq": 1}), "\"region\" is missing"),
            (serde_json::json!({"seq": 1, "region": null}), "\"region\""),
            (serde_json::json!({"seq": 1, "region": 2}), "not a string"),
            (
                serde_json::json!({"seq": 1, "region": "n", "ok": "yes"}),
                "\"ok\"",
            ),
            (serde_json::json!([1]), "not an object"),
            (
                serde_json::json!({"seq": u64::MAX, "region": "n"}),
                "\"seq\"",
            ),
        ] {
            let err = schema().extract(&v, &mut Vec::new()).unwrap_err();
            assert!(err.0.contains(says), "{v}: {err}");
        }
    }
}
