//! End-to-end tests live in `tests/tests/`; shared test servers live here: the Databricks
//! workspace emulator, the Snowflake SQL API emulator, and the emulator processes
//! (`servers`: moto) other crates' tests use too.

pub mod databricks_emulator;
pub mod s3_gateway;
pub mod servers;
pub mod snowflake_emulator;
