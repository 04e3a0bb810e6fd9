//! Azure OpenAI with `azure_auth: entra`: the data plane gets tokens from Entra ID itself
//! (the mock's `POST /{tenant}/oauth2/v2.0/token`, the client-credentials grant) in the
//! background, sends them as `Authorization: Bearer`, renews them before they expire, and
//! never sends or logs the client secret.

use std::time::{Duration, Instant};

use omg_mock_upstream::entra::TEST_CLIENT_ID;
use omg_mock_upstream::MockUpstream;
use serde_json::Value;

use crate::harness::*;

fn entra(alias: &str, upstream: &MockUpstream, client_id: &str) -> Entry {
    Entry::new(alias, &upstream.origin(), "gpt-4o")
        .provider("azure")
        .with("deployment", "\"prod-4o\"")
        .with("api_version", "\"2024-10-21\"")
        .with(
            "metadata",
            &format!(
                "{{azure_auth: entra, azure_tenant_id: contoso, azure_client_id: \"{client_id}\", azure_authority_host: \"{}\"}}",
                upstream.origin()
            ),
        )
}

#[tokio::test]
async fn requests_carry_entra_tokens_that_are_renewed_and_never_the_secret() {
    let upstream = upstream().await;
    // Short-lived tokens: the refresher renews at half-life.
    upstream.set_token_lifetime(Duration::from_secs(4));
    let gateway = Gateway::start(&custom_config(
        &[entra("az-entra", &upstream, TEST_CLIENT_ID)],
        "",
        "",
    ))
    .await;
    let response = first_answer(&gateway, &chat("az-entra", false)).await;
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");

    let grant = upstream
        .requests_to("/contoso/oauth2/v2.0/token")
        .pop()
        .expect("the token endpoint saw the grant");
    let form = String::from_utf8_lossy(&grant.body).into_owned();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(
        form.contains(&format!("client_id={TEST_CLIENT_ID}")),
        "{form}"
    );
    let call = upstream
        .requests_to("/openai/deployments/prod-4o/chat/completions")
        .pop()
        .unwrap();
    let bearer = call.header("authorization").unwrap().to_owned();
    assert!(
        bearer.starts_with("Bearer ") && !bearer.contains(UPSTREAM_KEY),
        "{bearer}"
    );
    assert_eq!(call.header("api-key"), None);

    // The token is renewed before it expires: a later request carries a newer one.
    let deadline = Instant::now() + Duration::from_secs(20);
    while upstream.requests_to("/contoso/oauth2/v2.0/token").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no renewal; log:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The renewal was requested; its token is in use once the gateway has read the answer.
    loop {
        let response = gateway
            .post("/v1/chat/completions")
            .json(&chat("az-entra", false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
        let renewed = upstream
            .requests_to("/openai/deployments/prod-4o/chat/completions")
            .pop()
            .unwrap();
        if renewed.header("authorization").unwrap() != bearer {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed token is never used; log:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !gateway.log().contains(UPSTREAM_KEY),
        "the secret reached the log"
    );
}

#[tokio::test]
async fn a_refused_grant_is_logged_and_requests_fail_as_the_deployments() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&custom_config(
        &[entra("az-unknown-app", &upstream, "not-registered")],
        "",
        "",
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gateway.log().contains("AADSTS700016") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged; log:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("az-unknown-app", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "upstream_error");
    assert!(upstream
        .requests_to("/openai/deployments/prod-4o/chat/completions")
        .is_empty());
    assert!(!gateway.log().contains(UPSTREAM_KEY));
}
