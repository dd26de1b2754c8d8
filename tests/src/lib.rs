//! End-to-end tests live in `tests/tests/`; shared test servers live here.

pub mod databricks_emulator;
pub mod snowflake_emulator;
