//! The SQL the emulator understands: the statements `replicator-snowflake` renders and the
//! `SHOW` commands it reads, parsed strictly by Snowflake's lexical rules (double-quoted
//! identifiers keep their case with `""` for a quote, unquoted ones are upper-cased; string
//! literals are single-quoted with `\` escapes and `''`). Anything else fails as Snowflake
//! does, with a SQL compilation error (SQLSTATE 42000).

use std::collections::BTreeMap;

/// A statement's outcome: rows, or Snowflake's error triple.
#[derive(Clone, Debug)]
pub enum Outcome {
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<Option<String>>>,
    },
    Error {
        code: String,
        sql_state: String,
        message: String,
    },
}

fn status(message: String) -> Outcome {
    Outcome::Rows {
        columns: vec!["status".into()],
        rows: vec![vec![Some(message)]],
    }
}

fn err(code: &str, sql_state: &str, message: String) -> Outcome {
    Outcome::Error {
        code: code.into(),
        sql_state: sql_state.into(),
        message,
    }
}

fn syntax_error(pos: usize, found: &str) -> Outcome {
    err(
        "001003",
        "42000",
        format!(
            "SQL compilation error:\nsyntax error line 1 at position {pos} unexpected '{found}'."
        ),
    )
}

fn not_found(what: &str, name: &str) -> Outcome {
    err(
        "002003",
        "02000",
        format!("SQL compilation error:\n{what} '{name}' does not exist or not authorized."),
    )
}

fn invalid(message: String) -> Outcome {
    err(
        "001008",
        "22023",
        format!("SQL compilation error:\n{message}"),
    )
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Str(String),
    Num(String),
    Sym(char),
}

impl Tok {
    fn shown(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Num(w) => w.clone(),
            Tok::Quoted(q) => format!("\"{q}\""),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Sym(c) => c.to_string(),
        }
    }
}

fn lex(sql: &str) -> Result<Vec<(usize, Tok)>, Outcome> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '$'))
            {
                i += 1;
            }
            out.push((start, Tok::Word(chars[start..i].iter().collect())));
        } else if c.is_ascii_digit() {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push((start, Tok::Num(chars[start..i].iter().collect())));
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(syntax_error(start, "\"")),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        s.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            if s.is_empty() {
                return Err(syntax_error(start, "\"\""));
            }
            out.push((start, Tok::Quoted(s)));
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(syntax_error(start, "'")),
                    Some('\\') => {
                        let e = chars
                            .get(i + 1)
                            .copied()
                            .ok_or_else(|| syntax_error(i, "\\"))?;
                        s.push(match e {
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            '0' => '\0',
                            other => other,
                        });
                        i += 2;
                    }
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push((start, Tok::Str(s)));
        } else if matches!(c, '(' | ')' | '=' | ',' | '.' | ';') {
            out.push((start, Tok::Sym(c)));
            i += 1;
        } else {
            return Err(syntax_error(start, &c.to_string()));
        }
    }
    Ok(out)
}

/// A property value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Word(String),
    Str(String),
    Num(u64),
    Strings(Vec<String>),
    Props(Props),
    Groups(Vec<Props>),
}

pub type Props = BTreeMap<String, Val>;

