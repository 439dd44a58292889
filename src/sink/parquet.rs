//! `format = "parquet"`: one Parquet file per HDFS file, written through the parquet crate's
//! low-level column writers (no arrow). Every record becomes a row of the envelope (topic,
//! partition, offset, timestamp, key, value, headers) plus, with `hdfs.parquet.value_schema`,
//! one typed column per declared field (`super::value_schema`).
//!
//! Records are buffered column by column for the row group being filled; the row group is
//! encoded (pages, the column codec) into the output buffer once its buffered bytes reach
//! `row_group_bytes_max`, and at `finish`, which also writes the footer: a file is valid
//! Parquet only once closed. Bytes are a function of the records alone: row-group boundaries
//! depend only on the records' sizes, `created_by` is fixed, and nothing reads a clock, so a
//! range written again after a crash is the same file byte for byte.
//!
//! Memory per open file: the row group being filled (at most `row_group_bytes_max` plus one
//! record, see `ROW_OVERHEAD_BYTES`), the encoded output not yet shipped (the sink ships it as
//! soon as it passes its write chunk), and while a row group is encoded one page and one
//! dictionary page of the column being written (`PAGE_BYTES_MAX` each).

use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DataType, DoubleType, Int32Type, Int64Type,
};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::types::{ColumnPath, Type};

use super::value_schema::{FieldType, Misfit, Typed, ValueSchema};
use crate::config::Compression;
use crate::wal::RecordRef;

/// The bytes a buffered row costs beyond its keys', values' and headers' bytes: its fixed-size
/// columns and levels, and the value handles built when the row group is encoded.
const ROW_OVERHEAD_BYTES: usize = 160;
/// Data page and dictionary page size, set explicitly (the crate's default, 1 MiB).
const PAGE_BYTES_MAX: usize = 1 << 20;
/// A file rolls at this many row groups: Parquet allows at most 32767 (an i16 ordinal),
/// which 64 KiB row groups reach at 2 GiB when only time rolls files.
const ROW_GROUPS_MAX: usize = 32_000;
/// The zstd level (as for `jsonl` files).
const ZSTD_LEVEL: i32 = 3;

/// What the encoder needs from the configuration (`[hdfs.parquet]`), shared by a sink's files.
pub use crate::config::ParquetSettings as ParquetOptions;

/// Why a record was not added.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Its value does not fit the value schema; nothing of it was buffered.
    #[error("the value does not fit hdfs.parquet.value_schema: {0}")]
    Misfit(#[from] Misfit),
    #[error("encoding Parquet: {0}")]
    Parquet(#[from] ParquetError),
}

/// One Parquet file being written.
pub struct ParquetEncoder {
    writer: SerializedFileWriter<Vec<u8>>,
    schema: Option<Arc<ValueSchema>>,
    row_group_bytes_max: usize,
    topic: ByteArray,
    rows: Rows,
}

impl std::fmt::Debug for ParquetEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetEncoder")
            .field("rows", &self.rows.count)
            .field("buffered_bytes", &self.rows.bytes)
            .finish_non_exhaustive()
    }
}

impl ParquetEncoder {
    /// `compression` is the column codec: `None`, `Snappy` or `Zstd` (the config refuses
    /// `Gzip`).
    pub fn new(
        topic: &str,
        compression: Compression,
        opts: &ParquetOptions,
    ) -> Result<Self, ParquetError> {
        let schema = Arc::new(message_type(opts.value_schema.as_deref())?);
        let props = Arc::new(properties(compression)?);
        let writer = SerializedFileWriter::new(Vec::new(), schema, props)?;
        Ok(Self {
            writer,
            rows: Rows::new(opts.value_schema.as_deref()),
            schema: opts.value_schema.clone(),
            row_group_bytes_max: opts.row_group_bytes_max,
            topic: ByteArray::from(Bytes::copy_from_slice(topic.as_bytes())),
        })
    }

