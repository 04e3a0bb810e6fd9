//! Provider base URLs (`https://api.openai.com/v1`), parsed once at config load.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A parsed `http(s)://host[:port][/path]` base URL. No query, fragment or credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// TLS (`https`).
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (default 443 / 80).
    pub port: u16,
    /// Path prefix without trailing slash, e.g. `/v1` (may be empty).
    pub path: String,
}

impl Endpoint {
    /// Parses a base URL, explaining what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("`{text}` must start with `https://` or `http://`"));
        };
        if rest.contains(['?', '#']) {
            return Err(format!("`{text}` must not have a query or fragment"));
        }
        let (authority, path) = match rest.find('/') {
            Some(index) => (&rest[..index], &rest[index..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!(
                "`{text}` must not embed credentials; use `api_key`"
            ));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let end = bracketed
                .find(']')
                .ok_or_else(|| format!("`{text}`: unterminated IPv6 literal"))?;
            let host = &bracketed[..end];
            let after = &bracketed[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(port) => parse_port(port, text)?,
                None if after.is_empty() => default_port,
                None => return Err(format!("`{text}`: unexpected `{after}` after the host")),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), parse_port(port, text)?),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
        {
            return Err(format!("`{text}` has an invalid host"));
        }
        Ok(Self {
            tls,
            host,
            port,
            path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The `Host` header value (port omitted when default).
    pub fn host_header(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}

fn parse_port(port: &str, text: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("`{text}` has an invalid port `{port}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let openai =
            Endpoint::parse("https://api.openai.com/v1").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (
                openai.tls,
                openai.host.as_str(),
                openai.port,
                openai.path.as_str()
            ),
            (true, "api.openai.com", 443, "/v1")
        );
        assert_eq!(openai.host_header(), "api.openai.com");
        let local =
            Endpoint::parse("http://127.0.0.1:8000/v1/").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (local.port, local.path.as_str(), local.host_header()),
            (8000, "/v1", "127.0.0.1:8000".to_owned())
        );
        let v6 = Endpoint::parse("http://[::1]:9000").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (v6.host.as_str(), v6.port, v6.host_header()),
            ("::1", 9000, "[::1]:9000".to_owned())
        );
        assert_eq!(v6.to_string(), "http://[::1]:9000");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "ftp://x",
            "api.openai.com",
            "https://",
            "https://a:0",
            "https://a:99999",
            "https://u:p@h/v1",
            "https://h/v1?x=1",
            "https://h h",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