struct P {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn fail(&self) -> Outcome {
        match self.toks.get(self.pos) {
            Some((at, t)) => syntax_error(*at, &t.shown()),
            None => syntax_error(self.end, "<EOF>"),
        }
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn kw(&mut self, kw: &str) -> Result<(), Outcome> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.fail())
        }
    }
    fn eat_sym(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Sym(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn sym(&mut self, c: char) -> Result<(), Outcome> {
        if self.eat_sym(c) {
            Ok(())
        } else {
            Err(self.fail())
        }
    }
    /// An identifier: quoted keeps its case, unquoted is upper-cased.
    fn ident(&mut self) -> Result<String, Outcome> {
        let id = match self.peek() {
            Some(Tok::Quoted(q)) => q.clone(),
            Some(Tok::Word(w)) => w.to_ascii_uppercase(),
            _ => return Err(self.fail()),
        };
        self.pos += 1;
        Ok(id)
    }
    fn if_not_exists(&mut self) -> Result<bool, Outcome> {
        if self.eat_kw("IF") {
            self.kw("NOT")?;
            self.kw("EXISTS")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }
    fn if_exists(&mut self) -> Result<bool, Outcome> {
        if self.eat_kw("IF") {
            self.kw("EXISTS")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }
    fn table_name(&mut self) -> Result<(String, String, String), Outcome> {
        let d = self.ident()?;
        self.sym('.')?;
        let s = self.ident()?;
        self.sym('.')?;
        let t = self.ident()?;
        Ok((d, s, t))
    }
    fn value(&mut self) -> Result<Val, Outcome> {
        let v = match self.peek().cloned() {
            Some(Tok::Word(w)) => Val::Word(w.to_ascii_uppercase()),
            Some(Tok::Str(s)) => Val::Str(s),
            Some(Tok::Num(n)) => Val::Num(n.parse().map_err(|_| self.fail())?),
            Some(Tok::Sym('(')) => {
                self.pos += 1;
                let v = match self.peek() {
                    Some(Tok::Sym('(')) => {
                        let mut groups = Vec::new();
                        loop {
                            self.sym('(')?;
                            groups.push(self.props(true)?);
                            self.sym(')')?;
                            if !self.eat_sym(',') {
                                break;
                            }
                        }
                        Val::Groups(groups)
                    }
                    Some(Tok::Str(_)) => {
                        let mut list = Vec::new();
                        loop {
                            match self.peek().cloned() {
                                Some(Tok::Str(s)) => {
                                    list.push(s);
                                    self.pos += 1;
                                }
                                _ => return Err(self.fail()),
                            }
                            if !self.eat_sym(',') {
                                break;
                            }
                        }
                        Val::Strings(list)
                    }
                    _ => Val::Props(self.props(true)?),
                };
                self.sym(')')?;
                return Ok(v);
            }
            _ => return Err(self.fail()),
        };
        self.pos += 1;
        Ok(v)
    }
    /// `KEY = value …` until `)` (nested) or the end.
    fn props(&mut self, nested: bool) -> Result<Props, Outcome> {
        let mut out = Props::new();
        loop {
            match self.peek() {
                None => break,
                Some(Tok::Sym(')')) if nested => break,
                Some(Tok::Sym(';')) if !nested => break,
                Some(Tok::Word(w)) => {
                    let key = w.to_ascii_uppercase();
                    self.pos += 1;
                    self.sym('=')?;
                    let v = self.value()?;
                    if out.insert(key.clone(), v).is_some() {
                        return Err(invalid(format!("duplicate property '{key}'")));
                    }
                }
                _ => return Err(self.fail()),
            }
        }
        Ok(out)
    }
    fn finish(&mut self) -> Result<(), Outcome> {
        self.eat_sym(';');
        if self.pos < self.toks.len() {
            Err(self.fail())
        } else {
            Ok(())
        }
    }
}

/// A catalog integration.
#[derive(Clone, Debug)]
pub struct Integration {
    pub name: String,
    pub source: String,
    pub format: String,
    pub props: Props,
}

/// An external volume.
#[derive(Clone, Debug)]
pub struct Volume {
    pub name: String,
    pub locations: Vec<Props>,
}

/// An Iceberg table and the parameters it was created with.
#[derive(Clone, Debug)]
pub struct IcebergTable {
    pub database: String,
    pub schema: String,
    pub name: String,
    pub catalog: String,
    pub catalog_table_name: Option<String>,
    pub catalog_namespace: Option<String>,
    pub external_volume: Option<String>,
    pub base_location: Option<String>,
    pub auto_refresh: bool,
    pub refreshes: u32,
}

/// The account's objects.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub integrations: BTreeMap<String, Integration>,
    pub volumes: BTreeMap<String, Volume>,
    pub databases: BTreeMap<String, ()>,
    pub schemas: BTreeMap<(String, String), ()>,
    pub tables: BTreeMap<(String, String, String), IcebergTable>,
}

fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn check_keys(props: &Props, allowed: &[&str], object: &str) -> Result<(), Outcome> {
    for k in props.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(invalid(format!("invalid property '{k}' for '{object}'")));
        }
    }
    Ok(())
}

