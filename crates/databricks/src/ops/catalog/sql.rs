//! Everything catalog replication puts into SQL, quoted or refused: object names (each part
//! an [`Ident`], backticks doubled), principals (backtick-quoted: they hold `@`, dots and
//! spaces), string literals (Databricks SQL reads backslash escapes inside quotes, so `\`
//! and `'` are escaped with a backslash — doubling a quote would end the literal and start
//! another), privileges and securable kinds (from a fixed vocabulary).

use super::CatalogError;
use crate::Ident;

fn refused(what: &str, value: &str, why: &str) -> CatalogError {
    CatalogError::Refused(format!(
        "{what} {:?}: {why}",
        value.escape_debug().to_string()
    ))
}

/// A dotted name of one to three parts (`catalog`, `catalog.schema`,
/// `catalog.schema.table`), every part an [`Ident`], quoted.
pub fn quote_name(full_name: &str) -> Result<String, CatalogError> {
    let parts: Vec<&str> = full_name.split('.').collect();
    if parts.len() > 3 {
        return Err(refused("name", full_name, "more than three parts"));
    }
    let quoted: Result<Vec<String>, _> = parts
        .iter()
        .map(|p| Ident::new(p).map(|i| i.quoted()))
        .collect();
    Ok(quoted?.join("."))
}

/// A column name: any characters but control characters (Delta allows spaces and dots in
/// column names), backtick-quoted.
pub fn quote_column(name: &str) -> Result<String, CatalogError> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(refused("column", name, "empty or with a control character"));
    }
    Ok(format!("`{}`", name.replace('`', "``")))
}

/// A principal (user e-mail, group, service principal application ID), backtick-quoted.
pub fn quote_principal(principal: &str) -> Result<String, CatalogError> {
    if principal.is_empty() || principal.chars().count() > 255 {
        return Err(refused(
            "principal",
            principal,
            "empty or longer than 255 characters",
        ));
    }
    if principal.chars().any(char::is_control) {
        return Err(refused(
            "principal",
            principal,
            "it contains a control character",
        ));
    }
    Ok(format!("`{}`", principal.replace('`', "``")))
}

/// A string literal: `'…'` with `\`, `'`, newline, carriage return and tab escaped; other
/// control characters are refused.
pub fn literal(s: &str) -> Result<String, CatalogError> {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                return Err(refused("text", s, "it contains a control character"));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// A privilege as the permissions API names it (`USE_CATALOG`) in SQL (`USE CATALOG`).
pub fn privilege(p: &str) -> Result<String, CatalogError> {
    if p.is_empty() || !p.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        return Err(refused("privilege", p, "not an upper-case privilege name"));
    }
    Ok(p.replace('_', " "))
}

/// A securable kind: the SQL keyword and the permissions API's path segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Securable {
    pub sql: &'static str,
    pub api: &'static str,
}

/// `CATALOG`, `SCHEMA`, `TABLE`, `VIEW`, `MATERIALIZED_VIEW`, `VOLUME`, `FUNCTION`,
/// `EXTERNAL_LOCATION`, `STORAGE_CREDENTIAL` (any case, `_` or space).
pub fn securable(kind: &str) -> Result<Securable, CatalogError> {
    let k = kind.to_ascii_uppercase().replace(' ', "_");
    let (sql, api) = match k.as_str() {
        "CATALOG" => ("CATALOG", "catalog"),
        "SCHEMA" => ("SCHEMA", "schema"),
        "TABLE" => ("TABLE", "table"),
        "VIEW" => ("VIEW", "table"),
        "MATERIALIZED_VIEW" => ("MATERIALIZED VIEW", "table"),
        "VOLUME" => ("VOLUME", "volume"),
        "FUNCTION" => ("FUNCTION", "function"),
        "EXTERNAL_LOCATION" => ("EXTERNAL LOCATION", "external_location"),
        "STORAGE_CREDENTIAL" => ("STORAGE CREDENTIAL", "storage_credential"),
        _ => {
            return Err(refused(
                "securable type",
                kind,
                "not a Unity Catalog securable",
            ));
        }
    };
    Ok(Securable { sql, api })
}

/// `('k' = 'v', …)`.
pub fn pairs<'a>(
    items: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<String, CatalogError> {
    let parts: Result<Vec<String>, CatalogError> = items
        .into_iter()
        .map(|(k, v)| Ok(format!("{} = {}", literal(k)?, literal(v)?)))
        .collect();
    Ok(format!("({})", parts?.join(", ")))
}

/// `('k', …)`.
pub fn keys<'a>(items: impl IntoIterator<Item = &'a String>) -> Result<String, CatalogError> {
    let parts: Result<Vec<String>, CatalogError> = items.into_iter().map(|k| literal(k)).collect();
    Ok(format!("({})", parts?.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_or_refused() {
        assert_eq!(quote_name("c.s.t`x").unwrap(), "`c`.`s`.`t``x`");
        assert_eq!(quote_name("c").unwrap(), "`c`");
        // A quote is legal in a name and quoted; the space is not, and refused.
        assert_eq!(quote_name("c.s.t'x").unwrap(), "`c`.`s`.`t'x`");
        let e = quote_name("c.s.t'; DROP").unwrap_err().to_string();
        assert!(e.starts_with("invalid identifier"), "{e}");
        for bad in ["c..t", "c.s.t.u", "c.s t.x", ""] {
            assert!(quote_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn principals_and_literals_cannot_break_out() {
        assert_eq!(
            quote_principal("group with space").unwrap(),
            "`group with space`"
        );
        assert_eq!(quote_principal("a`b@x.com").unwrap(), "`a``b@x.com`");
        assert!(quote_principal("a\nb").is_err());
        assert!(quote_principal("").is_err());
        assert_eq!(literal("it's").unwrap(), r"'it\'s'");
        assert_eq!(literal(r"a\'; DROP").unwrap(), r"'a\\\'; DROP'");
        assert_eq!(literal("two\nlines").unwrap(), r"'two\nlines'");
        assert!(literal("bell\u{7}").is_err());
    }

    #[test]
    fn privileges_and_securables_come_from_a_vocabulary() {
        assert_eq!(privilege("USE_CATALOG").unwrap(), "USE CATALOG");
        assert_eq!(privilege("SELECT").unwrap(), "SELECT");
        for bad in ["SELECT; DROP", "select", "", "ALL PRIVILEGES"] {
            assert!(privilege(bad).is_err(), "{bad}");
        }
        assert_eq!(securable("view").unwrap().api, "table");
        assert_eq!(securable("VOLUME").unwrap().sql, "VOLUME");
        assert_eq!(
            securable("external location").unwrap().sql,
            "EXTERNAL LOCATION"
        );
        assert!(securable("TABLE; DROP").is_err());
    }
}
