//! Microsoft Entra ID's token endpoint, `POST /{tenant}/oauth2/v2.0/token`, for Azure OpenAI
//! deployments with `azure_auth: entra`: the client-credentials grant, checked like Entra
//! (form fields, `client_id` [`TEST_CLIENT_ID`], the client secret = the mock's key, the
//! Cognitive Services scope). Tokens it issues are accepted as `Authorization: Bearer` by the
//! Azure routes; they expire like the Google ones ([`crate::MockUpstream::set_token_lifetime`]).

use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::handler::Reply;
use crate::vertex::token::percent_decode;
use crate::Shared;

/// The path suffix of the token endpoint (after `/{tenant}`).
const TOKEN_SUFFIX: &str = "/oauth2/v2.0/token";
/// The app registration the mock knows.
pub const TEST_CLIENT_ID: &str = "omg-test-app";
/// The scope Azure OpenAI tokens are for.
const SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// Whether a path is the token endpoint of some tenant.
pub(crate) fn serves(path: &str) -> bool {
    path.strip_suffix(TOKEN_SUFFIX)
        .and_then(|tenant| tenant.strip_prefix('/'))
        .is_some_and(|tenant| !tenant.is_empty() && !tenant.contains('/'))
}

fn refuse(status: StatusCode, error: &str, code: u32, description: &str) -> Reply {
    Reply::json(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
        })
        .to_string(),
    )
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) fn token(shared: &Shared, parts: &Parts, body: &[u8]) -> Reply {
    if parts.method != Method::POST {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        );
    }
    let content_type = crate::handler::header(parts, "content-type").unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    let form = String::from_utf8_lossy(body);
    let field = |name: &str| {
        form.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| percent_decode(value))
    };
    if field("grant_type").as_deref() != Some("client_credentials") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if field("client_id").as_deref() != Some(TEST_CLIENT_ID) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            "Application was not found in the directory.",
        );
    }
    let secret_ok = match &shared.config.api_key {
        Some(key) => field("client_secret").as_deref() == Some(key.as_str()),
        None => field("client_secret").is_some_and(|s| !s.is_empty()),
    };
    if !secret_ok {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        );
    }
    if field("scope").as_deref() != Some(SCOPE) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid.",
        );
    }
    let (access_token, expires_in) = shared.entra_tokens.mint();
    Reply::ok(
        json!({"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": access_token})
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_paths() {
        assert!(serves("/contoso/oauth2/v2.0/token"));
        assert!(!serves("/oauth2/v2.0/token"));
        assert!(!serves("/a/b/oauth2/v2.0/token"));
        assert!(!serves("/contoso/oauth2/token"));
    }
}
