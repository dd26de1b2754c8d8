//! The catalog-object SQL the engine sends, parsed strictly (object names and principals
//! backtick-quoted, string literals with Databricks SQL's backslash escapes) and applied to
//! the metastore's [`Objects`](super::catalog_objects::Objects):
//!
//! - `CREATE SCHEMA IF NOT EXISTS s [COMMENT '…'] [WITH DBPROPERTIES ('k' = 'v', …)]`,
//!   `ALTER SCHEMA s SET DBPROPERTIES (…)`;
//! - `CREATE OR REPLACE VIEW v AS query`: the text after `AS` is stored verbatim; every
//!   three-part name in it must be a table or view of the metastore (else
//!   `TABLE_OR_VIEW_NOT_FOUND`), or a function when followed by `(` (else
//!   `UNRESOLVED_ROUTINE`); they become the view's dependencies;
//! - `COMMENT ON {CATALOG|SCHEMA|TABLE|VOLUME} x IS {'…'|NULL}`;
//! - `ALTER {CATALOG|SCHEMA|TABLE|VIEW|VOLUME} x OWNER TO p`;
//! - `ALTER {TABLE|VIEW} t {SET|UNSET} TAGS (…)`, `ALTER TABLE t SET ROW FILTER f ON (c, …)`,
//!   `ALTER TABLE t DROP ROW FILTER`, `ALTER {TABLE|VIEW} t ALTER COLUMN c {COMMENT '…' |
//!   SET TAGS (…) | UNSET TAGS (…) | SET MASK f [USING COLUMNS (…)] | DROP MASK}` — the
//!   function of a filter or mask must exist (`ROUTINE_NOT_FOUND`);
//! - `GRANT p, … ON {CATALOG|SCHEMA|TABLE|VIEW|VOLUME} x TO principal`, `REVOKE … FROM`.
//!
//! References: SQL language manual pages `sql-ref-syntax-ddl-create-schema`,
//! `…-create-view`, `…-comment`, `…-alter-table`, `…-alter-table-manage-column`,
//! `…-set-tags`, `security-grant`, `security-revoke` (docs.databricks.com/sql/language-manual).

mod parse;

use super::catalog_objects::{ViewDef, exists};
use super::sql::SqlError;
use super::state::{Inner, Metastore, Table};
use super::warehouse::Rows;

use parse::{P, T, bad, syntax, tokenize};

const PRIVILEGES: &[&str] = &[
    "ALL_PRIVILEGES",
    "APPLY_TAG",
    "BROWSE",
    "CREATE_FUNCTION",
    "CREATE_MATERIALIZED_VIEW",
    "CREATE_MODEL",
    "CREATE_SCHEMA",
    "CREATE_TABLE",
    "CREATE_VOLUME",
    "EXECUTE",
    "MANAGE",
    "MODIFY",
    "READ_VOLUME",
    "REFRESH",
    "SELECT",
    "USE_CATALOG",
    "USE_SCHEMA",
    "WRITE_VOLUME",
];

/// Whether this module handles the statement (by its first words).
fn handles(p: &P) -> bool {
    let w = |i: usize| match p.toks.get(i) {
        Some((_, T::Word(w))) => w.to_ascii_uppercase(),
        _ => String::new(),
    };
    matches!(w(0).as_str(), "GRANT" | "REVOKE" | "COMMENT" | "ALTER")
        || (w(0) == "CREATE" && (w(1) == "SCHEMA" || (w(1) == "OR" && w(3) == "VIEW")))
}

fn must_exist(m: &Metastore, kind: &str, name: &str) -> Result<(), SqlError> {
    // Volumes are served by the volume emulator; their existence is its to check.
    if kind == "volume" || exists(m, kind, name) {
        return Ok(());
    }
    Err(match kind {
        "catalog" => bad(
            "NO_SUCH_CATALOG_EXCEPTION",
            format!("Catalog '{name}' not found."),
        ),
        "schema" => bad(
            "SCHEMA_NOT_FOUND",
            format!("The schema `{name}` cannot be found. SQLSTATE: 42704"),
        ),
        _ => bad(
            "TABLE_OR_VIEW_NOT_FOUND",
            format!("The table or view `{name}` cannot be found. SQLSTATE: 42P01"),
        ),
    })
}

fn is_view(m: &Metastore, name: &str) -> bool {
    m.objects.views.contains_key(name)
}

fn function_exists(m: &Metastore, f: &str) -> Result<(), SqlError> {
    if m.objects.functions.contains(f) {
        Ok(())
    } else {
        Err(bad(
            "ROUTINE_NOT_FOUND",
            format!("The routine `{f}` cannot be found. SQLSTATE: 42883"),
        ))
    }
}

