//! The upstream request's head, written once for both HTTP versions.

use pingora::http::RequestHeader;

use super::USER_AGENT;

/// What the upstream request carries besides its body: the glue's own headers, then the
/// adapter's (the credential among them).
pub(super) struct RequestHead<'a> {
    /// Path and query below the host.
    pub path: &'a str,
    pub host: &'a str,
    pub accept: &'static str,
    pub request_id: &'a str,
    pub content_length: usize,
    /// The adapter's headers.
    pub provider: &'a [(&'static str, String)],
}

impl RequestHead<'_> {
    /// Calls `each(name, value)` for every header, in order.
    fn for_each_header(&self, mut each: impl FnMut(&'static str, &str)) {
        let length = self.content_length.to_string();
        each("host", self.host);
        each("content-type", "application/json");
        each("content-length", &length);
        each("accept", self.accept);
        each("accept-encoding", "identity");
        each("user-agent", USER_AGENT);
        each("x-request-id", self.request_id);
        for (name, value) in self.provider {
            each(name, value);
        }
    }

    /// The HTTP/1.1 request line and headers, or `None` when a configured value (path, host,
    /// key) holds a byte that would break the framing.
    pub fn h1_bytes(&self) -> Option<Vec<u8>> {
        let value_ok = |text: &str| text.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if self.path.is_empty() || !self.path.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let mut out = Vec::with_capacity(384);
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut valid = true;
        self.for_each_header(|name, value| {
            valid &= value_ok(value);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        });
        out.extend_from_slice(b"\r\n");
        valid.then_some(out)
    }

    /// The same request as a Pingora header (HTTP/2 upstreams).
    pub fn request_header(&self) -> pingora::Result<RequestHeader> {
        let mut request = RequestHeader::build("POST", self.path.as_bytes(), Some(8))?;
        let mut result = Ok(());
        self.for_each_header(|name, value| {
            if result.is_ok() {
                result = request.insert_header(name, value).map(|_| ());
            }
        });
        result.map(|()| request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(path: &'a str, provider: &'a [(&'static str, String)]) -> RequestHead<'a> {
        RequestHead {
            path,
            host: "api.example.com",
            accept: "application/json",
            request_id: "req-1",
            content_length: 12,
            provider,
        }
    }

    #[test]
    fn provider_headers_follow_the_glue_headers() {
        let provider = [("x-api-key", "secret".to_owned())];
        let bytes = head("/v1/messages?beta=true", &provider)
            .h1_bytes()
            .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("POST /v1/messages?beta=true HTTP/1.1\r\nhost: api.example.com\r\n")
        );
        assert!(text.ends_with("x-request-id: req-1\r\nx-api-key: secret\r\n\r\n"));
        assert!(text.contains("content-length: 12\r\n"));
    }

    #[test]
    fn values_that_would_break_the_framing_are_refused() {
        let provider = [("x-api-key", "sec\r\nret".to_owned())];
        assert!(head("/v1/messages", &provider).h1_bytes().is_none());
        assert!(head("/v1/a b", &[]).h1_bytes().is_none());
        assert!(head("", &[]).h1_bytes().is_none());
    }
}
