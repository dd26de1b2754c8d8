//! Catalogs, schemas, views, and the comments, tags, row filters, masks and owners of tables
//! and views: read both sides now, issue only the difference.

use std::collections::BTreeMap;

use super::sql::{keys, literal, pairs, quote_column, quote_name, quote_principal};
use super::{CatalogError, CatalogSync, Outcome};
use crate::client::{ColumnDetail, ColumnMask, RowFilter, TableDetail};

/// `None` and an empty comment are the same: no comment.
fn comment(c: &Option<String>) -> Option<&str> {
    c.as_deref().filter(|c| !c.is_empty())
}

fn comment_sql(c: Option<&str>) -> Result<String, CatalogError> {
    c.map_or(Ok("NULL".to_owned()), literal)
}

/// `SET TAGS` for tags missing or different on the target, `UNSET TAGS` for tags only the
/// target has (the target is a replica: its tags are the source's). `on` is what follows
/// `ALTER TABLE t` (`""` or ` ALTER COLUMN c`).
fn tag_statements(
    head: &str,
    source: &BTreeMap<String, String>,
    target: &BTreeMap<String, String>,
) -> Result<Vec<String>, CatalogError> {
    let mut out = Vec::new();
    let set: Vec<(&String, &String)> = source
        .iter()
        .filter(|(k, v)| target.get(*k) != Some(*v))
        .collect();
    if !set.is_empty() {
        out.push(format!("{head} SET TAGS {}", pairs(set)?));
    }
    let unset: Vec<&String> = target.keys().filter(|k| !source.contains_key(*k)).collect();
    if !unset.is_empty() {
        out.push(format!("{head} UNSET TAGS {}", keys(unset)?));
    }
    Ok(out)
}

fn columns_sql(cols: &[String]) -> Result<String, CatalogError> {
    let q: Result<Vec<String>, CatalogError> = cols.iter().map(|c| quote_column(c)).collect();
    Ok(q?.join(", "))
}