/// Run the statement if it is one of this module's; `None` hands it to the warehouse.
pub(super) fn try_execute(st: &Inner, sql: &str) -> Option<Result<Rows, SqlError>> {
    let toks = match tokenize(sql) {
        Ok(t) => t,
        Err(e) => return Some(Err(e)),
    };
    let mut p = P { sql, toks, pos: 0 };
    if !handles(&p) {
        return None;
    }
    let mut ms = st.world.metastores.lock().unwrap();
    let m = ms.get_mut(&st.metastore).unwrap();
    Some(run(&mut p, m).map(|()| (vec![], vec![])))
}

fn run(p: &mut P, m: &mut Metastore) -> Result<(), SqlError> {
    if p.eat("GRANT") || p.is("REVOKE") {
        let grant = !p.eat("REVOKE");
        let mut privs = Vec::new();
        loop {
            let mut words = Vec::new();
            while let Some((_, T::Word(w))) = p.toks.get(p.pos) {
                if w.eq_ignore_ascii_case("ON") {
                    break;
                }
                words.push(w.to_ascii_uppercase());
                p.pos += 1;
            }
            let privilege = words.join("_");
            if !PRIVILEGES.contains(&privilege.as_str()) {
                return Err(syntax(&p.near()));
            }
            privs.push(privilege);
            if !p.is_sym(',') {
                break;
            }
            p.pos += 1;
        }
        p.kw("ON")?;
        let (kind, _, name) = p.securable()?;
        p.kw(if grant { "TO" } else { "FROM" })?;
        let principal = p.ident()?;
        p.end()?;
        must_exist(m, kind, &name)?;
        let refs: Vec<&str> = privs.iter().map(String::as_str).collect();
        if grant {
            m.objects.grant(kind, &name, &principal, &refs);
        } else {
            m.objects.revoke(kind, &name, &principal, &refs);
        }
        return Ok(());
    }
    if p.eat("COMMENT") {
        p.kw("ON")?;
        let (kind, _, name) = p.securable()?;
        p.kw("IS")?;
        let text = if p.eat("NULL") {
            None
        } else {
            Some(p.string()?)
        };
        p.end()?;
        must_exist(m, kind, &name)?;
        m.objects.meta(kind, &name).comment = text;
        return Ok(());
    }
    if p.eat("CREATE") {
        if p.eat("SCHEMA") {
            p.kw("IF")?;
            p.kw("NOT")?;
            p.kw("EXISTS")?;
            let name = p.name(2)?;
            let comment = if p.eat("COMMENT") {
                Some(p.string()?)
            } else {
                None
            };
            let props = if p.eat("WITH") {
                p.kw("DBPROPERTIES")?;
                p.pairs()?
            } else {
                Vec::new()
            };
            p.end()?;
            let (c, s) = name.split_once('.').expect("two parts");
            must_exist(m, "catalog", c)?;
            let cat = m.catalogs.get_mut(c).expect("exists");
            if cat.share.is_some() {
                return Err(bad(
                    "INVALID_STATE",
                    "cannot create a schema in a shared catalog".into(),
                ));
            }
            if cat.schemas.contains_key(s) {
                return Ok(());
            }
            cat.schemas.insert(s.to_owned(), Default::default());
            let meta = m.objects.meta("schema", &name);
            meta.comment = comment;
            meta.properties.extend(props);
            return Ok(());
        }
        p.kw("OR")?;
        p.kw("REPLACE")?;
        p.kw("VIEW")?;
        let name = p.name(3)?;
        p.kw("AS")?;
        let Some(&(at, _)) = p.toks.get(p.pos) else {
            return Err(syntax("end of input"));
        };
        let definition = p.sql[at..].trim().to_owned();
        let (tables, functions) = references(&p.toks[p.pos..], m)?;
        let [c, s, v] = name.splitn(3, '.').collect::<Vec<_>>()[..] else {
            unreachable!("three parts")
        };
        must_exist(m, "schema", &format!("{c}.{s}"))?;
        if exists(m, "table", &name) && !is_view(m, &name) {
            return Err(bad(
                "EXPECT_VIEW_NOT_TABLE.NO_ALTERNATIVE",
                format!("`{name}` is a table, not a view"),
            ));
        }
        let schema = m
            .catalogs
            .get_mut(c)
            .and_then(|c| c.schemas.get_mut(s))
            .expect("exists");
        schema.entry(v.to_owned()).or_insert(Table {
            table_type: "VIEW".into(),
            location: Default::default(),
            properties: Default::default(),
        });
        m.objects.views.insert(
            name,
            ViewDef {
                definition,
                tables,
                functions,
            },
        );
        return Ok(());
    }
    p.kw("ALTER")?;
    let (kind, kw, name) = p.securable()?;
    must_exist(m, kind, &name)?;
    if kind == "table" && (kw == "VIEW") != is_view(m, &name) {
        let code = if kw == "VIEW" {
            "EXPECT_VIEW_NOT_TABLE.NO_ALTERNATIVE"
        } else {
            "EXPECT_TABLE_NOT_VIEW.NO_ALTERNATIVE"
        };
        return Err(bad(
            code,
            format!("`{name}` cannot be altered with ALTER {kw}"),
        ));
    }
    if p.eat("OWNER") {
        p.kw("TO")?;
        let owner = p.ident()?;
        p.end()?;
        m.objects.meta(kind, &name).owner = Some(owner);
        return Ok(());
    }
    if kind == "schema" {
        p.kw("SET")?;
        p.kw("DBPROPERTIES")?;
        let props = p.pairs()?;
        p.end()?;
        m.objects.meta(kind, &name).properties.extend(props);
        return Ok(());
    }
    if kind != "table" {
        return Err(syntax(&p.near()));
    }
    if p.eat("ALTER") {
        p.kw("COLUMN")?;
        let column = p.ident()?;
        if p.eat("COMMENT") {
            let text = p.string()?;
            p.end()?;
            m.objects.column(&name, &column).comment = Some(text).filter(|t| !t.is_empty());
        } else if p.eat("DROP") {
            p.kw("MASK")?;
            p.end()?;
            m.objects.column(&name, &column).mask = None;
        } else if p.is("SET")
            && matches!(p.toks.get(p.pos + 1), Some((_, T::Word(w))) if w.eq_ignore_ascii_case("MASK"))
        {
            p.pos += 2;
            let f = p.name(3)?;
            let using = if p.eat("USING") {
                p.kw("COLUMNS")?;
                p.list(P::ident)?
            } else {
                Vec::new()
            };
            p.end()?;
            function_exists(m, &f)?;
            m.objects.column(&name, &column).mask = Some((f, using));
        } else {
            let tags = &mut m.objects.column(&name, &column).tags;
            set_or_unset_tags(p, tags)?;
        }
        return Ok(());
    }
    if p.eat("DROP") {
        p.kw("ROW")?;
        p.kw("FILTER")?;
        p.end()?;
        m.objects.meta(kind, &name).row_filter = None;
        return Ok(());
    }
    if p.is("SET")
        && matches!(p.toks.get(p.pos + 1), Some((_, T::Word(w))) if w.eq_ignore_ascii_case("ROW"))
    {
        p.pos += 2;
        p.kw("FILTER")?;
        let f = p.name(3)?;
        p.kw("ON")?;
        let cols = p.list(P::ident)?;
        p.end()?;
        function_exists(m, &f)?;
        m.objects.meta(kind, &name).row_filter = Some((f, cols));
        return Ok(());
    }
    let tags = &mut m.objects.meta(kind, &name).tags;
    set_or_unset_tags(p, tags)
}

