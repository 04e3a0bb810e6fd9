//! A JSON value that borrows its strings from the body it was read from, so a Messages
//! request translates without copying its text: `serde_json::Value` owns every string, and a
//! 20 MiB message was held twice over (tree and translation) beside the body itself.
//!
//! Read with [`Json::parse`] (strings without escapes borrowed from the body), built with
//! [`Json::object`] and [`Json::Concat`] (strings joined only when written), written with
//! `serde_json`'s serializer, which escapes as it writes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JSON value whose strings are borrowed where they can be.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Members in the order read; a repeated key's last value is the one that counts, as
    /// `serde_json` reads it (see [`Json::get`]; written once, see [`Serialize`]).
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
    /// Output only: one string written as the concatenation of its pieces.
    Concat(Vec<Cow<'a, str>>),
}

impl<'a> Json<'a> {
    /// Reads `raw` (its strings borrowed unless they hold escapes).
    pub fn parse(raw: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(raw)
    }

    /// An object of `members`, in order.
    pub fn object<const N: usize>(members: [(&'static str, Json<'a>); N]) -> Self {
        Self::Object(
            members
                .into_iter()
                .map(|(key, value)| (Cow::Borrowed(key), value))
                .collect(),
        )
    }

    /// A string borrowed for as long as the value.
    pub fn str(text: &'a str) -> Self {
        Self::String(Cow::Borrowed(text))
    }

    /// Adds (or replaces) the member `key` of an object; no-op for other values.
    pub fn insert(&mut self, key: &'static str, value: Json<'a>) {
        if let Self::Object(members) = self {
            members.retain(|(k, _)| k != key);
            members.push((Cow::Borrowed(key), value));
        }
    }

    /// The value of member `key` (the last, if repeated).
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Self::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|m| &m.1),
            _ => None,
        }
    }

    /// The string, if this is one (read, not [`Json::Concat`]).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(text) => Some(text),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(value) => Some(*value),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Self::String(_))
    }

    /// The same value, its strings borrowed from this one (cheap: no text is copied).
    pub fn borrowed(&self) -> Json<'_> {
        match self {
            Self::Null => Json::Null,
            Self::Bool(value) => Json::Bool(*value),
            Self::Number(n) => Json::Number(n.clone()),
            Self::String(text) => Json::String(Cow::Borrowed(text)),
            Self::Array(items) => Json::Array(items.iter().map(Json::borrowed).collect()),
            Self::Object(members) => Json::Object(
                members
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_ref()), v.borrowed()))
                    .collect(),
            ),
            Self::Concat(pieces) => {
                Json::Concat(pieces.iter().map(|p| Cow::Borrowed(p.as_ref())).collect())
            }
        }
    }

    /// Written as JSON text.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(value))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(value.into()))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(value.into()))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Json<'de>, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Json::Null, Json::Number))
    }
    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(value)))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(value.to_owned())))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(value)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            members.push((key.0, map.next_value()?));
        }
        Ok(Json::Object(members))
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_str(JsonVisitor)? {
            Json::String(key) => Ok(Key(key)),
            _ => Err(de::Error::custom("a key must be a string")),
        }
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => serializer.serialize_unit(),
            Self::Bool(value) => serializer.serialize_bool(*value),
            Self::Number(n) => n.serialize(serializer),
            Self::String(text) => serializer.serialize_str(text),
            Self::Concat(pieces) => serializer.collect_str(&Pieces(pieces)),
            Self::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Self::Object(members) => {
                let kept = last_of_each_key(members);
                let mut map = serializer.serialize_map(Some(kept.len()))?;
                for (key, value) in kept {
                    map.serialize_entry(key.as_ref(), value)?;
                }
                map.end()
            }
        }
    }
}

/// The members to write: each key once, with its last value, where it first appeared (as a
/// `serde_json` map read from the same text would be written). Linear in the members.
fn last_of_each_key<'m, 'a>(
    members: &'m [(Cow<'a, str>, Json<'a>)],
) -> Vec<&'m (Cow<'a, str>, Json<'a>)> {
    if members.len() < 2 {
        return members.iter().collect();
    }
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(members.len());
    for (at, (key, _)) in members.iter().enumerate() {
        last.insert(key.as_ref(), at);
    }
    let mut written: HashMap<&str, ()> = HashMap::with_capacity(last.len());
    let mut kept = Vec::with_capacity(last.len());
    for (key, _) in members {
        if written.insert(key.as_ref(), ()).is_none() {
            kept.push(&members[last[key.as_ref()]]);
        }
    }
    kept
}

/// Pieces written as one string.
struct Pieces<'p, 'a>(&'p [Cow<'a, str>]);

impl fmt::Display for Pieces<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|piece| f.write_str(piece))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_and_writes_like_serde_json() {
        let raw = br#"{"a":[1,-2,3.5,true,null,"x\"y"],"b":{"c":"d"},"a":"again","e":"plain"}"#;
        let json = Json::parse(raw).unwrap();
        assert!(matches!(
            json.get("e"),
            Some(Json::String(Cow::Borrowed("plain")))
        ));
        assert_eq!(json.get("a").and_then(Json::as_str), Some("again"));
        let ours: serde_json::Value = serde_json::from_str(&json.to_json_string()).unwrap();
        let theirs: serde_json::Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn pieces_are_written_as_one_escaped_string() {
        let out = Json::object([(
            "t",
            Json::Concat(vec![Cow::Borrowed("a\"b"), Cow::Borrowed("\n"), "c".into()]),
        )]);
        assert_eq!(out.to_json_string(), r#"{"t":"a\"b\nc"}"#);
    }
}
