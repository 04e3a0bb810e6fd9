//! Input rules shared by the services; every failure names its field.

use crate::service::error::{Error, Result};

/// 1–64 characters, letters, digits, space, `-`, `_`, `.`; trimmed.
pub fn tenant_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(Error::invalid("name", "must be 1-64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
    {
        return Err(Error::invalid(
            "name",
            "may contain letters, digits, spaces, `-`, `_` and `.`",
        ));
    }
    Ok(name.to_owned())
}

/// A plausible email address, lowercased.
pub fn email(email: &str) -> Result<String> {
    let email = email.trim();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if !valid {
        return Err(Error::invalid("email", "must be an email address"));
    }
    Ok(email.to_lowercase())
}

/// At least 12 characters, at most 1024.
pub fn password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < 12 {
        return Err(Error::invalid("password", "must be at least 12 characters"));
    }
    if n > 1024 {
        return Err(Error::invalid(
            "password",
            "must be at most 1024 characters",
        ));
    }
    Ok(())
}

/// Model aliases: non-empty, ≤ 128 characters each, no duplicates.
pub fn aliases(field: &str, aliases: &[String]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, alias) in aliases.iter().enumerate() {
        if alias.trim().is_empty() || alias.len() > 128 {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                "must be 1-128 characters",
            ));
        }
        if !seen.insert(alias) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("`{alias}` is listed twice"),
            ));
        }
    }
    Ok(())
}

/// Display names: ≤ 128 characters.
pub fn display_name(field: &str, name: &str) -> Result<String> {
    let name = name.trim();
    if name.chars().count() > 128 {
        return Err(Error::invalid(field, "must be at most 128 characters"));
    }
    Ok(name.to_owned())
}

/// An `https://` or `http://` URL with a host (webhooks): at most 2048 characters, no
/// whitespace or embedded credentials. Returned trimmed.
pub fn webhook_url(field: &str, url: &str) -> Result<String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| Error::invalid(field, "must be an `https://` or `http://` URL"))?;
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            field,
            "must be at most 2048 characters without spaces",
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(Error::invalid(
            field,
            "must not embed credentials (`user:password@`)",
        ));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => match authority.rsplit_once(':') {
            Some((host, port)) => {
                if port.parse::<u16>().map_or(true, |p| p == 0) {
                    return Err(Error::invalid(field, "has an invalid port"));
                }
                host
            }
            None => authority,
        },
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(Error::invalid(field, "has no valid host"));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_emails_passwords() {
        assert_eq!(tenant_name("  Acme Corp ").unwrap(), "Acme Corp");
        assert_eq!(tenant_name("").unwrap_err().field(), Some("name"));
        assert!(tenant_name("a;drop").is_err());
        assert_eq!(email("Admin@Example.com").unwrap(), "admin@example.com");
        assert!(email("nope").is_err());
        assert!(email("a@b").is_err());
        assert!(password("short").is_err());
        assert!(password("long enough password").is_ok());
        assert!(aliases("m", &["a".into(), "a".into()]).is_err());
        assert!(webhook_url("w", "https://hooks.example.com/budget?t=1").is_ok());
        assert!(webhook_url("w", "http://127.0.0.1:9000/x").is_ok());
        assert!(webhook_url("w", "http://[::1]:9000").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "https://a b",
            "https://u:p@h",
            "https://h:0",
            "hooks",
        ] {
            assert_eq!(
                webhook_url("w", bad).unwrap_err().field(),
                Some("w"),
                "{bad}"
            );
        }
    }
}
