//! End-to-end tests live in `tests/tests/`; shared test servers live here: the Databricks
//! workspace emulator, and the emulator processes (`servers`: moto) other crates' tests use
//! too.

pub mod databricks_emulator;
pub mod servers;