impl CatalogSync<'_> {
    /// `ALTER <kind> q OWNER TO p` when owners are replicated and the mapped source owner
    /// is not the target's.
    fn owner(
        &self,
        kind: &str,
        quoted: &str,
        object: &str,
        source: &Option<String>,
        target: &Option<String>,
    ) -> Result<Option<String>, CatalogError> {
        let Some(owner) = source.as_deref().filter(|_| self.options.owners) else {
            return Ok(None);
        };
        let mapped = self.mapping.map_principal(owner, object)?;
        Ok((target.as_deref() != Some(mapped.as_str()))
            .then(|| quote_principal(&mapped))
            .transpose()?
            .map(|p| format!("ALTER {kind} {quoted} OWNER TO {p}")))
    }

    /// The catalog: created when missing, its comment (and owner) made the source's.
    pub async fn sync_catalog(&self, catalog: &str) -> Result<Outcome, CatalogError> {
        let object = format!("catalog {catalog}");
        let src = self.source.catalog_detail(catalog).await?.ok_or_else(|| {
            CatalogError::Refused(format!("source catalog {catalog} does not exist"))
        })?;
        let name = self.mapping.map_catalog(catalog, &object)?;
        let q = quote_name(&name)?;
        let tgt = self.target.catalog_detail(&name).await?.unwrap_or_default();
        let mut stmts = Vec::new();
        if tgt.name.is_empty() && !self.planned(&name) {
            stmts.push(format!("CREATE CATALOG IF NOT EXISTS {q}"));
            self.plan(&name);
        }
        if comment(&src.comment) != comment(&tgt.comment) {
            stmts.push(format!(
                "COMMENT ON CATALOG {q} IS {}",
                comment_sql(comment(&src.comment))?
            ));
        }
        stmts.extend(self.owner("CATALOG", &q, &object, &src.owner, &tgt.owner)?);
        self.apply(stmts, Vec::new()).await
    }

    /// The schema `catalog.schema`: created with its comment and properties when missing;
    /// otherwise its comment and the source's properties set. Properties only the target
    /// has are reported, not removed.
    pub async fn sync_schema(&self, schema: &str) -> Result<Outcome, CatalogError> {
        let object = format!("schema {schema}");
        let src = self.source.schema_detail(schema).await?.ok_or_else(|| {
            CatalogError::Refused(format!("source schema {schema} does not exist"))
        })?;
        let name = self.mapping.map_schema(schema, &object)?;
        let q = quote_name(&name)?;
        let mut stmts = Vec::new();
        let mut findings = Vec::new();
        let tgt = match self.target.schema_detail(&name).await? {
            None if self.planned(&name) => Some(Default::default()),
            t => t,
        };
        match tgt {
            None => {
                self.plan(&name);
                let mut s = format!("CREATE SCHEMA IF NOT EXISTS {q}");
                if let Some(c) = comment(&src.comment) {
                    s.push_str(&format!(" COMMENT {}", literal(c)?));
                }
                if !src.properties.is_empty() {
                    s.push_str(&format!(" WITH DBPROPERTIES {}", pairs(&src.properties)?));
                }
                stmts.push(s);
                stmts.extend(self.owner("SCHEMA", &q, &object, &src.owner, &None)?);
            }
            Some(tgt) => {
                if comment(&src.comment) != comment(&tgt.comment) {
                    stmts.push(format!(
                        "COMMENT ON SCHEMA {q} IS {}",
                        comment_sql(comment(&src.comment))?
                    ));
                }
                let set: Vec<(&String, &String)> = src
                    .properties
                    .iter()
                    .filter(|(k, v)| tgt.properties.get(*k) != Some(*v))
                    .collect();
                if !set.is_empty() {
                    stmts.push(format!("ALTER SCHEMA {q} SET DBPROPERTIES {}", pairs(set)?));
                }
                for k in tgt.properties.keys() {
                    if !src.properties.contains_key(k) {
                        findings.push(format!(
                            "schema {name}: property `{k}` is on the target only (kept)"
                        ));
                    }
                }
                stmts.extend(self.owner("SCHEMA", &q, &object, &src.owner, &tgt.owner)?);
            }
        }
        self.apply(stmts, findings).await
    }

    /// The view `catalog.schema.view`: its definition with every dependency renamed by the
    /// mapping, replayed with `CREATE OR REPLACE VIEW` unless the target's definition is
    /// already that text. A dependency missing on the target is [`CatalogError::Waits`]; a
    /// materialized view is reported, not replicated.
    pub async fn sync_view(&self, view: &str) -> Result<Outcome, CatalogError> {
        let src =
            self.source.table_detail(view).await?.ok_or_else(|| {
                CatalogError::Refused(format!("source view {view} does not exist"))
            })?;
        match src.table_type.as_str() {
            "VIEW" => {}
            "MATERIALIZED_VIEW" => {
                return Ok(Outcome {
                    findings: vec![format!(
                        "materialized view {view} is reported, not replicated: it is maintained by its own pipeline, which must be deployed on the target"
                    )],
                    ..Default::default()
                });
            }
            other => {
                return Err(CatalogError::Refused(format!(
                    "{view} is a {other} table, not a view"
                )));
            }
        }
        let definition = src
            .view_definition
            .as_deref()
            .ok_or_else(|| CatalogError::Refused(format!("view {view} has no view_definition")))?;
        let object = format!("view {view}");
        let text = self
            .mapping
            .rewrite_view_sql(&object, definition, &src.dependencies())?;
        let name = self.mapping.map_name(view, &object)?;
        for dep in src.table_dependencies() {
            let mapped = self.mapping.map_name(&dep, &object)?;
            if self.target.table_detail(&mapped).await?.is_none() && !self.planned(&mapped) {
                return Err(CatalogError::Waits {
                    object: format!("view {name}"),
                    missing: mapped,
                });
            }
        }
        let tables: Vec<String> = src.table_dependencies();
        for dep in src
            .dependencies()
            .into_iter()
            .filter(|d| !tables.contains(d))
        {
            let mapped = self.mapping.map_name(&dep, &object)?;
            if !self.target.function_exists(&mapped).await? {
                return Err(CatalogError::Waits {
                    object: format!("view {name}"),
                    missing: format!("function {mapped}"),
                });
            }
        }
        let q = quote_name(&name)?;
        let stmts = match self.target.table_detail(&name).await? {
            Some(t) if t.table_type != "VIEW" => {
                return Err(CatalogError::Refused(format!(
                    "target {name} is a {} table, not a view; it is not replaced",
                    t.table_type
                )));
            }
            Some(t) if t.view_definition.as_deref() == Some(text.as_str()) => Vec::new(),
            _ => {
                self.plan(&name);
                vec![format!("CREATE OR REPLACE VIEW {q} AS {text}")]
            }
        };
        self.apply(stmts, Vec::new()).await
    }

    /// The comment, tags, column comments and tags, row filter, column masks (and owner) of
    /// a table or view, made the source's on its mapped target. A row filter or mask whose
    /// function the target lacks is reported, never silently dropped; a filter or mask only
    /// the target has is reported, not removed (removing one would expose data).
    pub async fn sync_tags_and_comments(&self, table: &str) -> Result<Outcome, CatalogError> {
        let object = format!("table {table}");
        let src =
            self.source.table_detail(table).await?.ok_or_else(|| {
                CatalogError::Refused(format!("source table {table} does not exist"))
            })?;
        let name = self.mapping.map_name(table, &object)?;
        let planned = self.planned(&name);
        let tgt = match self.target.table_detail(&name).await? {
            Some(t) => t,
            // A view this dry run creates: as created, with the source's columns only.
            None if planned => TableDetail {
                comment: None,
                owner: None,
                row_filter: None,
                columns: src
                    .columns
                    .iter()
                    .map(|c| ColumnDetail {
                        comment: None,
                        mask: None,
                        ..c.clone()
                    })
                    .collect(),
                ..src.clone()
            },
            None => {
                return Err(CatalogError::Waits {
                    object: format!("tags and comments of {name}"),
                    missing: name.clone(),
                });
            }
        };
        let q = quote_name(&name)?;
        let kind = if tgt.table_type == "VIEW" {
            "VIEW"
        } else {
            "TABLE"
        };
        let mut stmts = Vec::new();
        let mut findings = Vec::new();
        if comment(&src.comment) != comment(&tgt.comment) {
            stmts.push(format!(
                "COMMENT ON TABLE {q} IS {}",
                comment_sql(comment(&src.comment))?
            ));
        }
        let (st, tt) = (
            self.source.entity_tags("tables", table).await?,
            self.target_tags(planned, "tables", &name).await?,
        );
        stmts.extend(tag_statements(&format!("ALTER {kind} {q}"), &st, &tt)?);
        for c in &src.columns {
            let Some(tc) = tgt.columns.iter().find(|t| t.name == c.name) else {
                findings.push(format!("{name}: column `{}` is not on the target", c.name));
                continue;
            };
            let head = format!("ALTER {kind} {q} ALTER COLUMN {}", quote_column(&c.name)?);
            if comment(&c.comment) != comment(&tc.comment) {
                let text = comment(&c.comment).unwrap_or("");
                stmts.push(format!("{head} COMMENT {}", literal(text)?));
            }
            let (sct, tct) = (
                self.source
                    .entity_tags("columns", &format!("{table}.{}", c.name))
                    .await?,
                self.target_tags(planned, "columns", &format!("{name}.{}", c.name))
                    .await?,
            );
            stmts.extend(tag_statements(&head, &sct, &tct)?);
            let what = format!("column mask of {name}.{}", c.name);
            if let Some(s) = self
                .policy(
                    &what,
                    &object,
                    c.mask.as_ref().map(mask_parts),
                    tc.mask.as_ref().map(mask_parts),
                    &mut findings,
                )
                .await?
            {
                let using = if s.1.is_empty() {
                    String::new()
                } else {
                    format!(" USING COLUMNS ({})", columns_sql(&s.1)?)
                };
                stmts.push(format!("{head} SET MASK {}{using}", quote_name(&s.0)?));
            }
        }
        let what = format!("row filter of {name}");
        if let Some(s) = self
            .policy(
                &what,
                &object,
                src.row_filter.as_ref().map(filter_parts),
                tgt.row_filter.as_ref().map(filter_parts),
                &mut findings,
            )
            .await?
        {
            stmts.push(format!(
                "ALTER TABLE {q} SET ROW FILTER {} ON ({})",
                quote_name(&s.0)?,
                columns_sql(&s.1)?
            ));
        }
        stmts.extend(self.owner(kind, &q, &object, &src.owner, &tgt.owner)?);
        self.apply(stmts, findings).await
    }

    /// The target's tags on an entity; none for an object this dry run creates.
    async fn target_tags(
        &self,
        planned: bool,
        entity_type: &str,
        entity: &str,
    ) -> Result<BTreeMap<String, String>, CatalogError> {
        if planned {
            return Ok(BTreeMap::new());
        }
        Ok(self.target.entity_tags(entity_type, entity).await?)
    }

    /// What to set for a row filter or mask: the source's, its function mapped, when the
    /// target differs and has the function; otherwise a finding says why not.
    async fn policy(
        &self,
        what: &str,
        object: &str,
        source: Option<(String, Vec<String>)>,
        target: Option<(String, Vec<String>)>,
        findings: &mut Vec<String>,
    ) -> Result<Option<(String, Vec<String>)>, CatalogError> {
        let Some((function, columns)) = source else {
            if let Some((f, _)) = target {
                findings.push(format!(
                    "{what}: the target has {f}, the source has none (kept: removing it would expose data)"
                ));
            }
            return Ok(None);
        };
        let mapped = (self.mapping.map_name(&function, object)?, columns);
        if target.as_ref() == Some(&mapped) {
            return Ok(None);
        }
        if !self.target.function_exists(&mapped.0).await? {
            findings.push(format!(
                "{what}: function {} is not on the target; not applied",
                mapped.0
            ));
            return Ok(None);
        }
        Ok(Some(mapped))
    }
}

fn mask_parts(m: &ColumnMask) -> (String, Vec<String>) {
    (m.function_name.clone(), m.using_column_names.clone())
}

fn filter_parts(f: &RowFilter) -> (String, Vec<String>) {
    (f.function_name.clone(), f.input_column_names.clone())
}
