//! Webhook URLs as recorded, logged and shown by the admin API and the alert worker: their
//! secrets (userinfo, path, query, fragment) never leave the database.

use reqwest::Url;

/// A webhook URL as recorded, logged and shown: scheme, host and port only, then `/…#` and
/// eight hex digits of the full URL's SHA-256 (so two hooks on one host stay distinct).
/// Userinfo, path, query and fragment are dropped: Slack-style hooks carry their secret in
/// the path.
pub fn redact_url(text: &str) -> String {
    match Url::parse(text.trim()) {
        Ok(url) => {
            let host = url.host_str().unwrap_or_default();
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            let digest = crate::crypto::sha256(text.trim());
            let tag: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
            format!("{}://{host}{port}/…#{tag}", url.scheme())
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// Whether `text` is a URL as [`redact_url`] shows it (sent back by a client that read it).
pub fn is_redacted(text: &str) -> bool {
    text.contains("/…#")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn urls_lose_their_secrets() {
        let slack = redact_url("https://u:p@hooks.example.com/services/T0/B0/secret?token=abc#x");
        assert!(slack.starts_with("https://hooks.example.com/…#"), "{slack}");
        for secret in ["u:p", "services", "secret", "token", "abc"] {
            assert!(!slack.contains(secret), "{slack}");
        }
        assert!(is_redacted(&slack));
        assert_ne!(
            redact_url("https://hooks.example.com/a"),
            redact_url("https://hooks.example.com/b"),
            "two hooks on one host stay distinct"
        );
        assert!(redact_url("http://[::1]:8080/").starts_with("http://[::1]:8080/…#"));
        assert_eq!(redact_url("not a url ?token=abc"), "(unparsable URL)");
    }
}
