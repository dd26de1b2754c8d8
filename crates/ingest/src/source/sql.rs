//! SQL sources: PostgreSQL and MySQL/MariaDB tables or queries through sqlx.
//!
//! The columns and their declared types are read from the catalog first (a table's own
//! columns; a query's through a temporary view or table of it on the same connection), so
//! that numerics keep their precision and an unsupported type is refused by name before any
//! row moves. Rows are then streamed with `fetch()` — the server sends the result as it is
//! read, nothing holds the whole table — and appended to one Arrow builder per column,
//! `batch_rows` rows per batch, handed over through a channel two batches deep.
//!
//! Types: integers (unsigned ones widened), floats, numeric/decimal → `Decimal128(p, s)` when
//! the precision is at most 38 (else text), text → `Utf8`, booleans, dates, timestamps →
//! `Timestamp(µs)` (`UTC` for `timestamptz`/MySQL `TIMESTAMP`), bytea/blobs → `Binary`,
//! uuid/json → `Utf8`. Sessions run in UTC. A new dialect (SQL Server) is one more
//! [`Dialect`] arm: its catalog query, its quoting and casts, and its row decoding.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures::TryStreamExt;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Row};

use super::{BatchStream, Source, Watermark, channel_stream};
use crate::definition::{SourceDefinition, SourceKind};
use crate::error::{IngestError, Redactor};

/// The dialects this build speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
}

#[derive(Clone)]
enum Pool {
    Pg(PgPool),
    My(MySqlPool),
}

/// How a column's values are carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    /// Read as text, parsed into `Decimal128(p, s)`.
    Decimal(u8, i8),
    Text,
    Binary,
    Date,
    Ts,
    TsTz,
}

impl Kind {
    fn arrow(self) -> DataType {
        match self {
            Self::Bool => DataType::Boolean,
            Self::I8 => DataType::Int8,
            Self::I16 => DataType::Int16,
            Self::I32 => DataType::Int32,
            Self::I64 => DataType::Int64,
            Self::F32 => DataType::Float32,
            Self::F64 => DataType::Float64,
            Self::Decimal(p, s) => DataType::Decimal128(p, s),
            Self::Text => DataType::Utf8,
            Self::Binary => DataType::Binary,
            Self::Date => DataType::Date32,
            Self::Ts => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::TsTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// The Arrow schema of the batches built from `columns` (every column nullable).
fn schema_of(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.arrow(), true))
            .collect::<Vec<_>>(),
    ))
}

/// One column: its name, how it is read, and the expression that selects it.
#[derive(Clone, Debug)]
struct Column {
    name: String,
    kind: Kind,
    /// The type as the database names it (for the watermark's cast).
    declared: String,
    select: String,
}

/// A PostgreSQL or MySQL/MariaDB table or query.
pub struct SqlSource {
    name: String,
    dialect: Dialect,
    pool: Pool,
    /// `"schema"."table"` or `(query) AS src`.
    from: String,
    columns: Vec<Column>,
    schema: SchemaRef,
    redact: Redactor,
}

impl std::fmt::Debug for SqlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSource")
            .field("name", &self.name)
            .finish()
    }
}

/// Whether another attempt may help: the connection went away (I/O, a server shutting the
/// session down, SQLSTATE class 08 and 57P), a pool timeout, a serialization failure or a
/// deadlock. Refused logins, missing tables and bad SQL are permanent.
fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08") || c.starts_with("57P") || matches!(&*c, "40001" | "40P01")
        }),
        _ => false,
    }
}