fn want_str<'a>(props: &'a Props, key: &str, object: &str) -> Result<Option<&'a str>, Outcome> {
    match props.get(key) {
        None => Ok(None),
        Some(Val::Str(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!(
            "invalid value for property '{key}' of '{object}': expected a string literal"
        ))),
    }
}

fn want_word<'a>(props: &'a Props, key: &str, object: &str) -> Result<Option<&'a str>, Outcome> {
    match props.get(key) {
        None => Ok(None),
        Some(Val::Word(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!(
            "invalid value for property '{key}' of '{object}': expected a keyword"
        ))),
    }
}

fn want_bool(props: &Props, key: &str, object: &str) -> Result<Option<bool>, Outcome> {
    match want_word(props, key, object)? {
        None => Ok(None),
        Some("TRUE") => Ok(Some(true)),
        Some("FALSE") => Ok(Some(false)),
        Some(other) => Err(invalid(format!(
            "invalid value '{other}' for property '{key}': expected TRUE or FALSE"
        ))),
    }
}

fn required<T>(v: Option<T>, key: &str, object: &str) -> Result<T, Outcome> {
    v.ok_or_else(|| invalid(format!("missing required property '{key}' for '{object}'")))
}

impl Catalog {
    /// Parse and execute one statement.
    pub fn execute(&mut self, sql: &str) -> Outcome {
        match self.run(sql) {
            Ok(o) | Err(o) => o,
        }
    }

    fn run(&mut self, sql: &str) -> Result<Outcome, Outcome> {
        let toks = lex(sql)?;
        let mut p = P {
            toks,
            pos: 0,
            end: sql.chars().count(),
        };
        if p.eat_kw("SHOW") {
            return self.show(&mut p);
        }
        if p.eat_kw("DROP") {
            p.kw("ICEBERG")?;
            p.kw("TABLE")?;
            let if_exists = p.if_exists()?;
            let (d, s, t) = p.table_name()?;
            p.finish()?;
            let shown = format!("{}.{}.{}", q(&d), q(&s), q(&t));
            if self.tables.remove(&(d, s, t.clone())).is_some() {
                return Ok(status(format!("{t} successfully dropped.")));
            }
            if if_exists {
                return Ok(status(format!(
                    "Drop statement executed successfully ({t} already dropped)."
                )));
            }
            return Err(not_found("Iceberg table", &shown));
        }
        if p.eat_kw("ALTER") {
            p.kw("ICEBERG")?;
            p.kw("TABLE")?;
            let (d, s, t) = p.table_name()?;
            p.kw("REFRESH")?;
            p.finish()?;
            let shown = format!("{}.{}.{}", q(&d), q(&s), q(&t));
            let table = self
                .tables
                .get_mut(&(d, s, t))
                .ok_or_else(|| not_found("Iceberg table", &shown))?;
            table.refreshes += 1;
            return Ok(status("Statement executed successfully.".into()));
        }
        p.kw("CREATE")?;
        let replace = if p.eat_kw("OR") {
            p.kw("REPLACE")?;
            true
        } else {
            false
        };
        if p.eat_kw("DATABASE") {
            let ine = p.if_not_exists()?;
            let name = p.ident()?;
            p.finish()?;
            if self.databases.contains_key(&name) && !replace {
                return if ine {
                    Ok(status(format!(
                        "{name} already exists, statement succeeded."
                    )))
                } else {
                    Err(exists(&name))
                };
            }
            self.databases.insert(name.clone(), ());
            self.schemas.insert((name.clone(), "PUBLIC".into()), ());
            self.schemas
                .insert((name.clone(), "INFORMATION_SCHEMA".into()), ());
            return Ok(status(format!("Database {name} successfully created.")));
        }
        if p.eat_kw("SCHEMA") {
            let ine = p.if_not_exists()?;
            let first = p.ident()?;
            if !p.eat_sym('.') {
                return Err(err(
                    "090105",
                    "22000",
                    "Cannot perform CREATE SCHEMA. This session does not have a current database. Call 'USE DATABASE', or use a qualified name.".into(),
                ));
            }
            let schema = p.ident()?;
            p.finish()?;
            if !self.databases.contains_key(&first) {
                return Err(not_found("Database", &q(&first)));
            }
            let key = (first, schema.clone());
            if self.schemas.contains_key(&key) && !replace {
                return if ine {
                    Ok(status(format!(
                        "{schema} already exists, statement succeeded."
                    )))
                } else {
                    Err(exists(&schema))
                };
            }
            self.schemas.insert(key, ());
            return Ok(status(format!("Schema {schema} successfully created.")));
        }
        if p.eat_kw("CATALOG") {
            p.kw("INTEGRATION")?;
            let ine = p.if_not_exists()?;
            let name = p.ident()?;
            let props = p.props(false)?;
            p.finish()?;
            let integration = integration(name.clone(), props)?;
            if self.integrations.contains_key(&name) && !replace {
                return if ine {
                    Ok(status(format!(
                        "{name} already exists, statement succeeded."
                    )))
                } else {
                    Err(exists(&name))
                };
            }
            self.integrations.insert(name.clone(), integration);
            return Ok(status(format!("Integration {name} successfully created.")));
        }
        if p.eat_kw("EXTERNAL") {
            p.kw("VOLUME")?;
            let ine = p.if_not_exists()?;
            let name = p.ident()?;
            let props = p.props(false)?;
            p.finish()?;
            let volume = volume(name.clone(), props)?;
            if self.volumes.contains_key(&name) && !replace {
                return if ine {
                    Ok(status(format!(
                        "{name} already exists, statement succeeded."
                    )))
                } else {
                    Err(exists(&name))
                };
            }
            self.volumes.insert(name.clone(), volume);
            return Ok(status(format!(
                "External volume {name} successfully created."
            )));
        }
        if p.eat_kw("ICEBERG") {
            p.kw("TABLE")?;
            let ine = p.if_not_exists()?;
            let (d, s, t) = p.table_name()?;
            let props = p.props(false)?;
            p.finish()?;
            let table = self.iceberg_table(d.clone(), s.clone(), t.clone(), props)?;
            let key = (d, s, t.clone());
            if self.tables.contains_key(&key) && !replace {
                return if ine {
                    Ok(status(format!("{t} already exists, statement succeeded.")))
                } else {
                    Err(exists(&t))
                };
            }
            self.tables.insert(key, table);
            return Ok(status(format!("Table {t} successfully created.")));
        }
        Err(p.fail())
    }

