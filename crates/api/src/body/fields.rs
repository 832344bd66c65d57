//! Reading one JSON object of a request body field by field, so that every
//! field is accounted for: read as iovm's, accepted at Cloud Hypervisor's
//! default, refused when set to anything else, or refused as unknown.
//!
//! A body Cloud Hypervisor's own client sends carries every field of its
//! structs, most at their defaults; those pass. A field iovm has no
//! equivalent for passes only at its default (or `null`, or empty): set,
//! it is refused with a message that names it. Nothing is ignored.

use serde_json::{Map, Value};

/// Why a body was refused: the field's path and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct BodyError {
    /// Where, e.g. `disks[1].path`.
    pub field: String,
    /// What.
    pub problem: String,
}

impl BodyError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The fields of one object, each taken at most once.
#[derive(Debug)]
pub struct Fields<'a> {
    at: String,
    map: &'a Map<String, Value>,
    taken: Vec<&'static str>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Fields<'a> {
    /// The object `value` at path `at` (`""` for the body itself).
    pub fn new(value: &'a Value, at: &str) -> Result<Self, BodyError> {
        match value {
            Value::Object(map) => Ok(Self {
                at: at.to_string(),
                map,
                taken: Vec::new(),
            }),
            other => Err(BodyError::new(
                if at.is_empty() { "body" } else { at },
                format!("must be a JSON object, not {}", type_name(other)),
            )),
        }
    }

    /// The path of field `name`.
    pub fn path(&self, name: &str) -> String {
        if self.at.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.at)
        }
    }

    fn take(&mut self, name: &'static str) -> Option<&'a Value> {
        self.taken.push(name);
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn wrong(&self, name: &str, want: &str, got: &Value) -> BodyError {
        BodyError::new(
            self.path(name),
            format!("must be {want}, not {}", type_name(got)),
        )
    }

    /// An optional string.
    pub fn string(&mut self, name: &'static str) -> Result<Option<String>, BodyError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.wrong(name, "a string", v)),
        }
    }

    /// An optional boolean.
    pub fn bool(&mut self, name: &'static str) -> Result<Option<bool>, BodyError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(name, "a boolean", v)),
        }
    }

    /// An optional unsigned integer.
    pub fn uint(&mut self, name: &'static str) -> Result<Option<u64>, BodyError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(name, "an unsigned integer", v)),
        }
    }

    /// An optional object.
    pub fn object(&mut self, name: &'static str) -> Result<Option<&'a Value>, BodyError> {
        match self.take(name) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(v) => Err(self.wrong(name, "an object", v)),
        }
    }

    /// An optional array (absent and `null` read as empty).
    pub fn array(&mut self, name: &'static str) -> Result<&'a [Value], BodyError> {
        match self.take(name) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(v) => Err(self.wrong(name, "an array", v)),
        }
    }

    /// A field iovm has no equivalent for: accepted absent, `null`, empty
    /// (an empty array or object), or equal to `default` (Cloud
    /// Hypervisor's default); refused otherwise.
    pub fn unsupported(&mut self, name: &'static str, default: Value) -> Result<(), BodyError> {
        let Some(v) = self.take(name) else {
            return Ok(());
        };
        let empty = matches!(v, Value::Array(a) if a.is_empty())
            || matches!(v, Value::Object(o) if o.is_empty());
        if empty || *v == default {
            return Ok(());
        }
        let only = if default.is_null() {
            "leave it out or null".to_string()
        } else {
            format!("leave it out or give {default}")
        };
        Err(BodyError::new(
            self.path(name),
            format!("iovm does not support this field ({only})"),
        ))
    }

    /// Fails on the first field not taken: one iovm does not know.
    pub fn finish(self) -> Result<(), BodyError> {
        match self.map.keys().find(|k| !self.taken.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(BodyError::new(
                self.path(k),
                "is not a field of this object (see docs/api/openapi.yaml)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn test_unsupported_field_passes_at_default_null_or_empty() {
        let body = json!({"a": false, "b": null, "c": [], "d": 128});
        let mut f = Fields::new(&body, "disk").unwrap();
        assert!(f.unsupported("a", json!(false)).is_ok());
        assert!(f.unsupported("b", json!(true)).is_ok());
        assert!(f.unsupported("c", Value::Null).is_ok());
        assert!(f.unsupported("d", json!(128)).is_ok());
        assert!(f.unsupported("e", json!(1)).is_ok());
        assert!(f.finish().is_ok());
    }

    #[test]
    fn test_unsupported_field_set_is_refused_by_name() {
        let body = json!({"direct": true});
        let mut f = Fields::new(&body, "disks[0]").unwrap();
        let e = f.unsupported("direct", json!(false)).unwrap_err();
        assert_eq!(e.field, "disks[0].direct");
        assert!(e.problem.contains("does not support"), "{e}");
    }

    #[test]
    fn test_unknown_field_is_refused_by_name() {
        let body = json!({"path": "/x", "bogus": 1});
        let mut f = Fields::new(&body, "").unwrap();
        f.string("path").unwrap();
        assert_eq!(f.finish().unwrap_err().field, "bogus");
    }

    #[test]
    fn test_wrong_types_are_refused_with_the_type_wanted() {
        let body = json!({"s": 1, "b": "yes", "n": -1, "o": [], "a": {}});
        let mut f = Fields::new(&body, "x").unwrap();
        assert!(f.string("s").unwrap_err().problem.contains("a string"));
        assert!(f.bool("b").unwrap_err().problem.contains("a boolean"));
        assert!(f.uint("n").unwrap_err().problem.contains("unsigned"));
        assert!(f.object("o").unwrap_err().problem.contains("an object"));
        assert!(f.array("a").unwrap_err().problem.contains("an array"));
    }

    #[test]
    fn test_body_that_is_not_an_object_is_refused() {
        assert_eq!(Fields::new(&json!([1]), "").unwrap_err().field, "body");
    }
}