impl SqlSource {
    /// Connect with `url` (already resolved) and read the columns of the definition's
    /// table or query.
    pub async fn connect(def: &SourceDefinition, url: &str) -> Result<Self, IngestError> {
        let dialect = match def.kind {
            SourceKind::Postgres => Dialect::Postgres,
            SourceKind::Mysql => Dialect::MySql,
            other => {
                return Err(IngestError::Source {
                    source_name: def.display_name(),
                    detail: format!("{} is not a SQL source", other.as_str()),
                    transient: false,
                });
            }
        };
        let redact = Redactor::for_url(url);
        let name = format!(
            "{} {}",
            def.kind.as_str(),
            def.table
                .clone()
                .unwrap_or_else(|| format!("query for {}", def.target))
        );
        let fail = |what: &str, e: sqlx::Error| IngestError::Source {
            source_name: name.clone(),
            detail: redact.clean(&format!("{what}: {e}")),
            transient: transient(&e),
        };
        let pool = match dialect {
            Dialect::Postgres => {
                let opts = PgConnectOptions::from_str(url)
                    .map_err(|e| fail("invalid connection URL", e))?
                    .options([("TimeZone", "UTC")])
                    // A full scan is slow by design: not a warning (nor a log of its SQL).
                    .log_slow_statements(log::LevelFilter::Off, Default::default());
                // One plain connection first: a refused connection or login fails at once
                // instead of being retried by the pool until its acquire timeout.
                opts.connect()
                    .await
                    .map_err(|e| fail("cannot connect", e))?
                    .close()
                    .await
                    .map_err(|e| fail("cannot connect", e))?;
                Pool::Pg(
                    PgPoolOptions::new()
                        .max_connections(2)
                        .acquire_timeout(std::time::Duration::from_secs(30))
                        .connect_with(opts)
                        .await
                        .map_err(|e| fail("cannot connect", e))?,
                )
            }
            Dialect::MySql => {
                let opts = MySqlConnectOptions::from_str(url)
                    .map_err(|e| fail("invalid connection URL", e))?
                    .timezone(Some("+00:00".to_owned()))
                    .log_slow_statements(log::LevelFilter::Off, Default::default());
                opts.connect()
                    .await
                    .map_err(|e| fail("cannot connect", e))?
                    .close()
                    .await
                    .map_err(|e| fail("cannot connect", e))?;
                Pool::My(
                    MySqlPoolOptions::new()
                        .max_connections(2)
                        .acquire_timeout(std::time::Duration::from_secs(30))
                        .connect_with(opts)
                        .await
                        .map_err(|e| fail("cannot connect", e))?,
                )
            }
        };
        let from = match (&def.table, &def.query) {
            (Some(t), _) => quote_table(dialect, t),
            (None, Some(q)) => format!("({}) AS src", q.trim().trim_end_matches(';')),
            (None, None) => {
                return Err(IngestError::Source {
                    source_name: name,
                    detail: "needs a table or a query".into(),
                    transient: false,
                });
            }
        };
        let described = match &pool {
            Pool::Pg(p) => describe_pg(p, def).await,
            Pool::My(p) => describe_mysql(p, def).await,
        }
        .map_err(|e| fail("cannot read the columns", e))?;
        let mut columns = Vec::with_capacity(described.len());
        for (col, declared, kind) in described {
            let Some((kind, cast)) = kind else {
                return Err(IngestError::UnsupportedType {
                    source_name: name,
                    column: col,
                    ty: declared,
                });
            };
            let q = quote(dialect, &col);
            let select = match (dialect, cast) {
                (_, Cast::None) => q,
                (Dialect::Postgres, _) => format!("{q}::text"),
                (Dialect::MySql, Cast::Text) => format!("CAST({q} AS CHAR)"),
                (Dialect::MySql, Cast::Signed) => format!("CAST({q} AS SIGNED)"),
            };
            columns.push(Column {
                name: col,
                kind,
                declared,
                select,
            });
        }
        if columns.is_empty() {
            return Err(IngestError::Source {
                source_name: name,
                detail: "has no columns (does the table exist?)".into(),
                transient: false,
            });
        }
        let schema = schema_of(&columns);
        Ok(Self {
            name,
            dialect,
            pool,
            from,
            columns,
            schema,
            redact,
        })
    }

    fn select_sql(&self, after: Option<&Watermark>) -> Result<String, IngestError> {
        let list: Vec<&str> = self.columns.iter().map(|c| c.select.as_str()).collect();
        let mut sql = format!("SELECT {} FROM {}", list.join(", "), self.from);
        if let Some(w) = after {
            let col = self
                .columns
                .iter()
                .find(|c| c.name == w.column)
                .ok_or_else(|| IngestError::Source {
                    source_name: self.name.clone(),
                    detail: format!("watermark column `{}` is not in the source", w.column),
                    transient: false,
                })?;
            let q = quote(self.dialect, &col.name);
            sql.push_str(&match self.dialect {
                Dialect::Postgres => format!(" WHERE {q} > CAST($1 AS {})", col.declared),
                Dialect::MySql => format!(" WHERE {q} > ?"),
            });
        }
        Ok(sql)
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display, transient: bool) -> IngestError {
        IngestError::Source {
            source_name: self.name.clone(),
            detail: self.redact.clean(&format!("{what}: {e}")),
            transient,
        }
    }
}