    /// Adds one record as a row; returns the bytes it added to the row group (the measure of
    /// `hdfs.roll_bytes_max`). A record whose value does not fit the value schema is refused
    /// whole (`PushError::Misfit`) and leaves the file as it was.
    pub fn push(&mut self, partition: i32, record: &impl RecordRef) -> Result<u64, PushError> {
        let added = self.push_typed(partition, record)?;
        if self.rows.bytes >= self.row_group_bytes_max {
            self.flush_row_group()?;
        }
        Ok(added)
    }

    /// Reads the typed values (if there is a schema) before anything is buffered, so a misfit
    /// leaves the rows as they were.
    fn push_typed(&mut self, partition: i32, record: &impl RecordRef) -> Result<u64, PushError> {
        let Some(schema) = &self.schema else {
            return Ok(self.rows.push(partition, record, &[]) as u64);
        };
        let mut typed = Vec::with_capacity(schema.fields.len());
        let json;
        match record.value() {
            Some(value) => {
                json = super::value_schema::parse(value)?;
                schema.extract(&json, &mut typed)?;
            }
            // A tombstone: kept, its typed columns null (readers tell it by a null `value`).
            None => typed.extend(schema.fields.iter().map(|f| null_of(f.ty))),
        }
        Ok(self.rows.push(partition, record, &typed) as u64)
    }

    /// The file holds as many row groups as it may: it must roll.
    pub fn full(&self) -> bool {
        self.writer.flushed_row_groups().len() >= ROW_GROUPS_MAX
    }

    /// Bytes of the rows buffered for the row group being filled.
    pub fn buffered_bytes(&self) -> usize {
        self.rows.bytes
    }

    /// Encoded bytes ready to be written to HDFS.
    pub fn pending_output_bytes(&self) -> usize {
        self.writer.inner().len()
    }

    /// Hands over the encoded bytes; the next go into a buffer of `capacity` bytes.
    pub fn take_output(&mut self, capacity: usize) -> Vec<u8> {
        std::mem::replace(self.writer.inner_mut(), Vec::with_capacity(capacity))
    }

    /// Encodes the last row group and the footer; returns the bytes not yet taken.
    pub fn finish(mut self) -> Result<Vec<u8>, ParquetError> {
        if self.rows.count > 0 {
            self.flush_row_group()?;
        }
        self.writer.into_inner()
    }

    /// Encodes the buffered rows as one row group into the output buffer.
    fn flush_row_group(&mut self) -> Result<(), ParquetError> {
        let rows = std::mem::replace(&mut self.rows, Rows::new(self.schema.as_deref()));
        let mut rg = self.writer.next_row_group()?;
        rows.write(&self.topic, &mut rg)?;
        rg.close()?;
        // Past the writer's own small buffer, so `pending_output_bytes` sees the row group.
        self.writer.flush()?;
        Ok(())
    }
}

fn null_of(ty: FieldType) -> Typed<'static> {
    match ty {
        FieldType::String => Typed::String(None),
        FieldType::Long => Typed::Long(None),
        FieldType::Double => Typed::Double(None),
        FieldType::Boolean => Typed::Boolean(None),
    }
}

/// The file's schema: the envelope (i13 contract), then the value schema's fields, each an
/// optional column of its type.
fn message_type(schema: Option<&ValueSchema>) -> Result<Type, ParquetError> {
    let mut text = String::from(
        "message flumen_record {
          required binary topic (STRING);
          required int32 partition;
          required int64 offset;
          optional int64 timestamp (TIMESTAMP(MILLIS, true));
          optional binary key;
          optional binary value;
          required group headers (LIST) {
            repeated group list {
              required group element {
                required binary key;
                optional binary value;
              }
            }
          }\n",
    );
    for f in schema.iter().flat_map(|s| &s.fields) {
        // Names are `[A-Za-z_][A-Za-z0-9_]*` (checked by `ValueSchema::parse`).
        let ty = match f.ty {
            FieldType::String => "binary",
            FieldType::Long => "int64",
            FieldType::Double => "double",
            FieldType::Boolean => "boolean",
        };
        let annotation = if f.ty == FieldType::String {
            " (STRING)"
        } else {
            ""
        };
        text.push_str(&format!("optional {ty} {}{annotation};\n", f.name));
    }
    text.push('}');
    parquet::schema::parser::parse_message_type(&text)
}

