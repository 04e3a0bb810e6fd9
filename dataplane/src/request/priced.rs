//! Provider features billed beyond tokens, which the catalog cannot price: refused for keys
//! and tenants under a budget, since a reservation could not bound them.
//!
//! - OpenAI: `service_tier` other than `auto`, `default` or `flex` (`priority` and `scale` cost
//!   more than the catalog's prices), `web_search_options` (search calls are billed per call).
//! - Anthropic Messages: server tools (any tool whose `type` is not `custom`: web search, web
//!   fetch, code execution, …), `mcp_servers` and `container`, and `anthropic-beta` values
//!   other than the few that change no price.
//!
//! Requests with no budget in their plan are not checked: rate limits count tokens only.

use omg_shared::error::ErrorCode;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::RequestBody;
use crate::error::ApiError;

/// `anthropic-beta` values accepted under a budget (by prefix): they change no price.
const FREE_BETAS: [&str; 10] = [
    "tools-",
    "claude-code-",
    "computer-use-",
    "context-management-",
    "token-counting-",
    "prompt-caching-",
    "token-efficient-tools-",
    "interleaved-thinking-",
    "fine-grained-tool-streaming-",
    "output-128k-",
];

/// The first priced feature of a request under a budget, as its 400. `anthropic` is the
/// client's Messages body (when it spoke Anthropic) and `beta` its `anthropic-beta` header.
pub fn refuse_under_budget(
    body: &RequestBody<'_>,
    anthropic: Option<&[u8]>,
    beta: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(raw) = body.raw("service_tier") {
        let tier = serde_json::from_str::<Option<String>>(raw.get()).unwrap_or(None);
        if !matches!(tier.as_deref(), None | Some("auto" | "default" | "flex")) {
            return Err(refusal(
                "service_tier",
                "`service_tier` other than `auto`, `default` or `flex`",
            ));
        }
    }
    if body
        .raw("web_search_options")
        .is_some_and(|raw| raw.get() != "null")
    {
        return Err(refusal("web_search_options", "`web_search_options`"));
    }
    if let Some(raw) = anthropic {
        anthropic_features(raw)?;
    }
    if let Some(beta) = beta {
        let priced = beta
            .split(',')
            .map(str::trim)
            .find(|value| !value.is_empty() && !FREE_BETAS.iter().any(|p| value.starts_with(p)));
        if let Some(value) = priced {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "The `anthropic-beta` feature `{}` may be billed beyond tokens, which this gateway cannot reserve against a budget; keys and tenants with a budget cannot use it.",
                    crate::error::truncate(value, 64)
                ),
            ));
        }
    }
    Ok(())
}

/// Anthropic server tools, `mcp_servers` and `container`.
fn anthropic_features(raw: &[u8]) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    struct Tool {
        #[serde(rename = "type", default)]
        kind: Option<String>,
    }
    #[derive(Deserialize)]
    struct Features {
        #[serde(default)]
        tools: Option<Vec<Tool>>,
        #[serde(default)]
        mcp_servers: Option<IgnoredAny>,
        #[serde(default)]
        container: Option<IgnoredAny>,
    }
    let Ok(features) = serde_json::from_slice::<Features>(raw) else {
        return Ok(()); // the translation already judged the body
    };
    let server_tool = features
        .tools
        .unwrap_or_default()
        .into_iter()
        .any(|tool| tool.kind.is_some_and(|kind| kind != "custom"));
    if server_tool {
        return Err(refusal(
            "tools",
            "Server tools (web search, code execution, …)",
        ));
    }
    if features.mcp_servers.is_some() {
        return Err(refusal("mcp_servers", "`mcp_servers`"));
    }
    if features.container.is_some() {
        return Err(refusal("container", "`container`"));
    }
    Ok(())
}

fn refusal(param: &'static str, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidParameter,
        format!(
            "{what} may be billed beyond tokens, which this gateway cannot reserve against a budget; keys and tenants with a budget cannot use it. Remove it, or ask an admin for a key without a budget."
        ),
    )
    .with_param(param)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Route;

    fn check(
        extra: &str,
        anthropic: Option<&str>,
        beta: Option<&str>,
    ) -> Option<Option<&'static str>> {
        let text =
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}]{extra}}}"#);
        let body = RequestBody::parse(text.as_bytes(), &Route::Chat)
            .unwrap_or_else(|e| unreachable!("{e:?}"));
        refuse_under_budget(&body, anthropic.map(str::as_bytes), beta)
            .err()
            .map(|e| e.param)
    }

    #[test]
    fn priced_features_are_refused_under_a_budget() {
        assert_eq!(check("", None, None), None);
        assert_eq!(check(r#","service_tier":"auto""#, None, None), None);
        assert_eq!(check(r#","service_tier":"flex""#, None, None), None);
        assert_eq!(
            check(r#","service_tier":"priority""#, None, None),
            Some(Some("service_tier"))
        );
        assert_eq!(
            check(r#","web_search_options":{}"#, None, None),
            Some(Some("web_search_options"))
        );
        assert_eq!(check(r#","web_search_options":null"#, None, None), None);
        let search = r#"{"tools":[{"name":"f","input_schema":{}},{"type":"web_search_20250305","name":"web_search"}]}"#;
        assert_eq!(check("", Some(search), None), Some(Some("tools")));
        let custom = r#"{"tools":[{"type":"custom","name":"f","input_schema":{}}]}"#;
        assert_eq!(check("", Some(custom), None), None);
        assert_eq!(
            check("", Some(r#"{"mcp_servers":[]}"#), None),
            Some(Some("mcp_servers"))
        );
        assert_eq!(
            check(
                "",
                None,
                Some("prompt-caching-2024-07-31, token-efficient-tools-2025-02-19")
            ),
            None
        );
        // What Claude Code sends changes no price.
        assert_eq!(
            check(
                "",
                None,
                Some("claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14")
            ),
            None
        );
        assert_eq!(
            check(
                "",
                None,
                Some("prompt-caching-2024-07-31,context-1m-2025-08-07")
            ),
            Some(None)
        );
    }
}