    fn show(&self, p: &mut P) -> Result<Outcome, Outcome> {
        let cols = |c: &[&str]| c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let s = |v: &str| Some(v.to_owned());
        let created = "2026-01-01 00:00:00.000 -0800";
        if p.eat_kw("CATALOG") {
            p.kw("INTEGRATIONS")?;
            p.finish()?;
            return Ok(Outcome::Rows {
                columns: cols(&[
                    "name",
                    "type",
                    "category",
                    "enabled",
                    "comment",
                    "created_on",
                ]),
                rows: self
                    .integrations
                    .values()
                    .map(|i| {
                        vec![
                            s(&i.name),
                            s(&format!("CATALOG-{}", i.source)),
                            s("CATALOG"),
                            s("true"),
                            None,
                            s(created),
                        ]
                    })
                    .collect(),
            });
        }
        if p.eat_kw("EXTERNAL") {
            p.kw("VOLUMES")?;
            p.finish()?;
            return Ok(Outcome::Rows {
                columns: cols(&["name", "allow_writes", "comment"]),
                rows: self
                    .volumes
                    .values()
                    .map(|v| vec![s(&v.name), s("true"), None])
                    .collect(),
            });
        }
        if p.eat_kw("DATABASES") {
            p.finish()?;
            return Ok(Outcome::Rows {
                columns: cols(&["created_on", "name", "owner", "kind"]),
                rows: self
                    .databases
                    .keys()
                    .map(|d| vec![s(created), s(d), s("SYSADMIN"), s("STANDARD")])
                    .collect(),
            });
        }
        let in_account = |p: &mut P| -> Result<(), Outcome> {
            if p.eat_kw("IN") {
                p.kw("ACCOUNT")?;
            }
            p.finish()
        };
        if p.eat_kw("SCHEMAS") {
            in_account(p)?;
            return Ok(Outcome::Rows {
                columns: cols(&["created_on", "name", "database_name", "owner"]),
                rows: self
                    .schemas
                    .keys()
                    .map(|(d, sc)| vec![s(created), s(sc), s(d), s("SYSADMIN")])
                    .collect(),
            });
        }
        if p.eat_kw("ICEBERG") {
            p.kw("TABLES")?;
            in_account(p)?;
            return Ok(Outcome::Rows {
                columns: cols(&[
                    "created_on",
                    "name",
                    "database_name",
                    "schema_name",
                    "owner",
                    "external_volume_name",
                    "catalog_name",
                    "iceberg_table_type",
                    "catalog_table_name",
                    "catalog_namespace",
                    "base_location",
                    "auto_refresh_status",
                ]),
                rows: self
                    .tables
                    .values()
                    .map(|t| {
                        vec![
                            s(created),
                            s(&t.name),
                            s(&t.database),
                            s(&t.schema),
                            s("SYSADMIN"),
                            t.external_volume.clone(),
                            s(&t.catalog),
                            s("UNMANAGED"),
                            t.catalog_table_name.clone(),
                            t.catalog_namespace.clone(),
                            t.base_location.clone(),
                            s(if t.auto_refresh {
                                "{\"executionState\":\"RUNNING\"}"
                            } else {
                                ""
                            }),
                        ]
                    })
                    .collect(),
            });
        }
        Err(p.fail())
    }