/// Every writer option that shapes the bytes, set by name (see the module doc).
fn properties(compression: Compression) -> Result<WriterProperties, ParquetError> {
    let codec = match compression {
        Compression::None => Codec::UNCOMPRESSED,
        Compression::Snappy => Codec::SNAPPY,
        Compression::Zstd => Codec::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?),
        Compression::Gzip => {
            return Err(ParquetError::General(
                "gzip is not a Parquet codec flumen writes (the config refuses it)".into(),
            ))
        }
    };
    let path = |p: &[&str]| ColumnPath::new(p.iter().map(|s| s.to_string()).collect());
    let mut b = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_created_by(concat!("flumen version ", env!("CARGO_PKG_VERSION")).into())
        .set_key_value_metadata(None)
        .set_compression(codec)
        .set_data_page_size_limit(PAGE_BYTES_MAX)
        .set_dictionary_page_size_limit(PAGE_BYTES_MAX)
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_bloom_filter_enabled(false);
    // Unique per row: a dictionary would only be built to be abandoned.
    for p in [&["offset"][..], &["timestamp"], &["key"], &["value"]] {
        b = b.set_column_dictionary_enabled(path(p), false);
    }
    Ok(b.build())
}

/// A binary column's values for one row group, end to end in one buffer.
#[derive(Default)]
struct Binary {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Binary {
    fn push(&mut self, b: &[u8]) {
        self.data.extend_from_slice(b);
        self.ends.push(self.data.len());
    }

    /// The values as handles into one shared buffer (no copy per value).
    fn into_values(self) -> Vec<ByteArray> {
        let data = Bytes::from(self.data);
        let mut start = 0;
        self.ends
            .into_iter()
            .map(|end| {
                let v = ByteArray::from(data.slice(start..end));
                start = end;
                v
            })
            .collect()
    }
}

/// One declared field's column for one row group: values of present rows, and a definition
/// level per row (1 present, 0 null).
enum TypedColumn {
    String(Binary, Vec<i16>),
    Long(Vec<i64>, Vec<i16>),
    Double(Vec<f64>, Vec<i16>),
    Boolean(Vec<bool>, Vec<i16>),
}

/// The rows of the row group being filled, column by column.
#[derive(Default)]
struct Rows {
    count: usize,
    /// Buffered bytes, counted by `push` (see `ROW_OVERHEAD_BYTES`).
    bytes: usize,
    partition: Vec<i32>,
    offset: Vec<i64>,
    timestamp: (Vec<i64>, Vec<i16>),
    key: (Binary, Vec<i16>),
    value: (Binary, Vec<i16>),
    /// `headers.list.element.key` and `.value`: one entry per header, or one level pair per
    /// row without headers (the empty list).
    header_key: (Binary, Vec<i16>),
    header_value: (Binary, Vec<i16>),
    header_rep: Vec<i16>,
    typed: Vec<TypedColumn>,
}

impl Rows {
    fn new(schema: Option<&ValueSchema>) -> Self {
        let typed = schema
            .iter()
            .flat_map(|s| &s.fields)
            .map(|f| match f.ty {
                FieldType::String => TypedColumn::String(Binary::default(), Vec::new()),
                FieldType::Long => TypedColumn::Long(Vec::new(), Vec::new()),
                FieldType::Double => TypedColumn::Double(Vec::new(), Vec::new()),
                FieldType::Boolean => TypedColumn::Boolean(Vec::new(), Vec::new()),
            })
            .collect();
        Self {
            typed,
            ..Self::default()
        }
    }

