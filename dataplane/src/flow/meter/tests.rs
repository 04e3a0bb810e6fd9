//! Tests of the metering decisions and of the closing state.

use super::*;

fn usage(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        ..Usage::default()
    }
}

fn body() -> RequestBody<'static> {
    let raw: &'static [u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    RequestBody::parse(raw, &Route::Chat).unwrap()
}

#[test]
fn implausible_usage_is_clamped_and_sums_do_not_wrap() {
    let clamped = sanitize(
        Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: u64::MAX,
            cached_tokens: 5,
            ..Default::default()
        },
        "r",
    );
    assert_eq!(clamped.prompt_tokens, MAX_REPORTED_TOKENS);
    assert_eq!(clamped.completion_tokens, MAX_REPORTED_TOKENS);
    assert_eq!(clamped.cached_tokens, 5);
    assert_eq!(
        clamped
            .prompt_tokens
            .saturating_add(clamped.completion_tokens),
        2 * MAX_REPORTED_TOKENS
    );
}

#[tokio::test]
async fn a_complete_stream_bills_the_report_and_a_cut_one_at_least_what_was_seen() {
    let body = body();
    let done = StreamSeen {
        done: true,
        reported: Some(usage(10, 3)),
        estimated_completion_tokens: 7,
    };
    assert_eq!(
        Meter::stream(done, &body, "gpt-4o").await,
        Meter::reported(usage(10, 3))
    );
    let cut = StreamSeen {
        done: false,
        ..done
    };
    let billed = Meter::stream(cut, &body, "gpt-4o").await;
    assert_eq!((billed.usage(), billed.estimated()), (usage(10, 7), true));
    let reported_more = StreamSeen {
        done: false,
        reported: Some(usage(10, 9)),
        estimated_completion_tokens: 7,
    };
    let billed = Meter::stream(reported_more, &body, "gpt-4o").await;
    assert_eq!((billed.usage(), billed.estimated()), (usage(10, 9), false));
}

#[tokio::test]
async fn without_a_report_the_prompt_is_counted_and_marked_estimated() {
    let body = body();
    let answer = Meter::answer(None, &body, "gpt-4o").await;
    assert!(answer.estimated());
    assert!(answer.usage().prompt_tokens > 0);
    assert_eq!(answer.usage().completion_tokens, 0);
    let seen = StreamSeen {
        estimated_completion_tokens: 4,
        ..StreamSeen::default()
    };
    let stream = Meter::stream(seen, &body, "gpt-4o").await;
    assert!(stream.estimated());
    assert_eq!(stream.usage().completion_tokens, 4);
    assert_eq!(
        Meter::answer(Some(usage(1, 2)), &body, "gpt-4o").await,
        Meter::reported(usage(1, 2))
    );
}

#[test]
fn closing_prices_the_clamped_usage_and_names_a_silent_end_499() {
    let metered = Metered {
        event_id: uuid::Uuid::nil(),
        request_id: "r".to_owned(),
        started_at: chrono::Utc::now(),
        tenant_id: Some(uuid::Uuid::nil()),
        key_id: None,
        user_id: None,
        alias: Some("a".to_owned()),
        target: None,
        route: Some(Route::Chat),
        status: 0,
        error_code: None,
        usage: Usage::default(),
        usage_estimated: false,
        cost: 0,
        latency: Duration::ZERO,
        ttft: None,
        stream: false,
        idempotent_replay: false,
        batch_id: None,
    }
    .closed(Meter::partial(usage(u64::MAX, 1)));
    assert_eq!(metered.status, 499);
    assert_eq!(metered.usage.prompt_tokens, MAX_REPORTED_TOKENS);
    assert!(metered.usage_estimated);
    assert_eq!(metered.cost, 0);
    assert!(metered.billable());
    assert_eq!(
        (metered.endpoint(), metered.provider_label()),
        ("chat.completions", "-")
    );
}