    fn iceberg_table(
        &self,
        database: String,
        schema: String,
        name: String,
        props: Props,
    ) -> Result<IcebergTable, Outcome> {
        const OBJ: &str = "ICEBERG TABLE";
        check_keys(
            &props,
            &[
                "EXTERNAL_VOLUME",
                "CATALOG",
                "CATALOG_TABLE_NAME",
                "CATALOG_NAMESPACE",
                "BASE_LOCATION",
                "AUTO_REFRESH",
                "REPLACE_INVALID_CHARACTERS",
                "COMMENT",
            ],
            OBJ,
        )?;
        if !self
            .schemas
            .contains_key(&(database.clone(), schema.clone()))
        {
            return Err(not_found(
                "Schema",
                &format!("{}.{}", q(&database), q(&schema)),
            ));
        }
        let catalog = required(want_str(&props, "CATALOG", OBJ)?, "CATALOG", OBJ)?;
        let integration = self
            .integrations
            .get(catalog)
            .ok_or_else(|| not_found("Integration", catalog))?;
        let external_volume = want_str(&props, "EXTERNAL_VOLUME", OBJ)?.map(str::to_owned);
        if let Some(v) = &external_volume
            && !self.volumes.contains_key(v)
        {
            return Err(not_found("External volume", v));
        }
        let catalog_table_name = want_str(&props, "CATALOG_TABLE_NAME", OBJ)?.map(str::to_owned);
        let base_location = want_str(&props, "BASE_LOCATION", OBJ)?.map(str::to_owned);
        match integration.source.as_str() {
            "ICEBERG_REST" => {
                required(catalog_table_name.as_ref(), "CATALOG_TABLE_NAME", OBJ)?;
                if base_location.is_some() {
                    return Err(invalid(
                        "BASE_LOCATION is not allowed with an Iceberg REST catalog integration"
                            .into(),
                    ));
                }
            }
            _ => {
                required(base_location.as_ref(), "BASE_LOCATION", OBJ)?;
                required(external_volume.as_ref(), "EXTERNAL_VOLUME", OBJ)?;
                if catalog_table_name.is_some() {
                    return Err(invalid(
                        "CATALOG_TABLE_NAME is not allowed with an object store catalog integration".into(),
                    ));
                }
            }
        }
        Ok(IcebergTable {
            database,
            schema,
            name,
            catalog: catalog.to_owned(),
            catalog_table_name,
            catalog_namespace: want_str(&props, "CATALOG_NAMESPACE", OBJ)?.map(str::to_owned),
            external_volume,
            base_location,
            auto_refresh: want_bool(&props, "AUTO_REFRESH", OBJ)?.unwrap_or(false),
            refreshes: 0,
        })
    }
}

fn exists(name: &str) -> Outcome {
    err(
        "002002",
        "42710",
        format!("SQL compilation error:\nObject '{name}' already exists."),
    )
}

