//! The pre-scan: a config text (a file, an environment override, a `--set` value) too large
//! or too deeply nested to parse quickly is refused before the YAML parser sees it.

/// Largest config text read (a file, an environment override, a `--set` value), in bytes.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;
/// Deepest nesting a config may have: block indentation levels plus open `[` and `{`.
/// (A parser's time grows faster than linearly with nesting; real configs nest ~6 deep.)
pub const MAX_NESTING: usize = 64;

pub(super) fn too_large() -> String {
    format!(
        "larger than {} MiB, the limit (it keeps parsing time and error messages bounded)",
        MAX_CONFIG_BYTES >> 20
    )
}

/// Refuse a config text too large or too deeply nested to parse quickly.
pub(super) fn check_shape(text: &str) -> Result<(), String> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    match nesting_exceeded(text) {
        Some(line) => Err(format!(
            "nested deeper than {MAX_NESTING} levels at line {line}; a config needs no such depth"
        )),
        None => Ok(()),
    }
}

/// The first line at which `text` nests deeper than [`MAX_NESTING`], by a linear scan that
/// follows what YAML needs for it: block indentation (and compact `- ` / `? ` entries),
/// flow `[` / `{` (outside quoted scalars, comments and block scalars).
fn nesting_exceeded(text: &str) -> Option<usize> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    // Inside a `|` / `>` block scalar opened on a line with this indentation.
    let mut block_scalar: Option<usize> = None;
    // Inside a quoted scalar that goes on past the end of a line.
    let mut quote: Option<char> = None;
    for (n, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let content = &line[indent..];
        if let Some(parent) = block_scalar {
            if content.is_empty() || indent > parent {
                continue;
            }
            block_scalar = None;
        }
        if quote.is_none() && flow == 0 {
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            while indents.last().is_some_and(|&c| c > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
        }
        // At the start of a node: where `[`, `{`, quotes, `|`, `>`, `-` and `?` are indicators.
        let mut node_start = true;
        let mut after_space = true;
        let mut chars = content.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let next = chars.peek().map(|&(_, c)| c);
            if let Some(q) = quote {
                match c {
                    '\\' if q == '"' => {
                        chars.next();
                    }
                    '\'' if q == '\'' && next == Some('\'') => {
                        chars.next();
                    }
                    c if c == q => {
                        quote = None;
                        node_start = false;
                    }
                    _ => {}
                }
                after_space = false;
                continue;
            }
            let spaced = next.is_none_or(|c| c == ' ' || c == '\t');
            match c {
                ' ' | '\t' => {
                    after_space = true;
                    continue;
                }
                '#' if after_space => break,
                '"' | '\'' if node_start => quote = Some(c),
                '[' | '{' if node_start || flow > 0 => {
                    flow += 1;
                    if indents.len() + flow > MAX_NESTING {
                        return Some(n + 1);
                    }
                    node_start = true;
                }
                ']' | '}' if flow > 0 => {
                    flow -= 1;
                    node_start = false;
                }
                ',' if flow > 0 => node_start = true,
                ':' if spaced || flow > 0 => node_start = true,
                '-' | '?' if node_start && spaced => {
                    if flow == 0 {
                        // A compact nested entry (`- - x`, `- key: v`) is one level deeper.
                        let after = &content[i + 1..];
                        let col =
                            indent + i + 1 + after.len() - after.trim_start_matches(' ').len();
                        if indents.last().is_some_and(|&c| c < col) {
                            indents.push(col);
                            if indents.len() > MAX_NESTING {
                                return Some(n + 1);
                            }
                        }
                    }
                    node_start = true;
                }
                '|' | '>' if node_start && flow == 0 => {
                    block_scalar = Some(indent);
                    break;
                }
                '&' | '!' if node_start => {
                    // An anchor or tag: the node starts after it.
                    while chars.peek().is_some_and(|&(_, c)| c != ' ' && c != '\t') {
                        chars.next();
                    }
                }
                _ => node_start = false,
            }
            after_space = false;
        }
        if indents.len() + flow > MAX_NESTING {
            return Some(n + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::test_support::{MINIMAL, none};

    #[test]
    fn size_is_checked_first() {
        assert!(check_shape(&"a".repeat(MAX_CONFIG_BYTES)).is_ok());
        let err = check_shape(&"a".repeat(MAX_CONFIG_BYTES + 1)).unwrap_err();
        assert!(err.starts_with("larger than 4 MiB"), "{err}");
    }

    #[test]
    fn flow_and_block_depth_add_up() {
        // 33 block levels (the last line's own) plus 31 open brackets is the limit; 32 is over.
        let mut text: String = (0..32)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let brackets = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        text.push_str(&format!("{}x: {}\n", " ".repeat(32), brackets(31)));
        assert!(nesting_exceeded(&text).is_none());
        text.push_str(&format!("{}y: {}\n", " ".repeat(32), brackets(32)));
        assert_eq!(nesting_exceeded(&text), Some(34));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        // 300 KB of flow nesting: the YAML parser's time grows with the cube of the depth.
        let depth = 150_000;
        let flow = format!("{MINIMAL}x: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        let started = std::time::Instant::now();
        let err = Config::from_yaml(&flow, none(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            err.contains("nested deeper than 64 levels at line 4"),
            "{err}"
        );
        assert!(err.len() < 200, "{err}");
        // Block nesting, one level per line.
        let mut block = String::from(MINIMAL);
        for i in 0..2_000 {
            block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        let err = Config::from_yaml(&block, none(), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nested deeper than 64 levels"), "{err}");
        // Compact sequences (`- - - x`) count too.
        let compact = format!("{MINIMAL}x:\n  {}1\n", "- ".repeat(100));
        let err = Config::from_yaml(&compact, none(), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nested deeper than 64 levels"), "{err}");
        // An override is bounded the same way, and named.
        let err = Config::from_yaml(
            MINIMAL,
            none(),
            &[format!("tables.include={}", "[".repeat(depth))],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`tables.include`") && err.contains("nested deeper"),
            "{err}"
        );
        // Brackets inside quotes, comments and block scalars, and ordinary depth, are fine.
        let fine = format!(
            "{MINIMAL}reconciliation:\n  tables:\n    - tables: [\"{q}\", '{q}']  # {q}\n      primary_key: [a]\nnotifications:\n  groups:\n    - {{ name: g, tables: [\"a.*\"], owners: [] }}\nlog: {{ level: \"info\" }}\n",
            q = "[".repeat(100)
        );
        assert!(nesting_exceeded(&fine).is_none());
        let literal = format!("x: |\n  {}\ny: 1\n", "[".repeat(100));
        assert!(nesting_exceeded(&literal).is_none());
        let nested: String = (0..60)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(nesting_exceeded(&nested).is_none());
    }
}
