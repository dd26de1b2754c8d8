//! Ingestion: rows of operational databases (PostgreSQL, MySQL/MariaDB) and files (CSV,
//! JSON lines, Parquet) loaded into Delta tables, a full load first and a merge by primary
//! key afterwards, with bounded memory.
//!
//! - [`definition`]: what to ingest ([`SourceDefinition`], one YAML file per source or a
//!   list), validated with the key named on error; connection secrets only as references;
//! - [`source`]: the source seam ([`Source`]: an Arrow schema and a stream of bounded Arrow
//!   batches, optionally after a watermark) and its implementations, built by one registry
//!   function ([`source::open`]); SQL Server is one more implementation of the trait;
//! - [`load`]: [`ingest`] — target missing → full load (batches streamed to Parquet files,
//!   one commit creating the table); target present → a copy-on-write merge in one commit
//!   (rows after the watermark, or every row compared by key and row hash), nothing changed
//!   → no commit; schema drift handled (new columns added, type changes refused);
//! - [`validate`]: row counts and primary-key consistency of a target against its source.
//!
//! Internals: `hash` reduces rows to a key (Arrow's row format) and a 64-bit row hash,
//! `spill` partitions `(key, hash, tag)` records by key into buffers that spill to temporary
//! files, `target` reads and writes the Delta table's files.
//!
//! Delivery: an ingestion is one Delta commit or none. Files written before a failure are
//! left unreferenced (a later `VACUUM` removes them); the table never holds a partial load.
//! Two ingestions of one table at once: the second commit fails with
//! [`IngestError::CommitConflict`] (the fleet's lease keeps them apart in practice).

pub mod definition;
mod dv;
pub mod error;
mod hash;
mod join;
pub mod load;
pub mod source;
mod spill;
mod target;
pub mod validate;

pub use definition::{ConnectionRef, SourceDefinition, SourceDefinitions, SourceKind};
pub use error::{IngestError, redact_url};
pub use load::{IngestOptions, IngestReport, LoadMode, LoadSpec, ingest, ingest_definition};
pub use source::{BatchStream, Source, SourceContext, Watermark, open};
pub use validate::{KeyCheck, check_keys, count_source, count_target};
