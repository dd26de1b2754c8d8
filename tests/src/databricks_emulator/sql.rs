//! The SQL the engine emits for tables (catalog objects, `CREATE SCHEMA` included, are
//! `catalog_sql.rs`'s), parsed strictly: object names must be backtick-quoted, and any
//! other shape is a syntax error, as a warehouse answers it.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// A bare word, as written.
    Word(String),
    /// A backtick-quoted identifier, unquoted.
    Quoted(String),
    Num(String),
    /// A single-quoted string literal, unquoted.
    Str(String),
    Sym(char),
}

pub(super) type SqlError = (String, String);

fn syntax(near: &str) -> SqlError {
    (
        "BAD_REQUEST".into(),
        format!("[PARSE_SYNTAX_ERROR] Syntax error at or near '{near}'. SQLSTATE: 42601"),
    )
}

fn tokenize(sql: &str) -> Result<Vec<Tok>, SqlError> {
    let mut out = Vec::new();
    let mut it = sql.chars().peekable();
    while let Some(&c) = it.peek() {
        if c.is_whitespace() {
            it.next();
        } else if c == '`' {
            it.next();
            let mut s = String::new();
            loop {
                match it.next() {
                    None => return Err(syntax("`")),
                    Some('`') if it.peek() == Some(&'`') => {
                        it.next();
                        s.push('`');
                    }
                    Some('`') => break,
                    Some(ch) => s.push(ch),
                }
            }
            out.push(Tok::Quoted(s));
        } else if c == '\'' {
            it.next();
            let mut s = String::new();
            loop {
                match it.next() {
                    None => return Err(syntax("'")),
                    Some('\'') if it.peek() == Some(&'\'') => {
                        it.next();
                        s.push('\'');
                    }
                    Some('\'') => break,
                    Some(ch) => s.push(ch),
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut s = String::new();
            while let Some(&ch) = it.peek() {
                if ch.is_ascii_alphanumeric() || ch == '_' {
                    s.push(ch);
                    it.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Word(s));
        } else if c.is_ascii_digit() {
            let mut s = String::new();
            while let Some(&ch) = it.peek().filter(|ch| ch.is_ascii_digit()) {
                s.push(ch);
                it.next();
            }
            out.push(Tok::Num(s));
        } else if matches!(c, '.' | '(' | ')' | ',' | '*') {
            it.next();
            out.push(Tok::Sym(c));
        } else {
            return Err(syntax(&c.to_string()));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn near(&self) -> String {
        match self.toks.get(self.pos) {
            None => "end of input".into(),
            Some(Tok::Word(w) | Tok::Num(w)) => w.clone(),
            Some(Tok::Quoted(q)) => format!("`{q}`"),
            Some(Tok::Str(q)) => format!("'{q}'"),
            Some(Tok::Sym(c)) => c.to_string(),
        }
    }
    fn kw(&mut self, k: &str) -> Result<(), SqlError> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k) => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(syntax(&self.near())),
        }
    }
    fn is_kw(&self, k: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }
    fn sym(&mut self, c: char) -> Result<(), SqlError> {
        if self.toks.get(self.pos) == Some(&Tok::Sym(c)) {
            self.pos += 1;
            Ok(())
        } else {
            Err(syntax(&self.near()))
        }
    }
    /// Object names must be quoted: the engine always quotes them.
    fn ident(&mut self) -> Result<String, SqlError> {
        match self.toks.get(self.pos) {
            Some(Tok::Quoted(q)) => {
                self.pos += 1;
                Ok(q.clone())
            }
            _ => Err(syntax(&self.near())),
        }
    }
    fn name3(&mut self) -> Result<[String; 3], SqlError> {
        let c = self.ident()?;
        self.sym('.')?;
        let s = self.ident()?;
        self.sym('.')?;
        let t = self.ident()?;
        Ok([c, s, t])
    }
    fn columns(&mut self) -> Result<Vec<String>, SqlError> {
        let mut cols = vec![self.ident()?];
        while self.toks.get(self.pos) == Some(&Tok::Sym(',')) {
            self.pos += 1;
            cols.push(self.ident()?);
        }
        Ok(cols)
    }
    fn string(&mut self) -> Result<String, SqlError> {
        match self.toks.get(self.pos) {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(syntax(&self.near())),
        }
    }
    fn num(&mut self) -> Result<usize, SqlError> {
        match self.toks.get(self.pos) {
            Some(Tok::Num(n)) => {
                let v = n.parse().map_err(|_| syntax(n))?;
                self.pos += 1;
                Ok(v)
            }
            _ => Err(syntax(&self.near())),
        }
    }
    fn end(&self) -> Result<(), SqlError> {
        if self.pos == self.toks.len() {
            Ok(())
        } else {
            Err(syntax(&self.near()))
        }
    }
    /// `( SELECT cols FROM a EXCEPT SELECT cols FROM b )`
    #[allow(clippy::type_complexity)]
    fn except(&mut self) -> Result<(Vec<String>, [String; 3], Vec<String>, [String; 3]), SqlError> {
        self.sym('(')?;
        self.kw("SELECT")?;
        let a = self.columns()?;
        self.kw("FROM")?;
        let from = self.name3()?;
        self.kw("EXCEPT")?;
        self.kw("SELECT")?;
        let b = self.columns()?;
        self.kw("FROM")?;
        let other = self.name3()?;
        self.sym(')')?;
        Ok((a, from, b, other))
    }
    /// `COUNT ( * ) AS n FROM`
    fn count_prefix(&mut self) -> Result<(), SqlError> {
        self.kw("COUNT")?;
        self.sym('(')?;
        self.sym('*')?;
        self.sym(')')?;
        self.kw("AS")?;
        self.kw("n")?;
        self.kw("FROM")
    }
}

pub(super) enum Stmt2 {
    CreateCatalog(String, Option<(String, String)>),
    /// `CREATE OR REPLACE TABLE t DEEP CLONE s [TIMESTAMP AS OF 'instant'] [LOCATION 'path']`
    DeepClone([String; 3], [String; 3], Option<String>, Option<String>),
    /// `CREATE TABLE IF NOT EXISTS t LOCATION 'path'`: an external table over Delta files
    /// already at `path`.
    Register([String; 3], String),
    Count([String; 3]),
    Except(Vec<String>, [String; 3], Vec<String>, [String; 3]),
    /// `SELECT cols FROM (SELECT cols FROM a EXCEPT SELECT cols FROM b) LIMIT n`
    ExceptRows(Vec<String>, [String; 3], Vec<String>, [String; 3], usize),
    SelectOne,
    /// `DESCRIBE HISTORY t [LIMIT n]`
    History([String; 3], Option<usize>),
    /// `RESTORE TABLE t TO VERSION AS OF n`
    Restore([String; 3], u64),
}

pub(super) fn parse(sql: &str) -> Result<Stmt2, SqlError> {
    let mut p = Parser {
        toks: tokenize(sql)?,
        pos: 0,
    };
    let stmt = if p.is_kw("DESCRIBE") {
        p.kw("DESCRIBE")?;
        p.kw("HISTORY")?;
        let t = p.name3()?;
        let limit = if p.is_kw("LIMIT") {
            p.kw("LIMIT")?;
            Some(p.num()?)
        } else {
            None
        };
        Stmt2::History(t, limit)
    } else if p.is_kw("RESTORE") {
        p.kw("RESTORE")?;
        p.kw("TABLE")?;
        let t = p.name3()?;
        p.kw("TO")?;
        p.kw("VERSION")?;
        p.kw("AS")?;
        p.kw("OF")?;
        Stmt2::Restore(t, p.num()? as u64)
    } else if p.is_kw("CREATE") {
        p.kw("CREATE")?;
        if p.is_kw("CATALOG") {
            p.kw("CATALOG")?;
            p.kw("IF")?;
            p.kw("NOT")?;
            p.kw("EXISTS")?;
            let c = p.ident()?;
            let share = if p.is_kw("USING") {
                p.kw("USING")?;
                p.kw("SHARE")?;
                let prov = p.ident()?;
                p.sym('.')?;
                Some((prov, p.ident()?))
            } else {
                None
            };
            Stmt2::CreateCatalog(c, share)
        } else if p.is_kw("TABLE") {
            p.kw("TABLE")?;
            p.kw("IF")?;
            p.kw("NOT")?;
            p.kw("EXISTS")?;
            let t = p.name3()?;
            p.kw("LOCATION")?;
            Stmt2::Register(t, p.string()?)
        } else {
            p.kw("OR")?;
            p.kw("REPLACE")?;
            p.kw("TABLE")?;
            let target = p.name3()?;
            p.kw("DEEP")?;
            p.kw("CLONE")?;
            let source = p.name3()?;
            let as_of = if p.is_kw("TIMESTAMP") {
                p.kw("TIMESTAMP")?;
                p.kw("AS")?;
                p.kw("OF")?;
                match p.toks.get(p.pos) {
                    Some(Tok::Str(ts)) => {
                        p.pos += 1;
                        Some(ts.clone())
                    }
                    _ => return Err(syntax(&p.near())),
                }
            } else {
                None
            };
            let location = if p.is_kw("LOCATION") {
                p.kw("LOCATION")?;
                Some(p.string()?)
            } else {
                None
            };
            Stmt2::DeepClone(target, source, as_of, location)
        }
    } else {
        p.kw("SELECT")?;
        if matches!(p.toks.get(p.pos), Some(Tok::Num(n)) if n == "1") {
            p.pos += 1;
            p.kw("AS")?;
            p.kw("ok")?;
            Stmt2::SelectOne
        } else if p.is_kw("COUNT") {
            p.count_prefix()?;
            if p.toks.get(p.pos) == Some(&Tok::Sym('(')) {
                let (a, from, b, other) = p.except()?;
                Stmt2::Except(a, from, b, other)
            } else {
                Stmt2::Count(p.name3()?)
            }
        } else {
            let outer = p.columns()?;
            p.kw("FROM")?;
            let (a, from, b, other) = p.except()?;
            if outer != a {
                return Err(syntax("SELECT"));
            }
            p.kw("LIMIT")?;
            let limit = p.num()?;
            Stmt2::ExceptRows(a, from, b, other, limit)
        }
    };
    p.end()?;
    Ok(stmt)
}

pub(super) fn quoted3(n: &[String; 3]) -> String {
    n.iter()
        .map(|p| format!("`{}`", p.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

pub(super) fn not_found(n: &[String; 3]) -> SqlError {
    (
        "BAD_REQUEST".into(),
        format!(
            "[TABLE_OR_VIEW_NOT_FOUND] The table or view {} cannot be found. SQLSTATE: 42P01",
            quoted3(n)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_the_engine_shapes() {
        assert!(matches!(
            parse("CREATE OR REPLACE TABLE `a`.`b`.`c` DEEP CLONE `d`.`e`.`f`"),
            Ok(Stmt2::DeepClone(..))
        ));
        assert!(
            matches!(parse("CREATE OR REPLACE TABLE `a`.`b`.`c` DEEP CLONE `d`.`e`.`f` TIMESTAMP AS OF '2026-11-20T12:00:00.000000Z'"), Ok(Stmt2::DeepClone(_, _, Some(ts), None)) if ts == "2026-11-20T12:00:00.000000Z")
        );
        assert!(
            matches!(parse("SELECT COUNT(*) AS n FROM `a`.`b`.`c``;x`"), Ok(Stmt2::Count(n)) if n[2] == "c`;x")
        );
        assert!(matches!(
            parse("DESCRIBE HISTORY `a`.`b`.`c` LIMIT 1"),
            Ok(Stmt2::History(_, Some(1)))
        ));
        assert!(matches!(
            parse("RESTORE TABLE `a`.`b`.`c` TO VERSION AS OF 3"),
            Ok(Stmt2::Restore(_, 3))
        ));
        for bad in [
            "DESCRIBE HISTORY a.b.c",
            "RESTORE TABLE `a`.`b`.`c` TO VERSION AS OF '3'",
            "SELECT COUNT(*) AS n FROM a.b.c",
            "SELECT COUNT(*) AS n FROM `a`.`b`.`c`; DROP TABLE `x`",
            "DROP TABLE `a`.`b`.`c`",
            "SELECT COUNT(*) AS n FROM `a`.`b`.`c",
            "CREATE OR REPLACE TABLE `a`.`b`.`c` DEEP CLONE `d`.`e`.`f` TIMESTAMP AS OF 5",
            "CREATE OR REPLACE TABLE `a`.`b`.`c` DEEP CLONE `d`.`e`.`f` TIMESTAMP AS OF '2026",
        ] {
            let e = parse(bad).err().unwrap_or_else(|| panic!("{bad} parsed"));
            assert!(e.1.contains("PARSE_SYNTAX_ERROR"), "{bad}: {e:?}");
        }
    }
}
