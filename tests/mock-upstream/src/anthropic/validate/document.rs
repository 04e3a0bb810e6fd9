//! `document` blocks (PDF and plain-text documents) of user turns, checked as Anthropic
//! checks them.

use base64::Engine;
use serde_json::{Map, Value};

use super::{at, object, only, problem, required, string_field, Check};

/// A `document` block: a base64 PDF, plain text, or a URL, with optional title, context and
/// citations.
pub(super) fn check_document_block(block: &Map<String, Value>, path: &str) -> Check<()> {
    only(
        block,
        &[
            "type",
            "source",
            "title",
            "context",
            "citations",
            "cache_control",
        ],
        path,
    )?;
    let path = at(path, "source");
    let source = object(block.get("source").ok_or_else(|| required(&path))?, &path)?;
    match string_field(source, "type", &path)? {
        "base64" => {
            let path = at(&path, "base64");
            only(source, &["type", "media_type", "data"], &path)?;
            if string_field(source, "media_type", &path)? != "application/pdf" {
                return Err(problem(
                    &at(&path, "media_type"),
                    "Input should be 'application/pdf'",
                ));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(string_field(source, "data", &path)?)
                .map_err(|_| problem(&at(&path, "data"), "invalid base64 data"))?;
            if !bytes.starts_with(b"%PDF-") {
                return Err(problem(&path, "The PDF specified was not valid."));
            }
            Ok(())
        }
        "text" => {
            let path = at(&path, "text");
            only(source, &["type", "media_type", "data"], &path)?;
            if string_field(source, "media_type", &path)? != "text/plain" {
                return Err(problem(&at(&path, "media_type"), "Input should be 'text/plain'"));
            }
            string_field(source, "data", &path).map(|_| ())
        }
        "url" => {
            let path = at(&path, "url");
            only(source, &["type", "url"], &path)?;
            let url = string_field(source, "url", &path)?;
            if url.starts_with("https://") || url.starts_with("http://") {
                Ok(())
            } else {
                Err(problem(&at(&path, "url"), "Input should be a valid URL"))
            }
        }
        _ => Err(problem(
            &at(&path, "type"),
            "Input tag found using 'type' does not match any of the expected tags: 'base64', 'text', 'url'",
        )),
    }
}
