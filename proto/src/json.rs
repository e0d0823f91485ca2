//! Protobuf's JSON-like values (`google.protobuf.Value`, `Struct`, `ListValue`: parsed rows,
//! template variables) to and from `serde_json`.

use prost_types::{ListValue, Struct, Value, value::Kind};
use serde_json::Value as J;

pub fn to_value(j: &J) -> Value {
    let kind = match j {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(to_value).collect(),
        }),
        J::Object(o) => Kind::StructValue(Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

pub fn from_value(v: &Value) -> J {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::BoolValue(b)) => J::Bool(*b),
        // Whole numbers stay integers, so that `10` reads and renders as 10, not 10.0.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9e15 => J::from(*n as i64),
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n).map_or(J::Null, J::Number),
        Some(Kind::StringValue(s)) => J::String(s.clone()),
        Some(Kind::ListValue(l)) => from_list(l),
        Some(Kind::StructValue(s)) => J::Object(from_struct(s)),
    }
}

pub fn from_list(l: &ListValue) -> J {
    J::Array(l.values.iter().map(from_value).collect())
}

pub fn from_struct(s: &Struct) -> serde_json::Map<String, J> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), from_value(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_survive_the_round_trip_and_whole_numbers_stay_integers() {
        let j = serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {"c": "d"}});
        assert_eq!(super::from_value(&super::to_value(&j)), j);
    }
}