fn integration(name: String, props: Props) -> Result<Integration, Outcome> {
    const OBJ: &str = "CATALOG INTEGRATION";
    check_keys(
        &props,
        &[
            "CATALOG_SOURCE",
            "TABLE_FORMAT",
            "CATALOG_NAMESPACE",
            "REST_CONFIG",
            "REST_AUTHENTICATION",
            "ENABLED",
            "REFRESH_INTERVAL_SECONDS",
            "COMMENT",
        ],
        OBJ,
    )?;
    let source = required(
        want_word(&props, "CATALOG_SOURCE", OBJ)?,
        "CATALOG_SOURCE",
        OBJ,
    )?;
    let format = required(want_word(&props, "TABLE_FORMAT", OBJ)?, "TABLE_FORMAT", OBJ)?;
    required(want_bool(&props, "ENABLED", OBJ)?, "ENABLED", OBJ)?;
    want_str(&props, "CATALOG_NAMESPACE", OBJ)?;
    match props.get("REFRESH_INTERVAL_SECONDS") {
        None => {}
        Some(Val::Num(n)) if (30..=86400).contains(n) => {}
        Some(_) => {
            return Err(invalid(
                "REFRESH_INTERVAL_SECONDS must be an integer from 30 to 86400".into(),
            ));
        }
    }
    match source {
        "ICEBERG_REST" => {
            if format != "ICEBERG" {
                return Err(invalid(format!(
                    "TABLE_FORMAT {format} is not supported for CATALOG_SOURCE ICEBERG_REST"
                )));
            }
            let Some(Val::Props(rest)) = props.get("REST_CONFIG") else {
                return Err(invalid(format!(
                    "missing required property 'REST_CONFIG' for '{OBJ}'"
                )));
            };
            const RC: &str = "REST_CONFIG";
            check_keys(
                rest,
                &[
                    "CATALOG_URI",
                    "PREFIX",
                    "CATALOG_API_TYPE",
                    "CATALOG_NAME",
                    "ACCESS_DELEGATION_MODE",
                ],
                RC,
            )?;
            required(want_str(rest, "CATALOG_URI", RC)?, "CATALOG_URI", RC)?;
            want_str(rest, "CATALOG_NAME", RC)?;
            if let Some(m) = want_word(rest, "ACCESS_DELEGATION_MODE", RC)?
                && !matches!(m, "VENDED_CREDENTIALS" | "EXTERNAL_VOLUME_CREDENTIALS")
            {
                return Err(invalid(format!("invalid ACCESS_DELEGATION_MODE '{m}'")));
            }
            let Some(Val::Props(auth)) = props.get("REST_AUTHENTICATION") else {
                return Err(invalid(format!(
                    "missing required property 'REST_AUTHENTICATION' for '{OBJ}'"
                )));
            };
            const RA: &str = "REST_AUTHENTICATION";
            check_keys(
                auth,
                &[
                    "TYPE",
                    "OAUTH_TOKEN_URI",
                    "OAUTH_CLIENT_ID",
                    "OAUTH_CLIENT_SECRET",
                    "OAUTH_ALLOWED_SCOPES",
                ],
                RA,
            )?;
            if required(want_word(auth, "TYPE", RA)?, "TYPE", RA)? != "OAUTH" {
                return Err(invalid(
                    "the emulator supports REST_AUTHENTICATION TYPE = OAUTH only".into(),
                ));
            }
            want_str(auth, "OAUTH_TOKEN_URI", RA)?;
            required(
                want_str(auth, "OAUTH_CLIENT_ID", RA)?,
                "OAUTH_CLIENT_ID",
                RA,
            )?;
            required(
                want_str(auth, "OAUTH_CLIENT_SECRET", RA)?,
                "OAUTH_CLIENT_SECRET",
                RA,
            )?;
            match auth.get("OAUTH_ALLOWED_SCOPES") {
                Some(Val::Strings(s)) if !s.is_empty() => {}
                _ => {
                    return Err(invalid(
                        "OAUTH_ALLOWED_SCOPES must be a list of string literals".into(),
                    ));
                }
            }
        }
        "OBJECT_STORE" => {
            if !matches!(format, "DELTA" | "ICEBERG") {
                return Err(invalid(format!(
                    "TABLE_FORMAT {format} is not supported for CATALOG_SOURCE OBJECT_STORE"
                )));
            }
            if props.contains_key("REST_CONFIG") || props.contains_key("REST_AUTHENTICATION") {
                return Err(invalid(
                    "REST_CONFIG and REST_AUTHENTICATION are not allowed for CATALOG_SOURCE OBJECT_STORE".into(),
                ));
            }
        }
        other => {
            return Err(invalid(format!(
                "invalid value '{other}' for CATALOG_SOURCE"
            )));
        }
    }
    Ok(Integration {
        name,
        source: source.to_owned(),
        format: format.to_owned(),
        props,
    })
}

