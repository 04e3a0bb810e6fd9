//! The OpenAI side of tool use: `tools` (function tools only) and `tool_choice`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::invalid;
use super::request::decode;
use crate::error::{truncate, ApiError};

/// `{"type": …, "function": {…}}`: a tool, or a named `tool_choice`.
#[derive(Deserialize)]
#[serde(bound(deserialize = "F: Deserialize<'de>"))]
struct Typed<'a, F> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    function: Option<F>,
}

#[derive(Deserialize)]
struct FunctionDef<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
}

/// One function tool of the client's `tools`.
pub(crate) struct FunctionTool<'a> {
    pub(crate) name: Cow<'a, str>,
    pub(crate) description: Option<Cow<'a, str>>,
    /// The JSON Schema of the parameters: always a JSON object.
    pub(crate) parameters: Option<&'a RawValue>,
}

/// The client's `tools`, each checked (a function tool with a `function` whose `parameters`,
/// when given, are an object) and then translated by `each` (given its position), in order.
/// Other tool types are refused naming `provider`.
pub(crate) fn tools<'a, T>(
    raw: Option<&'a RawValue>,
    provider: &str,
    mut each: impl FnMut(usize, FunctionTool<'a>) -> Result<T, ApiError>,
) -> Result<Vec<T>, ApiError> {
    let Some(defs) = decode::<Vec<Typed<'_, FunctionDef<'_>>>>(raw, "tools")? else {
        return Ok(Vec::new());
    };
    let mut tools = Vec::with_capacity(defs.len());
    for (i, def) in defs.into_iter().enumerate() {
        let function = match (def.kind.as_ref(), def.function) {
            ("function", Some(function)) => function,
            ("function", None) => {
                return Err(invalid(
                    "tools",
                    &format!("tools[{i}]: `function` is required"),
                ))
            }
            (kind, _) => {
                return Err(invalid(
                    "tools",
                    &format!(
                        "tools[{i}]: tools of type `{}` are not supported for this model \
                         ({provider})",
                        truncate(kind, 32)
                    ),
                ))
            }
        };
        if function
            .parameters
            .is_some_and(|schema| !schema.get().starts_with('{'))
        {
            return Err(invalid(
                "tools",
                &format!("tools[{i}].function.parameters must be a JSON Schema object"),
            ));
        }
        tools.push(each(
            i,
            FunctionTool {
                name: function.name,
                description: function.description,
                parameters: function.parameters,
            },
        )?);
    }
    Ok(tools)
}

/// The client's `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolChoice<'a> {
    Auto,
    Required,
    None,
    /// `{"type": "function", "function": {"name": …}}`.
    Function(Cow<'a, str>),
}

#[derive(Deserialize)]
struct NamedFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// `tool_choice` given `tools` or not: `None` when absent, and without tools (only `none`
/// is accepted then).
pub(crate) fn tool_choice(
    raw: Option<&RawValue>,
    has_tools: bool,
) -> Result<Option<ToolChoice<'_>>, ApiError> {
    match raw {
        None => Ok(None),
        Some(raw) if !has_tools => match serde_json::from_str::<Cow<'_, str>>(raw.get()) {
            Ok(mode) if mode == "none" => Ok(None),
            _ => Err(tools_required()),
        },
        Some(raw) => parse_tool_choice(raw).map(Some),
    }
}

/// Reads a `tool_choice` value.
pub(crate) fn parse_tool_choice(raw: &RawValue) -> Result<ToolChoice<'_>, ApiError> {
    if raw.get().starts_with('"') {
        return match decode::<Cow<'_, str>>(Some(raw), "tool_choice")?.as_deref() {
            Some("auto") => Ok(ToolChoice::Auto),
            Some("required") => Ok(ToolChoice::Required),
            Some("none") => Ok(ToolChoice::None),
            _ => Err(invalid(
                "tool_choice",
                "`tool_choice` must be `auto`, `required`, `none` or a named function",
            )),
        };
    }
    match decode::<Typed<'_, NamedFunction<'_>>>(Some(raw), "tool_choice")? {
        Some(Typed {
            kind,
            function: Some(function),
        }) if kind == "function" => Ok(ToolChoice::Function(function.name)),
        _ => Err(invalid(
            "tool_choice",
            "`tool_choice` objects must look like \
             {\"type\": \"function\", \"function\": {\"name\": …}}",
        )),
    }
}

/// A `tool_choice` other than `none` without `tools`.
pub(crate) fn tools_required() -> ApiError {
    invalid(
        "tool_choice",
        "`tool_choice` is only allowed when `tools` are specified",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(json: &str, has_tools: bool) -> Result<Option<ToolChoice<'_>>, &'static str> {
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        tool_choice(Some(raw), has_tools).map_err(|error| error.param.unwrap_or_default())
    }

    #[test]
    fn tool_choice_forms_and_tools_required() {
        assert_eq!(choice(r#""auto""#, true), Ok(Some(ToolChoice::Auto)));
        assert_eq!(
            choice(r#""required""#, true),
            Ok(Some(ToolChoice::Required))
        );
        assert_eq!(choice(r#""none""#, true), Ok(Some(ToolChoice::None)));
        assert_eq!(
            choice(r#"{"type":"function","function":{"name":"f"}}"#, true),
            Ok(Some(ToolChoice::Function(Cow::Borrowed("f"))))
        );
        assert_eq!(choice(r#""none""#, false), Ok(None));
        for bad in [r#""sometimes""#, r#"{"type":"function"}"#, "3"] {
            assert_eq!(choice(bad, true), Err("tool_choice"), "{bad}");
        }
        assert_eq!(
            tools_required().message,
            "`tool_choice` is only allowed when `tools` are specified"
        );
        assert_eq!(choice(r#""auto""#, false), Err("tool_choice"));
        assert_eq!(tool_choice(None, true).unwrap(), None);
    }
}