    /// Appends one row; returns the bytes it added.
    fn push(&mut self, partition: i32, r: &impl RecordRef, typed: &[Typed<'_>]) -> usize {
        let before = self.bytes;
        self.count += 1;
        self.bytes += ROW_OVERHEAD_BYTES;
        self.partition.push(partition);
        self.offset.push(r.offset());
        optional_i64(&mut self.timestamp, r.timestamp_ms());
        self.bytes += optional_bytes(&mut self.key, r.key());
        self.bytes += optional_bytes(&mut self.value, r.value());
        self.push_headers(r);
        for (column, v) in self.typed.iter_mut().zip(typed) {
            self.bytes += push_typed(column, v);
        }
        self.bytes - before
    }

    /// A list of required structs (key required, value optional): repetition level 0 for the
    /// first element of a row and 1 for the next; definition level 0 is the empty list, 1 a
    /// header (with a null value), 2 a header value.
    fn push_headers(&mut self, r: &impl RecordRef) {
        let mut rep = 0;
        for (k, v) in r.headers() {
            self.header_key.0.push(k);
            self.header_key.1.push(1);
            if let Some(v) = v {
                self.header_value.0.push(v);
            }
            self.header_value.1.push(if v.is_some() { 2 } else { 1 });
            self.header_rep.push(rep);
            rep = 1;
            self.bytes += k.len() + v.map_or(0, <[u8]>::len) + 8;
        }
        if rep == 0 {
            self.header_key.1.push(0);
            self.header_value.1.push(0);
            self.header_rep.push(0);
        }
    }

    /// Writes the columns in schema order.
    fn write(self, topic: &ByteArray, rg: &mut RowGroup<'_>) -> Result<(), ParquetError> {
        let topics = vec![topic.clone(); self.count];
        column::<ByteArrayType>(rg, &topics, None, None)?;
        column::<Int32Type>(rg, &self.partition, None, None)?;
        column::<Int64Type>(rg, &self.offset, None, None)?;
        column::<Int64Type>(rg, &self.timestamp.0, Some(&self.timestamp.1), None)?;
        binary(rg, self.key, None)?;
        binary(rg, self.value, None)?;
        binary(rg, self.header_key, Some(&self.header_rep))?;
        binary(rg, self.header_value, Some(&self.header_rep))?;
        for c in self.typed {
            match c {
                TypedColumn::String(v, d) => binary(rg, (v, d), None)?,
                TypedColumn::Long(v, d) => column::<Int64Type>(rg, &v, Some(&d), None)?,
                TypedColumn::Double(v, d) => column::<DoubleType>(rg, &v, Some(&d), None)?,
                TypedColumn::Boolean(v, d) => column::<BoolType>(rg, &v, Some(&d), None)?,
            }
        }
        Ok(())
    }
}

/// Pushes a value with definition level 1, or level 0 for `None`.
fn optional_i64((values, def): &mut (Vec<i64>, Vec<i16>), v: Option<i64>) {
    def.push(i16::from(v.is_some()));
    values.extend(v);
}

/// Pushes bytes with definition level 1, or level 0 for `None`; returns the bytes added.
fn optional_bytes((values, def): &mut (Binary, Vec<i16>), v: Option<&[u8]>) -> usize {
    def.push(i16::from(v.is_some()));
    if let Some(v) = v {
        values.push(v);
    }
    v.map_or(0, <[u8]>::len)
}

fn push_typed(column: &mut TypedColumn, v: &Typed<'_>) -> usize {
    fn put<T: Copy>(values: &mut Vec<T>, def: &mut Vec<i16>, v: Option<T>) -> usize {
        def.push(i16::from(v.is_some()));
        values.extend(v);
        8
    }
    match (column, v) {
        (TypedColumn::String(b, d), Typed::String(s)) => {
            d.push(i16::from(s.is_some()));
            if let Some(s) = s {
                b.push(s.as_bytes());
            }
            s.map_or(0, str::len) + 8
        }
        (TypedColumn::Long(vs, d), Typed::Long(v)) => put(vs, d, *v),
        (TypedColumn::Double(vs, d), Typed::Double(v)) => put(vs, d, *v),
        (TypedColumn::Boolean(vs, d), Typed::Boolean(v)) => put(vs, d, *v),
        _ => unreachable!("the typed values follow the schema's order and types"),
    }
}

type RowGroup<'a> = SerializedRowGroupWriter<'a, Vec<u8>>;

/// Writes the next column of the row group.
fn column<T: DataType>(
    rg: &mut RowGroup<'_>,
    values: &[T::T],
    def: Option<&[i16]>,
    rep: Option<&[i16]>,
) -> Result<(), ParquetError> {
    let mut c = rg
        .next_column()?
        .expect("the buffered columns are the schema's columns");
    c.typed::<T>().write_batch(values, def, rep)?;
    c.close()
}

fn binary(
    rg: &mut RowGroup<'_>,
    (values, def): (Binary, Vec<i16>),
    rep: Option<&[i16]>,
) -> Result<(), ParquetError> {
    let values = values.into_values();
    column::<ByteArrayType>(rg, &values, Some(&def), rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{Header, Record};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::{Field, Row};

    fn opts(row_group_bytes_max: usize, schema: Option<&str>) -> ParquetOptions {
        ParquetOptions {
            row_group_bytes_max,
            buffers_bytes_max: usize::MAX,
            value_schema: schema.map(|s| Arc::new(ValueSchema::parse(s).unwrap())),
        }
    }

    fn records(n: i64) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                offset: 100 + i,
                timestamp_ms: (i % 5 != 0).then_some(1_700_000_000_000 + i),
                key: (i % 3 != 0).then(|| format!("cell-{}", i % 7).into_bytes()),
                value: (i % 11 != 4)
                    .then(|| format!(r#"{{"seq": {i}, "region": "r{}"}}"#, i % 4).into_bytes()),
                headers: (0..i % 3)
                    .map(|h| Header {
                        key: b"h".to_vec(),
                        value: (h != 1).then(|| vec![0xff, h as u8]),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Encodes `rs`, taking the output after every `take_every` records (0: only at the end).
    fn encode(o: &ParquetOptions, c: Compression, rs: &[Record], take_every: usize) -> Vec<u8> {
        let mut e = ParquetEncoder::new("flume.txn", c, o).unwrap();
        let mut out = Vec::new();
        for (i, r) in rs.iter().enumerate() {
            e.push(3, r).unwrap();
            if take_every > 0 && i % take_every == 0 {
                out.extend(e.take_output(0));
            }
        }
        out.extend(e.finish().unwrap());
        out
    }

    fn rows(file: Vec<u8>) -> (usize, Vec<Row>) {
        let reader = SerializedFileReader::new(Bytes::from(file)).unwrap();
        let groups = reader.metadata().num_row_groups();
        let rows = reader
            .get_row_iter(None)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        (groups, rows)
    }

    /// A claimed range may be written again after a crash: the same records must give the
    /// same file, whatever the HDFS chunks were and with several row groups.
    #[test]
    fn same_records_give_the_same_bytes_whatever_the_chunks() {
        let rs = records(3000);
        for c in [Compression::Snappy, Compression::Zstd, Compression::None] {
            let o = opts(64 << 10, Some("seq long, region string nullable"));
            let whole = encode(&o, c, &rs, 0);
            assert!(whole == encode(&o, c, &rs, 1), "{c:?}");
            assert!(whole == encode(&o, c, &rs, 97), "{c:?}");
            let (groups, read) = rows(whole);
            assert!(groups > 1, "{c:?}: {groups} row groups");
            assert_eq!(read.len(), rs.len());
        }
    }

    #[test]
    fn every_envelope_field_round_trips() {
        let mut rs = records(12);
        rs[1].key = Some(vec![0, 0xc3, 0x28]);
        rs[2].value = Some(Vec::new());
        rs[2].headers = vec![
            Header {
                key: b"a".to_vec(),
                value: Some(b"1".to_vec()),
            },
            Header {
                key: b"a".to_vec(),
                value: Some(b"2".to_vec()),
            },
            Header {
                key: vec![0xc3, 0x28],
                value: None,
            },
        ];
        let (_, read) = rows(encode(&opts(1 << 20, None), Compression::Snappy, &rs, 0));
        assert_eq!(read.len(), 12);
        for (r, row) in rs.iter().zip(&read) {
            let cols: Vec<(&String, &Field)> = row.get_column_iter().collect();
            let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, super::super::value_schema::RESERVED);
            assert_eq!(cols[0].1, &Field::Str("flume.txn".into()));
            assert_eq!(cols[1].1, &Field::Int(3));
            assert_eq!(cols[2].1, &Field::Long(r.offset));
            let ts = r.timestamp_ms.map_or(Field::Null, Field::TimestampMillis);
            assert_eq!(cols[3].1, &ts);
            let bytes =
                |b: &Option<Vec<u8>>| b.clone().map_or(Field::Null, |b| Field::Bytes(b.into()));
            assert_eq!(cols[4].1, &bytes(&r.key), "offset {}", r.offset);
            assert_eq!(cols[5].1, &bytes(&r.value), "offset {}", r.offset);
            let Field::ListInternal(list) = cols[6].1 else {
                panic!("headers: {:?}", cols[6].1)
            };
            let got: Vec<(Field, Field)> = list
                .elements()
                .iter()
                .map(|e| {
                    let Field::Group(g) = e else { panic!("{e:?}") };
                    let kv: Vec<_> = g.get_column_iter().map(|(_, f)| f.clone()).collect();
                    (kv[0].clone(), kv[1].clone())
                })
                .collect();
            let want: Vec<(Field, Field)> = r
                .headers
                .iter()
                .map(|h| (Field::Bytes(h.key.clone().into()), bytes(&h.value)))
                .collect();
            assert_eq!(got, want, "offset {}", r.offset);
        }
    }

    #[test]
    fn typed_columns_follow_the_schema_and_a_misfit_leaves_no_trace() {
        let o = opts(
            1 << 20,
            Some("seq long, region string, lat double nullable, ok boolean nullable"),
        );
        let rs = records(20);
        let mut e = ParquetEncoder::new("flume.txn", Compression::Zstd, &o).unwrap();
        let misfit = Record {
            value: Some(br#"{"seq": "seven", "region": "x"}"#.to_vec()),
            ..rs[1].clone()
        };
        for (i, r) in rs.iter().enumerate() {
            e.push(3, r).unwrap();
            if i == 5 {
                let err = e.push(3, &misfit).unwrap_err();
                assert!(err.to_string().contains("\"seq\""), "{err}");
                let err = e.push(
                    3,
                    &Record {
                        value: Some(b"not json".to_vec()),
                        ..rs[1].clone()
                    },
                );
                assert!(matches!(err, Err(PushError::Misfit(_))));
            }
        }
        let with_misfits = e.finish().unwrap();
        assert!(with_misfits == encode(&o, Compression::Zstd, &rs, 0));
        let (_, read) = rows(with_misfits);
        for (r, row) in rs.iter().zip(&read) {
            let typed: Vec<(&String, &Field)> = row.get_column_iter().skip(7).collect();
            assert_eq!(typed.len(), 4);
            assert_eq!(typed[0].0, "seq");
            match &r.value {
                // A tombstone keeps its row, typed columns null.
                None => assert!(typed.iter().all(|(_, f)| **f == Field::Null)),
                Some(_) => {
                    let i = r.offset - 100;
                    assert_eq!(typed[0].1, &Field::Long(i));
                    assert_eq!(typed[1].1, &Field::Str(format!("r{}", i % 4)));
                    assert_eq!((typed[2].1, typed[3].1), (&Field::Null, &Field::Null));
                }
            }
        }
    }
}
