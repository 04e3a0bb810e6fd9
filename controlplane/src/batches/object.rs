//! OpenAI's batch object, built from a `batches` row (pure), and the list page.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::batches::Batch;

/// `errors` of a batch that failed validation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchErrors {
    /// Always `list`.
    pub object: &'static str,
    /// `{code, message, param, line}` per problem (at most 100).
    #[schema(value_type = Vec<Object>)]
    pub data: serde_json::Value,
}

/// `request_counts`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequestCounts {
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
}

/// `input_tokens_details`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InputTokensDetails {
    pub cached_tokens: i64,
}

/// `output_tokens_details`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: i64,
}

/// `usage`: the tokens of the lines answered so far.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchUsage {
    pub input_tokens: i64,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: i64,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: i64,
}

/// The batch object, field for field OpenAI's (times in Unix seconds, `null` when unset).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchObject {
    /// `batch_…`.
    pub id: String,
    /// Always `batch`.
    pub object: &'static str,
    pub endpoint: String,
    /// The model of the first line.
    pub model: Option<String>,
    pub errors: Option<BatchErrors>,
    pub input_file_id: String,
    pub completion_window: String,
    /// `validating`, `failed`, `in_progress`, `finalizing`, `completed`, `expired`,
    /// `cancelling`, `cancelled`.
    pub status: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: i64,
    pub in_progress_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub finalizing_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub expired_at: Option<i64>,
    pub cancelling_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub request_counts: RequestCounts,
    pub usage: BatchUsage,
    /// Up to 16 string pairs given at creation.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

fn secs(at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(|t| t.timestamp())
}

impl From<&Batch> for BatchObject {
    fn from(b: &Batch) -> Self {
        let errors = b.errors.as_ref().map(|data| BatchErrors {
            object: "list",
            data: data.clone(),
        });
        BatchObject {
            id: b.id.clone(),
            object: "batch",
            endpoint: b.endpoint.clone(),
            model: b.model.clone(),
            errors,
            input_file_id: b.input_file_id.clone(),
            completion_window: b.completion_window.clone(),
            status: b.status.clone(),
            output_file_id: b.output_file_id.clone(),
            error_file_id: b.error_file_id.clone(),
            created_at: b.created_at.timestamp(),
            in_progress_at: secs(b.in_progress_at),
            expires_at: Some(b.expires_at.timestamp()),
            finalizing_at: secs(b.finalizing_at),
            completed_at: secs(b.completed_at),
            failed_at: secs(b.failed_at),
            expired_at: secs(b.expired_at),
            cancelling_at: secs(b.cancelling_at),
            cancelled_at: secs(b.cancelled_at),
            request_counts: RequestCounts {
                total: i64::from(b.total),
                completed: i64::from(b.completed),
                failed: i64::from(b.failed),
            },
            usage: BatchUsage {
                input_tokens: b.input_tokens,
                input_tokens_details: InputTokensDetails {
                    cached_tokens: b.cached_tokens,
                },
                output_tokens: b.output_tokens,
                output_tokens_details: OutputTokensDetails {
                    reasoning_tokens: b.reasoning_tokens,
                },
                total_tokens: b.input_tokens.saturating_add(b.output_tokens),
            },
            metadata: b.metadata.clone(),
        }
    }
}

/// A page of batches: OpenAI's list shape.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<BatchObject>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

impl BatchList {
    /// The page from `limit + 1` rows read (the extra one only says there is more).
    pub fn from_rows(mut rows: Vec<Batch>, limit: usize) -> Self {
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let data: Vec<BatchObject> = rows.iter().map(BatchObject::from).collect();
        BatchList {
            object: "list",
            first_id: data.first().map(|b| b.id.clone()),
            last_id: data.last().map(|b| b.id.clone()),
            data,
            has_more,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;
    use uuid::Uuid;

    pub(crate) fn row(id: &str) -> Batch {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        Batch {
            id: id.to_owned(),
            tenant_id: Uuid::nil(),
            key_id: Uuid::nil(),
            user_id: None,
            endpoint: "/v1/chat/completions".to_owned(),
            input_file_id: "file-abc".to_owned(),
            completion_window: "24h".to_owned(),
            status: "in_progress".to_owned(),
            output_file_id: None,
            error_file_id: None,
            errors: None,
            metadata: Some(serde_json::json!({"project": "x"})),
            model: Some("mock-chat".to_owned()),
            total: 3,
            completed: 1,
            failed: 1,
            input_tokens: 10,
            cached_tokens: 2,
            output_tokens: 5,
            reasoning_tokens: 1,
            stop_code: None,
            stop_message: None,
            created_at: at,
            in_progress_at: Some(at),
            expires_at: at + chrono::Duration::hours(24),
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            output_expires_secs: None,
        }
    }

    #[test]
    fn the_object_has_every_openai_field_with_nulls() {
        let value = serde_json::to_value(BatchObject::from(&row("batch_1"))).unwrap();
        let object = value.as_object().unwrap();
        for key in [
            "id",
            "object",
            "endpoint",
            "model",
            "errors",
            "input_file_id",
            "completion_window",
            "status",
            "output_file_id",
            "error_file_id",
            "created_at",
            "in_progress_at",
            "expires_at",
            "finalizing_at",
            "completed_at",
            "failed_at",
            "expired_at",
            "cancelling_at",
            "cancelled_at",
            "request_counts",
            "usage",
            "metadata",
        ] {
            assert!(object.contains_key(key), "{key} missing");
        }
        assert_eq!(object.len(), 22);
        assert_eq!(value["object"], "batch");
        assert!(value["errors"].is_null() && value["completed_at"].is_null());
        assert_eq!(value["created_at"], 1_796_119_200);
        assert_eq!(value["expires_at"], 1_796_119_200 + 86_400);
        assert_eq!(
            value["request_counts"],
            serde_json::json!({"total": 3, "completed": 1, "failed": 1})
        );
        assert_eq!(
            value["usage"],
            serde_json::json!({
                "input_tokens": 10, "input_tokens_details": {"cached_tokens": 2},
                "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 1},
                "total_tokens": 15
            })
        );
    }

    #[test]
    fn validation_errors_are_a_list() {
        let mut failed = row("batch_2");
        failed.status = "failed".to_owned();
        failed.errors = Some(serde_json::json!([
            {"code": "invalid_json", "message": "m", "param": null, "line": 2}
        ]));
        let value = serde_json::to_value(BatchObject::from(&failed)).unwrap();
        assert_eq!(value["errors"]["object"], "list");
        assert_eq!(value["errors"]["data"][0]["line"], 2);
    }

    #[test]
    fn a_page_says_whether_more_follow() {
        let rows = vec![row("batch_3"), row("batch_2"), row("batch_1")];
        let page = BatchList::from_rows(rows.clone(), 2);
        assert!(page.has_more);
        assert_eq!(page.data.len(), 2);
        assert_eq!(page.first_id.as_deref(), Some("batch_3"));
        assert_eq!(page.last_id.as_deref(), Some("batch_2"));
        let all = BatchList::from_rows(rows, 3);
        assert!(!all.has_more);
        let empty = BatchList::from_rows(Vec::new(), 20);
        assert!(empty.first_id.is_none() && !empty.has_more);
    }
}
