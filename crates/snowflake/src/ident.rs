//! Identifiers and string literals that reach Snowflake SQL.
//!
//! Every identifier is double-quoted, with `"` doubled inside (Snowflake's "Identifier
//! requirements"): an unquoted identifier would be upper-cased and could not hold spaces,
//! dots or quotes, so quoting always keeps the name exactly as given. A quoted identifier
//! holds any character, at most 255 of them; an empty name and NUL are refused.
//!
//! String literals are single-quoted; `\` and `'` are escaped (`\\`, `\'`) as Snowflake's
//! string constants document, and newline, carriage return and tab are written as `\n`, `\r`,
//! `\t`, so a rendered statement stays on one line.

use std::fmt;

use crate::SnowflakeError;

/// Longest identifier Snowflake accepts, quoted or not.
const MAX_LEN: usize = 255;

fn check(name: &str) -> Result<(), SnowflakeError> {
    let refuse = |why: &str| {
        Err(SnowflakeError::InvalidName {
            name: name.escape_debug().to_string(),
            reason: why.to_owned(),
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.chars().count() > MAX_LEN {
        return refuse("it is longer than 255 characters");
    }
    if name.contains('\0') {
        return refuse("it contains a NUL character");
    }
    Ok(())
}

/// `name` as a double-quoted Snowflake identifier: `"My ""odd"" name"`.
pub fn quote_ident(name: &str) -> Result<String, SnowflakeError> {
    Ident::new(name).map(|i| i.quoted())
}

/// `text` as a single-quoted Snowflake string literal.
pub fn quote_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A validated identifier, kept as given (case included).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    pub fn new(name: &str) -> Result<Self, SnowflakeError> {
        check(name)?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identifier double-quoted.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A table's three-part name in Snowflake.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    pub database: Ident,
    pub schema: Ident,
    pub table: Ident,
}

impl Name {
    pub fn new(database: &str, schema: &str, table: &str) -> Result<Self, SnowflakeError> {
        Ok(Self {
            database: Ident::new(database)?,
            schema: Ident::new(schema)?,
            table: Ident::new(table)?,
        })
    }

    /// `"database"."schema"."table"`, each part quoted.
    pub fn fqn(&self) -> String {
        format!(
            "{}.{}.{}",
            self.database.quoted(),
            self.schema.quoted(),
            self.table.quoted()
        )
    }
}

impl fmt::Display for Name {
    /// The quoted form: unambiguous even when a part holds a dot.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fqn())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_double_quoted_with_quotes_doubled() {
        assert_eq!(quote_ident("plain").unwrap(), "\"plain\"");
        assert_eq!(quote_ident("MixedCase").unwrap(), "\"MixedCase\"");
        assert_eq!(quote_ident("a\"b").unwrap(), "\"a\"\"b\"");
        assert_eq!(quote_ident("\"").unwrap(), "\"\"\"\"");
        assert_eq!(quote_ident("x\";DROP").unwrap(), "\"x\"\";DROP\"");
        assert_eq!(quote_ident("back\\slash").unwrap(), "\"back\\slash\"");
        assert_eq!(
            Name::new("My.DB", "My Schema", "Tab\"le.1").unwrap().fqn(),
            "\"My.DB\".\"My Schema\".\"Tab\"\"le.1\""
        );
    }

    #[test]
    fn empty_long_and_nul_names_are_refused() {
        for bad in ["", "a\0b", &"x".repeat(256)] {
            let e = quote_ident(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("invalid Snowflake name"),
                "{bad:?}: {e}"
            );
        }
        assert!(quote_ident(&"x".repeat(255)).is_ok());
        assert!(Name::new("d", "", "t").is_err());
    }

    #[test]
    fn string_literals_escape_quotes_and_backslashes() {
        assert_eq!(quote_string("abc"), "'abc'");
        assert_eq!(quote_string("it's"), "'it\\'s'");
        assert_eq!(quote_string("c:\\dir"), "'c:\\\\dir'");
        assert_eq!(quote_string("\\'"), "'\\\\\\''");
        assert_eq!(quote_string("a\nb"), "'a\\nb'");
    }
}
