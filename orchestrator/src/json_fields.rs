//! The keys of one JSON object in the order they came, duplicates kept, so that a strict
//! parser can refuse a repeated key (serde's maps keep the last one silently) and a pass-through
//! can keep the bytes it must not re-serialise. Used by layer 1 (the LLM's reply, values parsed)
//! and by the Hyperliquid client (the signer's body, values kept as raw text).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

/// One object's `(key, value)` pairs, in order, duplicates kept.
pub(crate) struct Fields<V>(pub(crate) Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Fields<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for FieldsVisitor<V> {
            type Value = Fields<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<V>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(FieldsVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use serde_json::value::RawValue;

    use super::Fields;

    #[test]
    fn keys_keep_their_order_and_their_duplicates() {
        let f: Fields<Value> = serde_json::from_str(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        let keys: Vec<&str> = f.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
        let raw: Fields<Box<RawValue>> =
            serde_json::from_str(r#"{"action":{"z":1,"a":2}}"#).unwrap();
        assert_eq!(raw.0[0].1.get(), r#"{"z":1,"a":2}"#, "raw text unchanged");
        assert!(serde_json::from_str::<Fields<Value>>("[1]").is_err());
    }
}
