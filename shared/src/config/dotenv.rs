//! `.env` files: `KEY=VALUE` lines feeding the same `ROUTER_*` overrides and `${NAME}`
//! references as the process environment (which wins; the caller merges).

use super::{ConfigError, ConfigErrors};

/// Parses `.env` text into `(name, value)` pairs in file order (a name listed twice appears
/// twice; the later one wins when collected into a map).
///
/// Accepted: blank lines; `#` comment lines; `KEY=VALUE` with an optional `export ` prefix and
/// spaces around `=`; `KEY` of ASCII letters, digits and `_`, not starting with a digit.
/// `VALUE` is either unquoted (trimmed; ` #` starts a comment), single-quoted (literal), or
/// double-quoted (escapes `\n`, `\r`, `\t`, `\"`, `\\`, `\$`); a quoted value may be followed
/// by a comment only. Values are not expanded. Every bad line is reported with its number.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, ConfigErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut pairs = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(pair)) => pairs.push(pair),
            Ok(None) => {}
            Err(message) => errors.push(ConfigError::new(
                "",
                format!("line {}: {message}", index + 1),
            )),
        }
    }
    if errors.is_empty() {
        Ok(pairs)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn parse_line(line: &str) -> Result<Option<(String, String)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = line
        .strip_prefix("export")
        .filter(|rest| rest.starts_with([' ', '\t']))
        .map_or(line, str::trim_start);
    let Some((name, value)) = line.split_once('=') else {
        return Err("expected `KEY=VALUE`".to_owned());
    };
    let name = name.trim_end();
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(format!(
            "`{name}` is not a variable name (letters, digits and `_`, not starting with a digit)"
        ));
    }
    let raw = value;
    let value = value.trim_start();
    let (value, rest) = if let Some(quoted) = value.strip_prefix('\'') {
        let end = quoted
            .find('\'')
            .ok_or_else(|| format!("unterminated `'` in the value of `{name}`"))?;
        (quoted[..end].to_owned(), &quoted[end + 1..])
    } else if let Some(quoted) = value.strip_prefix('"') {
        let (value, used) = double_quoted(quoted).ok_or_else(|| {
            format!(
                "unterminated `\"` in the value of `{name}` (values span one line; write `\\n` for a newline)"
            )
        })?;
        (value, &quoted[used..])
    } else {
        // ` #` (whitespace, then `#`) starts a comment; `a#b` is a value.
        let end = raw
            .char_indices()
            .find(|&(at, c)| c == '#' && raw[..at].ends_with([' ', '\t']))
            .map_or(raw.len(), |(at, _)| at);
        (raw[..end].trim().to_owned(), "")
    };
    let rest = rest.trim_start();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err(format!(
            "unexpected text after the quoted value of `{name}`"
        ));
    }
    Ok(Some((name.to_owned(), value)))
}

/// The value of a double-quoted string starting right after its `"`, and the number of bytes
/// used including the closing quote; `None` when it does not close.
fn double_quoted(text: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((out, at + 1)),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                other @ ('"' | '\\' | '$') => out.push(other),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            other => out.push(other),
        }
    }
    None
}
