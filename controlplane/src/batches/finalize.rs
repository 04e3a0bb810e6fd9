//! Finalizing a batch whose lines are all finished: the output file (answered lines) and the
//! error file (failed lines) are written through the file service, streamed from the
//! database a page at a time, then set on the batch with its final status in one conditional
//! update. Resumable: a batch left `finalizing` (or `cancelling`) by a crash is finalized
//! again; of two finalizations only one sets its files, the other deletes its own.

use std::sync::Arc;

use actix_web::web::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::db::batches::{self as sql, Batch, FinishedLine};
use crate::db::{DbError, Pool};
use crate::files::service::{FileError, FileOwner, FileService};

/// Lines read per page while a file is written.
const PAGE: i64 = 500;

/// Why finalizing stopped (the next worker tick tries again).
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("file storage: {0}")]
    Files(#[from] FileError),
}

/// How a finalized batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalized {
    pub status: &'static str,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
}

/// The status a batch ends in: `cancelled` once cancelled, `expired` when its window passed,
/// else `completed` (a budget stop completes it, its unsent lines failed).
pub fn final_status(batch: &Batch) -> &'static str {
    if batch.cancelling_at.is_some() {
        "cancelled"
    } else if batch.stop_code.as_deref() == Some("batch_expired") {
        "expired"
    } else {
        "completed"
    }
}

#[derive(Serialize)]
struct Response<'a> {
    status_code: i32,
    request_id: Option<&'a str>,
    body: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct ErrorPart<'a> {
    code: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct OutputLine<'a> {
    id: String,
    custom_id: &'a str,
    response: Option<Response<'a>>,
    error: Option<ErrorPart<'a>>,
}

/// One line of the output or error file (with its `\n`): OpenAI's
/// `{"id":"batch_req_…","custom_id","response":{"status_code","request_id","body"},"error"}`.
/// A failed line carries the data plane's answer when there was one, else `response: null`.
pub fn render(batch_id: &str, line: &FinishedLine, failed: bool) -> Vec<u8> {
    let body = line
        .response
        .as_deref()
        .and_then(|bytes| serde_json::from_slice::<&RawValue>(bytes).ok());
    let response = line.status_code.map(|status_code| Response {
        status_code,
        request_id: line.request_id.as_deref(),
        body,
    });
    let error = failed.then(|| ErrorPart {
        code: line.error_code.as_deref().unwrap_or("request_failed"),
        message: line
            .error_message
            .as_deref()
            .unwrap_or("The request failed."),
    });
    let suffix = batch_id.strip_prefix("batch_").unwrap_or(batch_id);
    let out = OutputLine {
        id: format!("batch_req_{suffix}_{}", line.line),
        custom_id: &line.custom_id,
        response,
        error,
    };
    let mut bytes = serde_json::to_vec(&out).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The lines of `state` (`done` or `failed`) as a stream of JSONL pages.
fn pages(
    pool: Pool,
    batch_id: String,
    state: &'static str,
) -> BoxStream<'static, Result<Bytes, FileError>> {
    stream::unfold(Some(0i32), move |after| {
        let (pool, batch_id) = (pool.clone(), batch_id.clone());
        async move {
            let after = after?;
            let page = async {
                let mut conn = pool.get().await.map_err(DbError::from)?;
                sql::finished_page(&mut conn, &batch_id, state, after, PAGE).await
            }
            .await;
            match page {
                Err(e) => Some((Err(FileError::from(e)), None)),
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let last = rows.last().map_or(after, |r| r.line);
                    let mut bytes = Vec::new();
                    for row in &rows {
                        bytes.extend(render(&batch_id, row, state == "failed"));
                    }
                    Some((Ok(Bytes::from(bytes)), Some(last)))
                }
            }
        }
    })
    .boxed()
}

/// Writes the file of the lines in `state` for `batch` (purpose `batch_output`, owned by the
/// batch's tenant, key and user).
async fn write(
    pool: &Pool,
    files: &FileService,
    batch: &Batch,
    state: &'static str,
) -> Result<String, FileError> {
    let owner = FileOwner {
        tenant_id: batch.tenant_id,
        key_id: Some(batch.key_id),
        user_id: batch.user_id,
    };
    let name = if state == "done" {
        format!("{}_output.jsonl", batch.id)
    } else {
        format!("{}_error.jsonl", batch.id)
    };
    let body = pages(pool.clone(), batch.id.clone(), state);
    let expires_at = batch
        .output_expires_secs
        .map(|secs| chrono::Utc::now() + chrono::Duration::seconds(i64::from(secs)));
    let file = files
        .create(&owner, "batch_output", &name, expires_at, body)
        .await?;
    Ok(file.id)
}

