//! JSON Schemas (tool parameters, `response_format`) → the OpenAPI 3.0 subset Gemini's
//! `Schema` accepts.
//!
//! Gemini refuses unknown schema keys (`Unknown name "additionalProperties"`), so only the
//! keys it knows are kept; `$schema`, `additionalProperties`, `strict`, `$comment`, `examples`
//! and other annotations are dropped. `oneOf` becomes `anyOf`; a type list with `null`
//! becomes the type plus `nullable: true`. References (`$ref`, `$defs`, `definitions`) cannot
//! be expressed and are refused.

use serde_json::{Map, Value};

/// Schema keys Gemini accepts (their values are recursed into where they hold schemas).
const KEPT: [&str; 20] = [
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
];

/// Also kept: numeric bounds.
const BOUNDS: [&str; 2] = ["minimum", "maximum"];

/// The sanitized schema; `Err` names the unsupported keyword found.
pub(super) fn sanitize(schema: &Value) -> Result<Value, &'static str> {
    let Value::Object(map) = schema else {
        return Ok(schema.clone());
    };
    for keyword in ["$ref", "$defs", "definitions", "$dynamicRef"] {
        if map.contains_key(keyword) {
            return Err(keyword_name(keyword));
        }
    }
    let mut out = Map::new();
    for (key, value) in map {
        let key = key.as_str();
        match key {
            "properties" => {
                let Value::Object(properties) = value else {
                    continue;
                };
                let mut sanitized = Map::new();
                for (name, property) in properties {
                    sanitized.insert(name.clone(), sanitize(property)?);
                }
                out.insert(key.to_owned(), Value::Object(sanitized));
            }
            "items" => {
                out.insert(key.to_owned(), sanitize(value)?);
            }
            "anyOf" | "oneOf" => {
                let Value::Array(options) = value else {
                    continue;
                };
                let options = options.iter().map(sanitize).collect::<Result<_, _>>()?;
                out.insert("anyOf".to_owned(), Value::Array(options));
            }
            "type" => match value {
                Value::Array(types) => {
                    let non_null: Vec<&Value> = types
                        .iter()
                        .filter(|t| t.as_str() != Some("null"))
                        .collect();
                    if non_null.len() < types.len() {
                        out.insert("nullable".to_owned(), Value::Bool(true));
                    }
                    if let Some(first) = non_null.first() {
                        out.insert(key.to_owned(), (*first).clone());
                    }
                }
                other => {
                    out.insert(key.to_owned(), other.clone());
                }
            },
            "enum" => {
                // Gemini's enums are strings; a `null` member is `nullable` (set by the type).
                let Value::Array(members) = value else {
                    continue;
                };
                let members = members.iter().filter(|m| !m.is_null()).cloned().collect();
                out.insert(key.to_owned(), Value::Array(members));
            }
            _ if KEPT.contains(&key) || BOUNDS.contains(&key) => {
                out.insert(key.to_owned(), value.clone());
            }
            _ => {} // `$schema`, `additionalProperties`, `strict`, annotations…
        }
    }
    Ok(Value::Object(out))
}

fn keyword_name(keyword: &str) -> &'static str {
    match keyword {
        "$ref" => "$ref",
        "$defs" => "$defs",
        "definitions" => "definitions",
        _ => "$dynamicRef",
    }
}

/// Whether a (sanitized) schema is an object without properties, which Gemini refuses as
/// function parameters (`properties: should be non-empty for OBJECT type`).
pub(super) fn is_empty_object(schema: &Value) -> bool {
    let Value::Object(map) = schema else {
        return false;
    };
    let object = map
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(|t| t.eq_ignore_ascii_case("object"));
    let no_properties = map
        .get("properties")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    object && no_properties && !map.contains_key("anyOf")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_keys_are_dropped_and_references_refused() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "additionalProperties": {"type": ["string", "null"], "description": "a property named like a keyword"},
                "unit": {"oneOf": [{"const": "c", "type": "string"}, {"type": "string", "enum": ["f"]}]},
                "days": {"type": "array", "items": {"type": "integer", "minimum": 1, "exclusiveMaximum": 9}}
            },
            "required": ["unit"]
        });
        assert_eq!(
            sanitize(&schema).unwrap(),
            json!({
                "type": "object",
                "properties": {
                    "additionalProperties": {"type": "string", "nullable": true, "description": "a property named like a keyword"},
                    "unit": {"anyOf": [{"type": "string"}, {"type": "string", "enum": ["f"]}]},
                    "days": {"type": "array", "items": {"type": "integer", "minimum": 1}}
                },
                "required": ["unit"]
            })
        );
        let nested = json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}});
        assert_eq!(sanitize(&nested), Err("$ref"));
        assert!(is_empty_object(
            &json!({"type": "object", "properties": {}})
        ));
        assert!(is_empty_object(&json!({"type": "object"})));
        assert!(!is_empty_object(
            &json!({"type": "object", "properties": {"a": {}}})
        ));
    }
}
