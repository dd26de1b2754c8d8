//! Identifiers that reach SQL.
//!
//! Every catalog, schema, table, share and provider name the engine puts into a statement
//! goes through [`Ident::new`], which applies Unity Catalog's naming rules, and is rendered
//! backtick-quoted with backticks doubled, so a name can never end the identifier and
//! become SQL. Unity Catalog refuses periods, spaces, forward slashes and control
//! characters in object names; so does this module, because a dotted name would also make
//! a REST `full_name` ambiguous. Backticks, semicolons, quotes and dashes are legal and are
//! quoted.

use std::fmt;

use crate::DatabricksError;

/// Longest name Unity Catalog accepts.
const MAX_LEN: usize = 255;

/// One validated identifier (a catalog, schema, table, share, recipient or provider name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Validate a name: non-empty, at most 255 characters, no period, space, forward slash,
    /// ASCII control character or DEL.
    pub fn new(name: &str) -> Result<Self, DatabricksError> {
        let refuse = |why: &str| {
            Err(DatabricksError::InvalidIdentifier {
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
        if let Some(c) = name
            .chars()
            .find(|c| c.is_control() || matches!(c, '.' | ' ' | '/'))
        {
            return refuse(&format!(
                "it contains {:?}, which Unity Catalog does not allow in names",
                c
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The raw name (for REST paths and messages).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted for SQL: `` `na``me` ``.
    pub fn quoted(&self) -> String {
        format!("`{}`", self.0.replace('`', "``"))
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A three-level table name `catalog.schema.table`, each part validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub catalog: Ident,
    pub schema: Ident,
    pub table: Ident,
}

impl TableName {
    pub fn new(catalog: &str, schema: &str, table: &str) -> Result<Self, DatabricksError> {
        Ok(Self {
            catalog: Ident::new(catalog)?,
            schema: Ident::new(schema)?,
            table: Ident::new(table)?,
        })
    }

    /// Parse an unquoted `catalog.schema.table` (as Unity Catalog's `full_name`).
    pub fn parse(full_name: &str) -> Result<Self, DatabricksError> {
        let parts: Vec<&str> = full_name.split('.').collect();
        match parts.as_slice() {
            [c, s, t] => Self::new(c, s, t),
            _ => Err(DatabricksError::InvalidIdentifier {
                name: full_name.escape_debug().to_string(),
                reason: "expected catalog.schema.table".into(),
            }),
        }
    }

    /// `` `catalog`.`schema`.`table` ``.
    pub fn quoted(&self) -> String {
        format!(
            "{}.{}.{}",
            self.catalog.quoted(),
            self.schema.quoted(),
            self.table.quoted()
        )
    }

    /// `catalog.schema.table`, as Unity Catalog's REST API names it.
    pub fn full_name(&self) -> String {
        format!("{}.{}.{}", self.catalog, self.schema, self.table)
    }

    /// The same schema and table in another catalog.
    pub fn in_catalog(&self, catalog: &Ident) -> Self {
        Self {
            catalog: catalog.clone(),
            ..self.clone()
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_backticks_by_doubling() {
        assert_eq!(Ident::new("a`b").unwrap().quoted(), "`a``b`");
        assert_eq!(Ident::new("x;DROP").unwrap().quoted(), "`x;DROP`");
        assert_eq!(
            TableName::new("c", "s", "t`;--").unwrap().quoted(),
            "`c`.`s`.`t``;--`"
        );
    }

    #[test]
    fn refuses_what_unity_catalog_refuses() {
        for bad in ["", "a.b", "a b", "a/b", "a\nb", "a\u{7f}", &"x".repeat(256)] {
            let err = Ident::new(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid identifier"),
                "{bad:?}: {err}"
            );
        }
        assert!(TableName::parse("a.b").is_err());
        assert_eq!(
            TableName::parse("c.s.t").unwrap().full_name(),
            "c.s.t".to_owned()
        );
    }
}