fn volume(name: String, props: Props) -> Result<Volume, Outcome> {
    const OBJ: &str = "EXTERNAL VOLUME";
    check_keys(
        &props,
        &["STORAGE_LOCATIONS", "ALLOW_WRITES", "COMMENT"],
        OBJ,
    )?;
    want_bool(&props, "ALLOW_WRITES", OBJ)?;
    let Some(Val::Groups(locations)) = props.get("STORAGE_LOCATIONS") else {
        return Err(invalid(format!(
            "missing required property 'STORAGE_LOCATIONS' for '{OBJ}'"
        )));
    };
    const LOC: &str = "STORAGE_LOCATIONS";
    for l in locations {
        check_keys(
            l,
            &[
                "NAME",
                "STORAGE_PROVIDER",
                "STORAGE_BASE_URL",
                "STORAGE_AWS_ROLE_ARN",
                "STORAGE_AWS_EXTERNAL_ID",
                "AZURE_TENANT_ID",
            ],
            LOC,
        )?;
        required(want_str(l, "NAME", LOC)?, "NAME", LOC)?;
        let provider = required(
            want_str(l, "STORAGE_PROVIDER", LOC)?,
            "STORAGE_PROVIDER",
            LOC,
        )?;
        let url = required(
            want_str(l, "STORAGE_BASE_URL", LOC)?,
            "STORAGE_BASE_URL",
            LOC,
        )?;
        let scheme_ok = match provider {
            "S3" | "S3GOV" => {
                required(
                    want_str(l, "STORAGE_AWS_ROLE_ARN", LOC)?,
                    "STORAGE_AWS_ROLE_ARN",
                    LOC,
                )?;
                url.starts_with("s3://")
            }
            "GCS" => url.starts_with("gcs://"),
            "AZURE" => {
                required(want_str(l, "AZURE_TENANT_ID", LOC)?, "AZURE_TENANT_ID", LOC)?;
                url.starts_with("azure://")
            }
            other => return Err(invalid(format!("invalid STORAGE_PROVIDER '{other}'"))),
        };
        if !scheme_ok {
            return Err(invalid(format!(
                "STORAGE_BASE_URL '{url}' does not match STORAGE_PROVIDER '{provider}'"
            )));
        }
    }
    Ok(Volume {
        name,
        locations: locations.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexing_follows_snowflakes_quoting() {
        let t = lex(r#"x "A""b" 'it''s \'q\' \\' 12 (=)"#).unwrap();
        let toks: Vec<Tok> = t.into_iter().map(|(_, t)| t).collect();
        assert_eq!(
            toks,
            vec![
                Tok::Word("x".into()),
                Tok::Quoted("A\"b".into()),
                Tok::Str("it's 'q' \\".into()),
                Tok::Num("12".into()),
                Tok::Sym('('),
                Tok::Sym('='),
                Tok::Sym(')'),
            ]
        );
    }

    #[test]
    fn unknown_sql_is_a_compilation_error() {
        let mut c = Catalog::default();
        match c.execute("SELEC 1") {
            Outcome::Error {
                sql_state, message, ..
            } => {
                assert_eq!(sql_state, "42000");
                assert_eq!(
                    message,
                    "SQL compilation error:\nsyntax error line 1 at position 0 unexpected 'SELEC'."
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c.execute("CREATE DATABASE x garbage"),
            Outcome::Error { .. }
        ));
        assert!(matches!(
            c.execute("CREATE DATABASE x;"),
            Outcome::Rows { .. }
        ));
        assert!(c.databases.contains_key("X"), "unquoted is upper-cased");
    }
}
