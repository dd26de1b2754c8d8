//! A Databricks workspace emulator for tests of the Databricks engine.
//!
//! It serves the documented REST endpoints the engine calls, with their documented wire
//! formats, over plain HTTP on `127.0.0.1:0`:
//!
//! - `POST /oidc/v1/token` (OAuth client credentials, Basic auth, form body);
//! - the SQL Statement Execution API: `POST /api/2.0/sql/statements` (`wait_timeout` `0s` or
//!   `5s`–`50s`, `on_wait_timeout` `CONTINUE`/`CANCEL`, `INLINE` + `JSON_ARRAY` only),
//!   `GET …/statements/{id}`, `POST …/statements/{id}/cancel`; states PENDING → RUNNING →
//!   SUCCEEDED / FAILED / CANCELED; results as `manifest` + `result.data_array`;
//! - Unity Catalog: metastore summary, catalogs, schemas and tables (list with `max_results`
//!   and `page_token`, optionally with empty pages in between; get by name);
//! - the Jobs API 2.2: `GET /api/2.2/jobs/list` (`name`, `limit`, `page_token`) and
//!   `GET /api/2.2/jobs/runs/list` (`job_id`, `active_only`, `completed_only`,
//!   `start_time_from`/`start_time_to`, `limit`, `page_token`), over jobs and runs the test adds
//!   per workspace ([`Workspace::add_job`], [`Workspace::add_run`]);
//! - catalog objects (`catalog_objects.rs`, `catalog_sql.rs`): comments, owners, schema
//!   properties, tags (entity tag assignments API), grants (permissions API), views with their
//!   dependencies, row filters, column masks and functions, changed by strictly parsed SQL
//!   (`CREATE SCHEMA … COMMENT … WITH DBPROPERTIES`, `CREATE OR REPLACE VIEW`, `COMMENT ON`,
//!   `ALTER … SET TAGS / OWNER TO / SET ROW FILTER / ALTER COLUMN …`, `GRANT`, `REVOKE`);
//! - volumes, external locations and storage credentials (`volumes.rs`, also `CREATE
//!   [EXTERNAL] VOLUME` on the warehouse) and the Files API over the volumes' directories
//!   (`files.rs`);
//! - credential vending (`credentials.rs`): temporary table and path credentials, AWS ones
//!   enforced by the S3 gateway in front of moto, Azure ones SAS tokens azurite checks;
//! - Delta Sharing: recipients, shares (`include_shared_data`, `PATCH` updates), share
//!   permissions, providers (derived from recipients other metastores created for this one).
//!
//! Several workspaces share one [`World`], so a recipient created in the source metastore
//! shows up as a provider in the target, and a catalog created `USING SHARE` reads the
//! source's tables. Tables are local Delta directories handled by the native engine
//! (`replicator-lake`): `DEEP CLONE` really clones, `COUNT(*)` really counts, `EXCEPT`
//! really compares rows, `DEEP CLONE … TIMESTAMP AS OF` clones the
//! version of that instant (refusing one after the latest commit, as Delta does). Only the SQL shapes the engine emits are understood, parsed
//! strictly (object names must be backtick-quoted); anything else fails like a warehouse
//! does, with a syntax error.
//!
//! Errors follow the documented format, `{"error_code": …, "message": …}`: a missing object
//! is 404 with a "does not exist" code, an object that exists is 409
//! `RESOURCE_ALREADY_EXISTS`, an unknown path is 404 `ENDPOINT_NOT_FOUND`.
//!
//! Faults can be injected: N throttled answers (429 or 503 with `Retry-After`), statements
//! that fail, statements that never finish, OAuth tokens that expire, paths answered by a
//! bare 404 (no Databricks body) or `ENDPOINT_NOT_FOUND`, objects created by a concurrent
//! run between a client's read and its create. Every call, statement and cancel is recorded
//! for assertions.

mod catalog_objects;
mod catalog_sql;
mod credentials;
mod files;
mod history;
mod jobs;
mod server;
mod sharing;
mod sql;
mod state;
mod statements;
mod unity_catalog;
mod volumes;
mod warehouse;

pub use catalog_objects::{ColumnMeta, Meta, Objects, ViewDef};
pub use credentials::{S3Refusal, service_sas};
pub use server::Workspace;
pub use state::{Call, Faults, RunFields, RunResult, Table, WorkspaceAuth, World};
