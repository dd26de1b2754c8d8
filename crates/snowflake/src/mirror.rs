//! Reading Snowflake's current state with `SHOW` and applying a plan.

use crate::SnowflakeError;
use crate::client::{SqlClient, StatementResult};
use crate::ddl::{Current, CurrentTable, Plan};
use crate::ident::Name;

fn column<'a>(
    r: &'a StatementResult,
    row: usize,
    name: &str,
    command: &str,
) -> Result<&'a str, SnowflakeError> {
    r.get(row, name).ok_or_else(|| SnowflakeError::Protocol {
        path: "/api/v2/statements".into(),
        detail: format!("`{command}` returned a row without column `{name}`"),
    })
}

/// What exists in the account: external volumes, catalog integrations, databases, schemas and
/// Iceberg tables, as `SHOW` lists them (names exactly as stored).
pub async fn read_current(client: &SqlClient) -> Result<Current, SnowflakeError> {
    let mut current = Current::default();
    let show = "SHOW EXTERNAL VOLUMES";
    let r = client.query(show).await?;
    for i in 0..r.rows.len() {
        current
            .volumes
            .insert(column(&r, i, "name", show)?.to_owned());
    }
    let show = "SHOW CATALOG INTEGRATIONS";
    let r = client.query(show).await?;
    for i in 0..r.rows.len() {
        current
            .integrations
            .insert(column(&r, i, "name", show)?.to_owned());
    }
    let show = "SHOW DATABASES";
    let r = client.query(show).await?;
    for i in 0..r.rows.len() {
        current
            .databases
            .insert(column(&r, i, "name", show)?.to_owned());
    }
    let show = "SHOW SCHEMAS IN ACCOUNT";
    let r = client.query(show).await?;
    for i in 0..r.rows.len() {
        current.schemas.insert((
            column(&r, i, "database_name", show)?.to_owned(),
            column(&r, i, "name", show)?.to_owned(),
        ));
    }
    let show = "SHOW ICEBERG TABLES IN ACCOUNT";
    let r = client.query(show).await?;
    for i in 0..r.rows.len() {
        current.tables.push(CurrentTable {
            name: Name::new(
                column(&r, i, "database_name", show)?,
                column(&r, i, "schema_name", show)?,
                column(&r, i, "name", show)?,
            )?,
            catalog: r.get(i, "catalog_name").unwrap_or("").to_owned(),
        });
    }
    Ok(current)
}

/// Execute the plan's statements in order, stopping at the first failure; returns the
/// redacted text of each statement executed.
pub async fn apply(client: &SqlClient, plan: &Plan) -> Result<Vec<String>, SnowflakeError> {
    let mut done = Vec::new();
    for s in &plan.statements {
        tracing::info!(object = %s.object(), statement = %s, "executing");
        client.execute(s).await?;
        done.push(s.redacted());
    }
    for n in &plan.removed {
        tracing::warn!(table = %n, "gone from the source; kept in Snowflake (drop_removed is off)");
    }
    Ok(done)
}