fn set_or_unset_tags(
    p: &mut P,
    tags: &mut std::collections::BTreeMap<String, String>,
) -> Result<(), SqlError> {
    if p.eat("SET") {
        p.kw("TAGS")?;
        let pairs = p.pairs()?;
        p.end()?;
        tags.extend(pairs);
    } else {
        p.kw("UNSET")?;
        p.kw("TAGS")?;
        let keys = p.list(P::string)?;
        p.end()?;
        for k in keys {
            tags.remove(&k);
        }
    }
    Ok(())
}

/// The three-part names a view's query reads: tables and views (which must exist) and
/// functions (followed by `(`, which must exist).
fn references(toks: &[(usize, T)], m: &Metastore) -> Result<(Vec<String>, Vec<String>), SqlError> {
    let part = |t: Option<&(usize, T)>| match t.map(|t| &t.1) {
        Some(T::Word(w)) => Some(w.clone()),
        Some(T::Quoted(q)) => Some(q.clone()),
        _ => None,
    };
    let dot = |t: Option<&(usize, T)>| matches!(t.map(|t| &t.1), Some(T::Sym('.')));
    let (mut tables, mut functions) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < toks.len() {
        let name = (|| {
            if i > 0 && dot(toks.get(i - 1)) {
                return None;
            }
            let (a, b, c) = (
                part(toks.get(i))?,
                part(toks.get(i + 2))?,
                part(toks.get(i + 4))?,
            );
            (dot(toks.get(i + 1)) && dot(toks.get(i + 3)) && !dot(toks.get(i + 5)))
                .then(|| format!("{a}.{b}.{c}"))
        })();
        let Some(name) = name else {
            i += 1;
            continue;
        };
        if matches!(toks.get(i + 5).map(|t| &t.1), Some(T::Sym('('))) {
            function_exists(m, &name).map_err(|_| {
                bad(
                    "UNRESOLVED_ROUTINE",
                    format!("Cannot resolve routine `{name}`. SQLSTATE: 42883"),
                )
            })?;
            functions.push(name);
        } else {
            must_exist(m, "table", &name)?;
            tables.push(name);
        }
        i += 5;
    }
    Ok((tables, functions))
}