/// Finalizes `batch_id` if all its lines are finished; `None` when lines are still open or
/// another finalization already ended it.
pub async fn finalize(
    pool: &Pool,
    files: &Arc<FileService>,
    batch_id: &str,
) -> Result<Option<Finalized>, FinalizeError> {
    let batch = {
        let mut conn = pool.get().await.map_err(DbError::from)?;
        match sql::begin_finalizing(&mut conn, batch_id).await? {
            Some(batch) => batch,
            None => return Ok(None),
        }
    };
    let status = final_status(&batch);
    let output = match batch.completed > 0 {
        true => Some(write(pool, files, &batch, "done").await?),
        false => None,
    };
    let errors = match batch.failed > 0 {
        true => match write(pool, files, &batch, "failed").await {
            Ok(id) => Some(id),
            Err(e) => {
                discard(files, &batch, output.as_deref()).await;
                return Err(e.into());
            }
        },
        false => None,
    };
    let won = {
        let mut conn = pool.get().await.map_err(DbError::from)?;
        sql::complete(
            &mut conn,
            batch_id,
            output.as_deref(),
            errors.as_deref(),
            status,
        )
        .await
    };
    match won {
        Ok(true) => Ok(Some(Finalized {
            status,
            output_file_id: output,
            error_file_id: errors,
        })),
        Ok(false) | Err(_) => {
            discard(files, &batch, output.as_deref()).await;
            discard(files, &batch, errors.as_deref()).await;
            won.map(|_| None).map_err(FinalizeError::from)
        }
    }
}

/// Deletes a file this finalization wrote but could not set.
async fn discard(files: &FileService, batch: &Batch, file_id: Option<&str>) {
    if let Some(id) = file_id {
        if let Err(e) = files.delete(batch.tenant_id, id).await {
            tracing::warn!(batch = %batch.id, file = id, error = %e, "batch worker: an unused output file could not be deleted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(
        status: Option<i32>,
        response: Option<&str>,
        error: Option<(&str, &str)>,
    ) -> FinishedLine {
        FinishedLine {
            line: 4,
            custom_id: "req-4".to_owned(),
            status_code: status,
            request_id: status.map(|_| "req_abc".to_owned()),
            response: response.map(|r| r.as_bytes().to_vec()),
            error_code: error.map(|e| e.0.to_owned()),
            error_message: error.map(|e| e.1.to_owned()),
        }
    }

    fn parse(bytes: Vec<u8>) -> serde_json::Value {
        assert_eq!(bytes.last(), Some(&b'\n'));
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn an_answered_line_embeds_the_body() {
        let out = parse(render(
            "batch_XYZ",
            &line(Some(200), Some(r#"{"id":"c1","usage":{}}"#), None),
            false,
        ));
        assert_eq!(
            out,
            serde_json::json!({
                "id": "batch_req_XYZ_4", "custom_id": "req-4",
                "response": {"status_code": 200, "request_id": "req_abc", "body": {"id": "c1", "usage": {}}},
                "error": null
            })
        );
    }

    #[test]
    fn failed_lines_carry_their_error_and_the_answer_when_there_was_one() {
        let refused = parse(render(
            "batch_XYZ",
            &line(
                Some(429),
                Some(r#"{"error":{"code":"budget_exceeded"}}"#),
                Some(("budget_exceeded", "spent")),
            ),
            true,
        ));
        assert_eq!(refused["response"]["status_code"], 429);
        assert_eq!(
            refused["error"],
            serde_json::json!({"code": "budget_exceeded", "message": "spent"})
        );
        let unsent = parse(render(
            "batch_XYZ",
            &line(None, None, Some(("batch_cancelled", "m"))),
            true,
        ));
        assert!(unsent["response"].is_null());
        assert_eq!(unsent["error"]["code"], "batch_cancelled");
        // A body that is not JSON is left out rather than breaking the line.
        let garbage = parse(render(
            "batch_XYZ",
            &line(Some(502), Some("<html>"), Some(("http_502", "m"))),
            true,
        ));
        assert!(garbage["response"]["body"].is_null());
    }

    #[test]
    fn the_final_status_follows_cancel_and_expiry() {
        let mut batch = crate::batches::object::tests::row("batch_1");
        assert_eq!(final_status(&batch), "completed");
        batch.stop_code = Some("budget_exceeded".into());
        assert_eq!(final_status(&batch), "completed");
        batch.stop_code = Some("batch_expired".into());
        assert_eq!(final_status(&batch), "expired");
        batch.cancelling_at = Some(batch.created_at);
        assert_eq!(final_status(&batch), "cancelled");
    }
}
