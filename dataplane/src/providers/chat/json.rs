//! JSON objects that pass from the client's request into a provider's body untouched.

use serde::Serialize;
use serde_json::value::RawValue;

/// A JSON object: parsed tool-call arguments, a client's schema, or a stand-in.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum JsonObject<'a> {
    Raw(Box<RawValue>),
    Borrowed(&'a RawValue),
    Empty(EmptyObject),
    Schema(EmptySchema),
}

impl<'a> JsonObject<'a> {
    /// A tool's parameters schema, `{"type":"object","properties":{}}` when it has none.
    pub(crate) fn schema(parameters: Option<&'a RawValue>) -> Self {
        match parameters {
            Some(schema) => JsonObject::Borrowed(schema),
            None => JsonObject::Schema(EmptySchema::default()),
        }
    }
}

/// `{}`.
#[derive(Serialize)]
pub(crate) struct EmptyObject {}

/// `{"type":"object","properties":{}}`: the schema of a function without parameters.
#[derive(Serialize)]
pub(crate) struct EmptySchema {
    #[serde(rename = "type")]
    kind: &'static str,
    properties: EmptyObject,
}

impl Default for EmptySchema {
    fn default() -> Self {
        Self {
            kind: "object",
            properties: EmptyObject {},
        }
    }
}
