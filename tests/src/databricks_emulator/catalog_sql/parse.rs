//! Tokens (with byte offsets, so a view's text is kept verbatim) and the parser helpers of
//! the catalog-object SQL.

use super::super::sql::SqlError;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum T {
    Word(String),
    Quoted(String),
    Str(String),
    Sym(char),
}

pub(super) fn syntax(near: &str) -> SqlError {
    (
        "BAD_REQUEST".into(),
        format!("[PARSE_SYNTAX_ERROR] Syntax error at or near '{near}'. SQLSTATE: 42601"),
    )
}

pub(super) fn bad(code: &str, message: String) -> SqlError {
    ("BAD_REQUEST".into(), format!("[{code}] {message}"))
}

/// Tokens with their byte offsets.
pub(super) fn tokenize(sql: &str) -> Result<Vec<(usize, T)>, SqlError> {
    let mut out = Vec::new();
    let mut it = sql.char_indices().peekable();
    while let Some(&(at, c)) = it.peek() {
        if c.is_whitespace() {
            it.next();
        } else if sql[at..].starts_with("--") {
            while it.next_if(|p| p.1 != '\n').is_some() {}
        } else if sql[at..].starts_with("/*") {
            let end = sql[at + 2..].find("*/").ok_or_else(|| syntax("/*"))?;
            while it.next_if(|p| p.0 < at + 2 + end + 2).is_some() {}
        } else if c == '`' {
            it.next();
            let mut s = String::new();
            loop {
                match it.next() {
                    None => return Err(syntax("`")),
                    Some((_, '`')) if it.peek().map(|p| p.1) == Some('`') => {
                        it.next();
                        s.push('`');
                    }
                    Some((_, '`')) => break,
                    Some((_, ch)) => s.push(ch),
                }
            }
            out.push((at, T::Quoted(s)));
        } else if c == '\'' {
            it.next();
            let mut s = String::new();
            loop {
                match it.next() {
                    None => return Err(syntax("'")),
                    Some((_, '\\')) => match it.next() {
                        Some((_, 'n')) => s.push('\n'),
                        Some((_, 't')) => s.push('\t'),
                        Some((_, 'r')) => s.push('\r'),
                        Some((_, ch)) => s.push(ch),
                        None => return Err(syntax("'")),
                    },
                    Some((_, '\'')) => break,
                    Some((_, ch)) => s.push(ch),
                }
            }
            out.push((at, T::Str(s)));
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let mut s = String::new();
            while let Some(&(_, ch)) = it
                .peek()
                .filter(|p| p.1.is_ascii_alphanumeric() || p.1 == '_')
            {
                s.push(ch);
                it.next();
            }
            out.push((at, T::Word(s)));
        } else {
            it.next();
            out.push((at, T::Sym(c)));
        }
    }
    Ok(out)
}

pub(super) struct P<'a> {
    pub(super) sql: &'a str,
    pub(super) toks: Vec<(usize, T)>,
    pub(super) pos: usize,
}

impl P<'_> {
    pub(super) fn near(&self) -> String {
        match self.toks.get(self.pos).map(|t| &t.1) {
            None => "end of input".into(),
            Some(T::Word(w)) => w.clone(),
            Some(T::Quoted(q)) => format!("`{q}`"),
            Some(T::Str(s)) => format!("'{s}'"),
            Some(T::Sym(c)) => c.to_string(),
        }
    }
    pub(super) fn is(&self, k: &str) -> bool {
        matches!(self.toks.get(self.pos), Some((_, T::Word(w))) if w.eq_ignore_ascii_case(k))
    }
    pub(super) fn eat(&mut self, k: &str) -> bool {
        let yes = self.is(k);
        self.pos += usize::from(yes);
        yes
    }
    pub(super) fn kw(&mut self, k: &str) -> Result<(), SqlError> {
        if self.eat(k) {
            Ok(())
        } else {
            Err(syntax(&self.near()))
        }
    }
    pub(super) fn sym(&mut self, c: char) -> Result<(), SqlError> {
        if matches!(self.toks.get(self.pos), Some((_, T::Sym(s))) if *s == c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(syntax(&self.near()))
        }
    }
    pub(super) fn is_sym(&self, c: char) -> bool {
        matches!(self.toks.get(self.pos), Some((_, T::Sym(s))) if *s == c)
    }
    pub(super) fn ident(&mut self) -> Result<String, SqlError> {
        match self.toks.get(self.pos) {
            Some((_, T::Quoted(q))) => {
                self.pos += 1;
                Ok(q.clone())
            }
            _ => Err(syntax(&self.near())),
        }
    }
    pub(super) fn string(&mut self) -> Result<String, SqlError> {
        match self.toks.get(self.pos) {
            Some((_, T::Str(s))) => {
                self.pos += 1;
                Ok(s.clone())
            }
            _ => Err(syntax(&self.near())),
        }
    }
    /// A quoted name of `n` parts, joined with dots.
    pub(super) fn name(&mut self, n: usize) -> Result<String, SqlError> {
        let mut parts = vec![self.ident()?];
        for _ in 1..n {
            self.sym('.')?;
            parts.push(self.ident()?);
        }
        Ok(parts.join("."))
    }
    pub(super) fn list<X>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<X, SqlError>,
    ) -> Result<Vec<X>, SqlError> {
        self.sym('(')?;
        let mut out = vec![item(self)?];
        while self.is_sym(',') {
            self.pos += 1;
            out.push(item(self)?);
        }
        self.sym(')')?;
        Ok(out)
    }
    pub(super) fn pairs(&mut self) -> Result<Vec<(String, String)>, SqlError> {
        self.list(|p| {
            let k = p.string()?;
            p.sym('=')?;
            Ok((k, p.string()?))
        })
    }
    pub(super) fn end(&self) -> Result<(), SqlError> {
        if self.pos == self.toks.len() {
            Ok(())
        } else {
            Err(syntax(&self.near()))
        }
    }
    /// `CATALOG c` | `SCHEMA c.s` | `TABLE|VIEW|VOLUME c.s.x` → (meta kind, keyword, name).
    pub(super) fn securable(&mut self) -> Result<(&'static str, &'static str, String), SqlError> {
        for (kw, kind, n) in [
            ("CATALOG", "catalog", 1),
            ("SCHEMA", "schema", 2),
            ("TABLE", "table", 3),
            ("VIEW", "table", 3),
            ("VOLUME", "volume", 3),
        ] {
            if self.eat(kw) {
                return Ok((kind, kw, self.name(n)?));
            }
        }
        Err(syntax(&self.near()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::handles;
    use super::*;

    #[test]
    fn literals_read_backslash_escapes_and_names_must_be_quoted() {
        let t = tokenize(r"COMMENT ON TABLE `a`.`b`.`c``d` IS 'it\'s \\ fine'").unwrap();
        assert_eq!(t[7].1, T::Quoted("c`d".into()));
        assert_eq!(t[9].1, T::Str(r"it's \ fine".into()));
        let toks = tokenize("GRANT SELECT ON TABLE a.b.c TO `x`").unwrap();
        let mut p = P {
            sql: "",
            toks,
            pos: 3,
        };
        assert!(p.securable().unwrap_err().1.contains("PARSE_SYNTAX_ERROR"));
        let p = P {
            sql: "",
            toks: tokenize("CREATE OR REPLACE TABLE `a`").unwrap(),
            pos: 0,
        };
        assert!(
            !handles(&p),
            "DEEP CLONE's CREATE OR REPLACE TABLE is the warehouse's"
        );
    }
}