#[async_trait::async_trait]
impl Source for SqlSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn schema(&self) -> Result<SchemaRef, IngestError> {
        Ok(self.schema.clone())
    }

    /// `SELECT <key columns> FROM …`: only the keys cross the wire.
    async fn key_batches(
        &self,
        primary_key: &[String],
        batch_rows: usize,
    ) -> Result<BatchStream, IngestError> {
        let mut columns = Vec::with_capacity(primary_key.len());
        for k in primary_key {
            let c =
                self.columns
                    .iter()
                    .find(|c| &c.name == k)
                    .ok_or_else(|| IngestError::Data {
                        table: self.name.clone(),
                        detail: format!("primary key column `{k}` is not in the source"),
                    })?;
            columns.push(c.clone());
        }
        let schema = schema_of(&columns);
        if let Pool::Pg(pool) = &self.pool
            && columns
                .iter()
                .all(|c| matches!(c.kind, Kind::I16 | Kind::I32 | Kind::I64 | Kind::Text))
        {
            let list: Vec<&str> = columns.iter().map(|c| c.select.as_str()).collect();
            let sql = format!(
                "COPY (SELECT {} FROM {}) TO STDOUT (FORMAT binary)",
                list.join(", "),
                self.from
            );
            let kinds = columns.iter().map(|c| c.kind).collect();
            return Ok(copy_keys(
                pool.clone(),
                sql,
                kinds,
                schema,
                batch_rows.max(1),
                (self.name.clone(), self.redact.clone()),
            ));
        }
        let keys_only = SqlSource {
            name: self.name.clone(),
            dialect: self.dialect,
            pool: self.pool.clone(),
            from: self.from.clone(),
            columns,
            schema,
            redact: self.redact.clone(),
        };
        keys_only.batches(None, batch_rows).await
    }

    async fn batches(
        &self,
        after: Option<&Watermark>,
        batch_rows: usize,
    ) -> Result<BatchStream, IngestError> {
        let sql = self.select_sql(after)?;
        let bind = after.map(|w| w.after.clone());
        let batch_rows = batch_rows.max(1);
        let (tx, stream) = channel_stream(2);
        let columns = self.columns.clone();
        let schema = self.schema.clone();
        let pool = self.pool.clone();
        let (name, redact) = (self.name.clone(), self.redact.clone());
        let source_name = name.clone();
        let fail = move |e: sqlx::Error| IngestError::Source {
            source_name: name.clone(),
            detail: redact.clean(&format!("read failed: {e}")),
            transient: transient(&e),
        };
        tokio::spawn(async move {
            let mut b = Builders::new(&columns, batch_rows);
            let run = async {
                macro_rules! drain {
                    ($rows:expr, $push:ident) => {{
                        let mut rows = $rows;
                        while let Some(row) = rows.try_next().await.map_err(&fail)? {
                            b.$push(&row)?;
                            if b.len == batch_rows && tx.send(Ok(b.finish(&schema)?)).await.is_err()
                            {
                                return Ok(());
                            }
                        }
                    }};
                }
                match &pool {
                    Pool::Pg(p) => {
                        let mut q = sqlx::query(&sql);
                        if let Some(v) = &bind {
                            q = q.bind(v.as_str());
                        }
                        drain!(q.fetch(p), push_pg);
                    }
                    Pool::My(p) => {
                        let mut q = sqlx::query(&sql);
                        if let Some(v) = &bind {
                            q = q.bind(v.as_str());
                        }
                        drain!(q.fetch(p), push_mysql);
                    }
                }
                if b.len > 0 {
                    let _ = tx.send(Ok(b.finish(&schema)?)).await;
                }
                Ok::<(), IngestError>(())
            };
            if let Err(mut e) = run.await {
                if let IngestError::Source { source_name: n, .. } = &mut e
                    && n.is_empty()
                {
                    *n = source_name;
                }
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(stream)
    }

    async fn count(&self) -> Result<u64, IngestError> {
        let sql = format!("SELECT COUNT(*) FROM {}", self.from);
        let n: i64 = match &self.pool {
            Pool::Pg(p) => sqlx::query_scalar(&sql).fetch_one(p).await,
            Pool::My(p) => sqlx::query_scalar(&sql).fetch_one(p).await,
        }
        .map_err(|e| {
            let t = transient(&e);
            self.fail("cannot count rows", e, t)
        })?;
        Ok(n.max(0) as u64)
    }
}

/// The key columns of a PostgreSQL source by binary `COPY`, for integer and text keys: the
/// server sends the rows as one stream instead of a message each, and the fields are decoded
/// straight into Arrow builders (about twice the row-by-row read's speed for millions of keys).
/// The format: <https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4>.
fn copy_keys(
    pool: PgPool,
    sql: String,
    kinds: Vec<Kind>,
    schema: SchemaRef,
    batch_rows: usize,
    (name, redact): (String, Redactor),
) -> BatchStream {
    use futures::StreamExt;
    use sqlx::postgres::PgPoolCopyExt;
    let (tx, stream) = channel_stream(2);
    let fail = move |detail: String, transient: bool| IngestError::Source {
        source_name: name.clone(),
        detail: redact.clean(&detail),
        transient,
    };
    tokio::spawn(async move {
        let run = async {
            let mut data = pool
                .copy_out_raw(&sql)
                .await
                .map_err(|e| fail(format!("key scan failed: {e}"), transient(&e)))?;
            let mut keys = CopyKeys::new(kinds, batch_rows);
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = data.next().await {
                let chunk =
                    chunk.map_err(|e| fail(format!("key scan failed: {e}"), transient(&e)))?;
                buf.extend_from_slice(&chunk);
                let used = keys
                    .parse(&buf)
                    .map_err(|e| fail(format!("key scan: {e}"), false))?;
                buf.drain(..used);
                while keys.len >= batch_rows {
                    let b = keys
                        .finish(&schema)
                        .map_err(|e| fail(e.to_string(), false))?;
                    if tx.send(Ok(b)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if !keys.ended || !buf.is_empty() {
                return Err(fail("key scan: the COPY data ended early".into(), true));
            }
            if keys.len > 0 {
                let b = keys
                    .finish(&schema)
                    .map_err(|e| fail(e.to_string(), false))?;
                let _ = tx.send(Ok(b)).await;
            }
            Ok::<(), IngestError>(())
        };
        if let Err(e) = run.await {
            let _ = tx.send(Err(e)).await;
        }
    });
    stream
}

/// One key column's values being collected.
enum KeyBuilder {
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    Text(StringBuilder),
}

impl KeyBuilder {
    fn new(kind: Kind, capacity: usize) -> Self {
        match kind {
            Kind::I16 => Self::I16(Int16Builder::with_capacity(capacity)),
            Kind::I32 => Self::I32(Int32Builder::with_capacity(capacity)),
            Kind::I64 => Self::I64(Int64Builder::with_capacity(capacity)),
            _ => Self::Text(StringBuilder::new()),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::I16(b) => Arc::new(b.finish()),
            Self::I32(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
        }
    }
}

/// Decodes binary `COPY` data of integer and text columns into Arrow builders.
struct CopyKeys {
    kinds: Vec<Kind>,
    builders: Vec<KeyBuilder>,
    len: usize,
    header: bool,
    ended: bool,
}

impl CopyKeys {
    fn new(kinds: Vec<Kind>, batch_rows: usize) -> Self {
        let builders = kinds
            .iter()
            .map(|k| KeyBuilder::new(*k, batch_rows))
            .collect();
        Self {
            kinds,
            builders,
            len: 0,
            header: false,
            ended: false,
        }
    }

    /// Decode the complete rows at the start of `buf`; the bytes used.
    fn parse(&mut self, buf: &[u8]) -> Result<usize, String> {
        const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
        let mut at = 0;
        if !self.header {
            if buf.len() < SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &buf[..SIGNATURE.len()] != SIGNATURE {
                return Err("not binary COPY data".into());
            }
            let ext = u32::from_be_bytes(buf[15..19].try_into().expect("4 bytes")) as usize;
            if buf.len() < 19 + ext {
                return Ok(0);
            }
            at = 19 + ext;
            self.header = true;
        }
        loop {
            if self.ended {
                return Ok(at);
            }
            let Some(fields) = buf.get(at..at + 2) else {
                return Ok(at);
            };
            let fields = i16::from_be_bytes(fields.try_into().expect("2 bytes"));
            if fields == -1 {
                self.ended = true;
                return Ok(at + 2);
            }
            if fields as usize != self.kinds.len() {
                return Err(format!(
                    "a row of {fields} fields, not {}",
                    self.kinds.len()
                ));
            }
            // The whole row must be here before any field is taken.
            let mut end = at + 2;
            let mut spans = Vec::with_capacity(self.kinds.len());
            for _ in 0..self.kinds.len() {
                let Some(len) = buf.get(end..end + 4) else {
                    return Ok(at);
                };
                let len = i32::from_be_bytes(len.try_into().expect("4 bytes"));
                end += 4;
                if len < 0 {
                    spans.push(None);
                    continue;
                }
                let len = len as usize;
                if buf.len() < end + len {
                    return Ok(at);
                }
                spans.push(Some(end..end + len));
                end += len;
            }
            for (b, span) in self.builders.iter_mut().zip(spans) {
                let v = span.map(|r| &buf[r]);
                let bad =
                    |what: &str| format!("a {what} field of {} bytes", v.map_or(0, |v| v.len()));
                match (b, v) {
                    (KeyBuilder::I16(b), None) => b.append_null(),
                    (KeyBuilder::I16(b), Some(v)) => b.append_value(i16::from_be_bytes(
                        v.try_into().map_err(|_| bad("smallint"))?,
                    )),
                    (KeyBuilder::I32(b), None) => b.append_null(),
                    (KeyBuilder::I32(b), Some(v)) => b.append_value(i32::from_be_bytes(
                        v.try_into().map_err(|_| bad("integer"))?,
                    )),
                    (KeyBuilder::I64(b), None) => b.append_null(),
                    (KeyBuilder::I64(b), Some(v)) => {
                        b.append_value(i64::from_be_bytes(v.try_into().map_err(|_| bad("bigint"))?))
                    }
                    (KeyBuilder::Text(b), None) => b.append_null(),
                    (KeyBuilder::Text(b), Some(v)) => {
                        b.append_value(std::str::from_utf8(v).map_err(|_| bad("non-UTF-8 text"))?)
                    }
                }
            }
            self.len += 1;
            at = end;
        }
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        self.len = 0;
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// How a column is selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cast {
    None,
    Text,
    Signed,
}

type Described = Vec<(String, String, Option<(Kind, Cast)>)>;

fn quote(dialect: Dialect, ident: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("\"{}\"", ident.replace('"', "\"\"")),
        Dialect::MySql => format!("`{}`", ident.replace('`', "``")),
    }
}

fn quote_table(dialect: Dialect, table: &str) -> String {
    table
        .split('.')
        .map(|p| quote(dialect, p))
        .collect::<Vec<_>>()
        .join(".")
}

const PG_COLUMNS: &str = "SELECT a.attname::text, t.typname::text, a.atttypmod \
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
     WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum";

async fn describe_pg(pool: &PgPool, def: &SourceDefinition) -> Result<Described, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let rows: Vec<(String, String, i32)> = match (&def.table, &def.query) {
        (Some(t), _) => {
            sqlx::query_as(PG_COLUMNS)
                .bind(quote_table(Dialect::Postgres, t))
                .fetch_all(&mut *conn)
                .await?
        }
        (None, Some(q)) => {
            let view = format!("replicator_ingest_{}", uuid::Uuid::new_v4().simple());
            sqlx::raw_sql(&format!(
                "CREATE TEMPORARY VIEW {view} AS {}",
                q.trim().trim_end_matches(';')
            ))
            .execute(&mut *conn)
            .await?;
            let rows = sqlx::query_as(PG_COLUMNS)
                .bind(&view)
                .fetch_all(&mut *conn)
                .await;
            sqlx::raw_sql(&format!("DROP VIEW IF EXISTS {view}"))
                .execute(&mut *conn)
                .await?;
            rows?
        }
        (None, None) => Vec::new(),
    };
    Ok(rows
        .into_iter()
        .map(|(name, ty, typmod)| {
            let kind = pg_kind(&ty, typmod);
            let declared = match (&*ty, kind) {
                ("numeric", Some((Kind::Decimal(p, s), _))) => format!("numeric({p},{s})"),
                _ => ty,
            };
            (name, declared, kind)
        })
        .collect())
}

fn pg_kind(ty: &str, typmod: i32) -> Option<(Kind, Cast)> {
    Some(match ty {
        "bool" => (Kind::Bool, Cast::None),
        "int2" => (Kind::I16, Cast::None),
        "int4" => (Kind::I32, Cast::None),
        "int8" => (Kind::I64, Cast::None),
        "float4" => (Kind::F32, Cast::None),
        "float8" => (Kind::F64, Cast::None),
        "numeric" => {
            let (p, s) = if typmod >= 4 {
                (((typmod - 4) >> 16) & 0xffff, (typmod - 4) & 0xffff)
            } else {
                (0, 0)
            };
            if (1..=38).contains(&p) && s <= p {
                (Kind::Decimal(p as u8, s as i8), Cast::Text)
            } else {
                (Kind::Text, Cast::Text)
            }
        }
        "text" | "varchar" => (Kind::Text, Cast::None),
        "bpchar" | "name" | "citext" | "uuid" | "json" | "jsonb" => (Kind::Text, Cast::Text),
        "bytea" => (Kind::Binary, Cast::None),
        "date" => (Kind::Date, Cast::None),
        "timestamp" => (Kind::Ts, Cast::None),
        "timestamptz" => (Kind::TsTz, Cast::None),
        _ => return None,
    })
}

async fn describe_mysql(
    pool: &MySqlPool,
    def: &SourceDefinition,
) -> Result<Described, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let rows: Vec<MySqlRow> = match (&def.table, &def.query) {
        (Some(t), _) => {
            sqlx::raw_sql(&format!(
                "SHOW COLUMNS FROM {}",
                quote_table(Dialect::MySql, t)
            ))
            .fetch_all(&mut *conn)
            .await?
        }
        (None, Some(q)) => {
            let tmp = format!("replicator_ingest_{}", uuid::Uuid::new_v4().simple());
            sqlx::raw_sql(&format!(
                "CREATE TEMPORARY TABLE {tmp} AS SELECT * FROM ({}) AS src LIMIT 0",
                q.trim().trim_end_matches(';')
            ))
            .execute(&mut *conn)
            .await?;
            let rows = sqlx::raw_sql(&format!("SHOW COLUMNS FROM {tmp}"))
                .fetch_all(&mut *conn)
                .await;
            sqlx::raw_sql(&format!("DROP TEMPORARY TABLE IF EXISTS {tmp}"))
                .execute(&mut *conn)
                .await?;
            rows?
        }
        (None, None) => Vec::new(),
    };
    let mut out = Vec::new();
    for r in rows {
        let name: String = text_at(&r, 0)?;
        let ty: String = text_at(&r, 1)?;
        let kind = mysql_kind(&ty);
        out.push((name, ty, kind));
    }
    Ok(out)
}

/// A text column of a `SHOW` result (MySQL may send them as binary strings).
fn text_at(r: &MySqlRow, i: usize) -> Result<String, sqlx::Error> {
    let raw: Vec<u8> = r.try_get_unchecked(i)?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

fn mysql_kind(ty: &str) -> Option<(Kind, Cast)> {
    let t = ty.trim().to_ascii_lowercase();
    let base: String = t
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let args = t
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(a, _)| a.trim().to_owned());
    let unsigned = t.contains("unsigned");
    Some(match base.as_str() {
        "tinyint" | "bool" | "boolean" if !unsigned && args.as_deref() == Some("1") => {
            (Kind::Bool, Cast::None)
        }
        "bool" | "boolean" => (Kind::Bool, Cast::None),
        "tinyint" if unsigned => (Kind::I16, Cast::Signed),
        "tinyint" => (Kind::I8, Cast::None),
        "smallint" if unsigned => (Kind::I32, Cast::Signed),
        "smallint" => (Kind::I16, Cast::None),
        "mediumint" | "int" | "integer" if unsigned => (Kind::I64, Cast::Signed),
        "mediumint" | "int" | "integer" => (Kind::I32, Cast::None),
        "bigint" if unsigned => (Kind::Decimal(20, 0), Cast::Text),
        "bigint" => (Kind::I64, Cast::None),
        "float" => (Kind::F32, Cast::None),
        "double" | "real" => (Kind::F64, Cast::None),
        "decimal" | "numeric" | "dec" | "fixed" => {
            let (p, s) = args
                .as_deref()
                .map(|a| {
                    let mut it = a.split(',').map(|x| x.trim().parse::<u32>().ok());
                    (it.next().flatten(), it.next().flatten())
                })
                .unwrap_or((Some(10), Some(0)));
            match (p, s.or(Some(0))) {
                (Some(p), Some(s)) if (1..=38).contains(&p) && s <= p => {
                    (Kind::Decimal(p as u8, s as i8), Cast::Text)
                }
                _ => (Kind::Text, Cast::Text),
            }
        }
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "json" | "enum"
        | "set" => (Kind::Text, Cast::Text),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            (Kind::Binary, Cast::None)
        }
        "date" => (Kind::Date, Cast::None),
        "datetime" => (Kind::Ts, Cast::None),
        "timestamp" => (Kind::TsTz, Cast::None),
        _ => return None,
    })
}

/// One Arrow builder per column.
enum Builder {
    Bool(BooleanBuilder),
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Dec(Decimal128Builder, u8, i8),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    TsTz(TimestampMicrosecondBuilder),
}

struct Builders {
    cols: Vec<(String, Builder)>,
    len: usize,
}

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");

fn days(d: NaiveDate) -> i32 {
    (d - EPOCH).num_days() as i32
}

fn column_err(column: &str, detail: impl std::fmt::Display) -> IngestError {
    IngestError::Source {
        source_name: String::new(),
        detail: format!("column `{column}`: {detail}"),
        transient: false,
    }
}

impl Builders {
    fn new(columns: &[Column], capacity: usize) -> Self {
        let cols = columns
            .iter()
            .map(|c| {
                let b = match c.kind {
                    Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(capacity)),
                    Kind::I8 => Builder::I8(Int8Builder::with_capacity(capacity)),
                    Kind::I16 => Builder::I16(Int16Builder::with_capacity(capacity)),
                    Kind::I32 => Builder::I32(Int32Builder::with_capacity(capacity)),
                    Kind::I64 => Builder::I64(Int64Builder::with_capacity(capacity)),
                    Kind::F32 => Builder::F32(Float32Builder::with_capacity(capacity)),
                    Kind::F64 => Builder::F64(Float64Builder::with_capacity(capacity)),
                    Kind::Decimal(p, s) => {
                        Builder::Dec(Decimal128Builder::with_capacity(capacity), p, s)
                    }
                    Kind::Text => Builder::Str(StringBuilder::new()),
                    Kind::Binary => Builder::Bin(BinaryBuilder::new()),
                    Kind::Date => Builder::Date(Date32Builder::with_capacity(capacity)),
                    Kind::Ts => Builder::Ts(TimestampMicrosecondBuilder::with_capacity(capacity)),
                    Kind::TsTz => {
                        Builder::TsTz(TimestampMicrosecondBuilder::with_capacity(capacity))
                    }
                };
                (c.name.clone(), b)
            })
            .collect();
        Self { cols, len: 0 }
    }

    fn push_pg(&mut self, row: &PgRow) -> Result<(), IngestError> {
        for (i, (name, b)) in self.cols.iter_mut().enumerate() {
            let e = |e: sqlx::Error| column_err(name, e);
            match b {
                Builder::Bool(x) => x.append_option(row.try_get::<Option<bool>, _>(i).map_err(e)?),
                Builder::I8(x) => x.append_option(
                    row.try_get::<Option<i16>, _>(i)
                        .map_err(e)?
                        .map(|v| v as i8),
                ),
                Builder::I16(x) => x.append_option(row.try_get::<Option<i16>, _>(i).map_err(e)?),
                Builder::I32(x) => x.append_option(row.try_get::<Option<i32>, _>(i).map_err(e)?),
                Builder::I64(x) => x.append_option(row.try_get::<Option<i64>, _>(i).map_err(e)?),
                Builder::F32(x) => x.append_option(row.try_get::<Option<f32>, _>(i).map_err(e)?),
                Builder::F64(x) => x.append_option(row.try_get::<Option<f64>, _>(i).map_err(e)?),
                Builder::Dec(x, _, s) => {
                    let v: Option<&str> = row.try_get(i).map_err(e)?;
                    x.append_option(v.map(|v| parse_decimal(v, *s, name)).transpose()?)
                }
                Builder::Str(x) => x.append_option(row.try_get::<Option<&str>, _>(i).map_err(e)?),
                Builder::Bin(x) => x.append_option(row.try_get::<Option<&[u8]>, _>(i).map_err(e)?),
                Builder::Date(x) => {
                    x.append_option(row.try_get::<Option<NaiveDate>, _>(i).map_err(e)?.map(days))
                }
                Builder::Ts(x) => x.append_option(
                    row.try_get::<Option<NaiveDateTime>, _>(i)
                        .map_err(e)?
                        .map(|t| t.and_utc().timestamp_micros()),
                ),
                Builder::TsTz(x) => x.append_option(
                    row.try_get::<Option<DateTime<Utc>>, _>(i)
                        .map_err(e)?
                        .map(|t| t.timestamp_micros()),
                ),
            }
        }
        self.len += 1;
        Ok(())
    }

    fn push_mysql(&mut self, row: &MySqlRow) -> Result<(), IngestError> {
        for (i, (name, b)) in self.cols.iter_mut().enumerate() {
            let e = |e: sqlx::Error| column_err(name, e);
            let int = |row: &MySqlRow| row.try_get::<Option<i64>, _>(i);
            match b {
                Builder::Bool(x) => x.append_option(row.try_get::<Option<bool>, _>(i).map_err(e)?),
                Builder::I8(x) => x.append_option(int(row).map_err(e)?.map(|v| v as i8)),
                Builder::I16(x) => x.append_option(int(row).map_err(e)?.map(|v| v as i16)),
                Builder::I32(x) => x.append_option(int(row).map_err(e)?.map(|v| v as i32)),
                Builder::I64(x) => x.append_option(int(row).map_err(e)?),
                Builder::F32(x) => x.append_option(row.try_get::<Option<f32>, _>(i).map_err(e)?),
                Builder::F64(x) => x.append_option(row.try_get::<Option<f64>, _>(i).map_err(e)?),
                Builder::Dec(x, _, s) => {
                    let v: Option<&str> = row.try_get(i).map_err(e)?;
                    x.append_option(v.map(|v| parse_decimal(v, *s, name)).transpose()?)
                }
                Builder::Str(x) => x.append_option(row.try_get::<Option<&str>, _>(i).map_err(e)?),
                Builder::Bin(x) => x.append_option(row.try_get::<Option<&[u8]>, _>(i).map_err(e)?),
                Builder::Date(x) => {
                    x.append_option(row.try_get::<Option<NaiveDate>, _>(i).map_err(e)?.map(days))
                }
                Builder::Ts(x) => x.append_option(
                    row.try_get::<Option<NaiveDateTime>, _>(i)
                        .map_err(e)?
                        .map(|t| t.and_utc().timestamp_micros()),
                ),
                Builder::TsTz(x) => x.append_option(
                    row.try_get::<Option<DateTime<Utc>>, _>(i)
                        .map_err(e)?
                        .map(|t| t.timestamp_micros()),
                ),
            }
        }
        self.len += 1;
        Ok(())
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, IngestError> {
        let arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|(_, b)| -> Result<ArrayRef, arrow::error::ArrowError> {
                Ok(match b {
                    Builder::Bool(x) => Arc::new(x.finish()),
                    Builder::I8(x) => Arc::new(x.finish()),
                    Builder::I16(x) => Arc::new(x.finish()),
                    Builder::I32(x) => Arc::new(x.finish()),
                    Builder::I64(x) => Arc::new(x.finish()),
                    Builder::F32(x) => Arc::new(x.finish()),
                    Builder::F64(x) => Arc::new(x.finish()),
                    Builder::Dec(x, p, s) => Arc::new(x.finish().with_precision_and_scale(*p, *s)?),
                    Builder::Str(x) => Arc::new(x.finish()),
                    Builder::Bin(x) => Arc::new(x.finish()),
                    Builder::Date(x) => Arc::new(x.finish()),
                    Builder::Ts(x) => Arc::new(x.finish()),
                    Builder::TsTz(x) => Arc::new(x.finish().with_timezone("UTC")),
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| column_err("*", e))?;
        self.len = 0;
        RecordBatch::try_new(schema.clone(), arrays).map_err(|e| column_err("*", e))
    }
}

/// `-123.45` at scale 2 → `-12345`. More fraction digits than the scale are refused (the
/// database's own text never has them).
pub(crate) fn parse_decimal(v: &str, scale: i8, column: &str) -> Result<i128, IngestError> {
    let bad = || column_err(column, format!("`{v}` is not a decimal of scale {scale}"));
    let v = v.trim();
    let (neg, digits) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = scale.max(0) as usize;
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale {
        return Err(bad());
    }
    let mut n: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add((b - b'0') as i128))
            .ok_or_else(bad)?;
    }
    for _ in frac.len()..scale {
        n = n.checked_mul(10).ok_or_else(bad)?;
    }
    Ok(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_at_their_scale() {
        assert_eq!(parse_decimal("-123.45", 2, "c").unwrap(), -12345);
        assert_eq!(parse_decimal("7", 3, "c").unwrap(), 7000);
        assert_eq!(parse_decimal("0.500", 1, "c").unwrap(), 5);
        assert!(parse_decimal("NaN", 2, "c").is_err());
        assert!(parse_decimal("1.234", 2, "c").is_err());
    }

    #[test]
    fn mysql_types_map() {
        assert_eq!(mysql_kind("tinyint(1)"), Some((Kind::Bool, Cast::None)));
        assert_eq!(
            mysql_kind("int(10) unsigned"),
            Some((Kind::I64, Cast::Signed))
        );
        assert_eq!(
            mysql_kind("decimal(12,2)"),
            Some((Kind::Decimal(12, 2), Cast::Text))
        );
        assert_eq!(mysql_kind("decimal(65,2)"), Some((Kind::Text, Cast::Text)));
        assert_eq!(mysql_kind("time"), None);
        assert_eq!(
            pg_kind("numeric", ((12 << 16) | 2) + 4),
            Some((Kind::Decimal(12, 2), Cast::Text))
        );
        assert_eq!(pg_kind("numeric", -1), Some((Kind::Text, Cast::Text)));
        assert_eq!(pg_kind("interval", -1), None);
    }
}
