//! Cross-checks the hand-written prost messages against the text of GAEN's `export.proto`:
//! every field's number, wire type, value type and name, the enums' numbers, the defaults,
//! and that reserved and unknown fields are skipped. A mismatch with the .proto fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use prost::Message;
use trustedge_gaen_export::proto;

#[derive(Debug)]
struct Field {
    label: String,
    ty: String,
    name: String,
    number: u32,
    default: Option<String>,
}

#[derive(Debug, Default)]
struct Schema {
    messages: BTreeMap<String, Vec<Field>>,
    reserved: BTreeMap<String, Vec<u32>>,
    enums: BTreeMap<String, Vec<(String, i32)>>,
}

/// A small parser for the subset of proto2 that export.proto uses.
fn parse_schema(text: &str) -> Schema {
    let mut schema = Schema::default();
    // (kind, name) of the enclosing blocks.
    let mut stack: Vec<(&str, String)> = Vec::new();
    for raw in text.lines() {
        let line = raw.split("//").next().unwrap().trim();
        if line.is_empty() || line.starts_with("syntax ") || line.starts_with("option ") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["message", name, "{"] => {
                schema.messages.entry(name.to_string()).or_default();
                stack.push(("message", name.to_string()));
            }
            ["enum", name, "{"] => stack.push(("enum", name.to_string())),
            ["}"] => {
                stack.pop().unwrap();
            }
            ["reserved", rest @ ..] => {
                let (_, msg) = stack.last().unwrap();
                let numbers = rest
                    .join(" ")
                    .trim_end_matches(';')
                    .split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect::<Vec<u32>>();
                schema
                    .reserved
                    .entry(msg.clone())
                    .or_default()
                    .extend(numbers);
            }
            [
                label @ ("optional" | "repeated" | "required"),
                ty,
                name,
                "=",
                number,
                rest @ ..,
            ] => {
                let (kind, msg) = stack.last().unwrap();
                assert_eq!(*kind, "message", "{line}");
                let number = number.trim_end_matches(';').parse().unwrap();
                let rest = rest.join(" ");
                let default = rest
                    .split("default = ")
                    .nth(1)
                    .map(|d| d.split(']').next().unwrap().trim().to_string());
                schema.messages.get_mut(msg).unwrap().push(Field {
                    label: label.to_string(),
                    ty: ty.to_string(),
                    name: name.to_string(),
                    number,
                    default,
                });
            }
            [value, "=", number] if stack.last().map(|s| s.0) == Some("enum") => {
                let (_, name) = stack.last().unwrap();
                let n = number.trim_end_matches(';').parse().unwrap();
                schema
                    .enums
                    .entry(name.clone())
                    .or_default()
                    .push((value.to_string(), n));
            }
            _ => panic!("export.proto line not understood by the test parser: {raw:?}"),
        }
    }
    assert!(stack.is_empty());
    schema
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(number: u32, wire_type: u8, out: &mut Vec<u8>) {
    varint(u64::from(number) << 3 | u64::from(wire_type), out);
}

/// prost's Rust name of a .proto message name (`TEK` → `Tek`).
fn rust_type_name(name: &str) -> String {
    name.replace("TEK", "Tek")
}

/// prost's Rust name of a .proto enum value (`CONFIRMED_TEST` → `ConfirmedTest`).
fn camel(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let lower = part.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars.next().map_or(String::new(), |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<String>()
}

/// Wire bytes of one field with a test value of the .proto type, and the value's expected
/// `Debug` form after decoding.
fn encode_field(schema: &Schema, f: &Field) -> (Vec<u8>, String) {
    let mut out = Vec::new();
    let shown = match f.ty.as_str() {
        "fixed64" => {
            key(f.number, 1, &mut out);
            out.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
            0x0102_0304_0506_0708u64.to_string()
        }
        "int32" => {
            key(f.number, 0, &mut out);
            varint(300, &mut out);
            "300".to_string()
        }
        "sint32" => {
            // ZigZag: -3 → 5. Read as plain int32 it would show 5, so this tells them apart.
            key(f.number, 0, &mut out);
            varint(5, &mut out);
            "-3".to_string()
        }
        "string" => {
            key(f.number, 2, &mut out);
            varint(3, &mut out);
            out.extend_from_slice(b"abc");
            "\"abc\"".to_string()
        }
        "bytes" => {
            key(f.number, 2, &mut out);
            varint(3, &mut out);
            out.extend_from_slice(&[1, 2, 3]);
            "[1, 2, 3]".to_string()
        }
        ty if schema.enums.contains_key(ty) => {
            let (value_name, n) = &schema.enums[ty][1];
            key(f.number, 0, &mut out);
            varint(*n as u64, &mut out);
            camel(value_name)
        }
        ty if schema.messages.contains_key(ty) => {
            key(f.number, 2, &mut out);
            varint(0, &mut out);
            format!("{} {{", rust_type_name(ty))
        }
        ty => panic!("type {ty} of field {} not handled by the test", f.name),
    };
    (out, shown)
}

/// The top-level field names in the `Debug` form of a default (all-empty) message.
fn rust_field_names<M: Message + Default + Debug>() -> BTreeSet<String> {
    let debug = format!("{:?}", M::default());
    let inner = debug.split_once(" { ").unwrap().1.trim_end_matches(" }");
    inner
        .split(", ")
        .map(|f| f.split_once(':').unwrap().0.to_string())
        .collect()
}

fn check_message<M: Message + Default + Debug + PartialEq>(schema: &Schema, proto_name: &str) {
    let fields = &schema.messages[proto_name];
    assert!(
        !fields.is_empty(),
        "{proto_name} has no fields in the .proto"
    );
    let proto_names: BTreeSet<String> = fields.iter().map(|f| f.name.clone()).collect();
    assert_eq!(
        rust_field_names::<M>(),
        proto_names,
        "fields of {proto_name}"
    );
    for f in fields {
        let (bytes, shown) = encode_field(schema, f);
        let decoded = M::decode(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{proto_name}.{}: wire type mismatch: {e}", f.name));
        // Same number and wire type: re-encoding gives the input back (an unknown number
        // would be skipped and re-encode to nothing).
        assert_eq!(
            decoded.encode_to_vec(),
            bytes,
            "{proto_name}.{} (= {})",
            f.name,
            f.number
        );
        let debug = format!("{decoded:?}");
        let expected = match f.label.as_str() {
            "repeated" => format!("{}: [{shown}", f.name),
            _ => format!("{}: Some({shown}", f.name),
        };
        assert!(
            debug.contains(&expected),
            "{proto_name}.{}: want {expected} in {debug}",
            f.name
        );
    }
    // Reserved numbers, and a number the .proto never uses, are skipped without error.
    let unused = fields.iter().map(|f| f.number).max().unwrap() + 7;
    for number in schema
        .reserved
        .get(proto_name)
        .into_iter()
        .flatten()
        .chain([&unused])
    {
        let mut bytes = Vec::new();
        key(*number, 2, &mut bytes);
        varint(4, &mut bytes);
        bytes.extend_from_slice(b"skip");
        let decoded = M::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            decoded,
            M::default(),
            "{proto_name}: field {number} must be skipped"
        );
    }
}

fn check_enum<E: TryFrom<i32> + Debug>(schema: &Schema, proto_name: &str) {
    let values = &schema.enums[proto_name];
    for (name, n) in values {
        let value = E::try_from(*n).unwrap_or_else(|_| panic!("{proto_name} lacks {n}"));
        assert_eq!(format!("{value:?}"), camel(name), "{proto_name} = {n}");
    }
    let next = values.iter().map(|v| v.1).max().unwrap() + 1;
    assert!(
        E::try_from(next).is_err(),
        "{proto_name} has a value {next} the .proto lacks"
    );
}

#[test]
fn messages_match_export_proto() {
    let schema = parse_schema(&crate::gaen_text("export.proto"));
    assert_eq!(
        schema.messages.keys().collect::<Vec<_>>(),
        [
            "SignatureInfo",
            "TEKSignature",
            "TEKSignatureList",
            "TemporaryExposureKey",
            "TemporaryExposureKeyExport"
        ]
    );
    check_message::<proto::TemporaryExposureKeyExport>(&schema, "TemporaryExposureKeyExport");
    check_message::<proto::SignatureInfo>(&schema, "SignatureInfo");
    check_message::<proto::TemporaryExposureKey>(&schema, "TemporaryExposureKey");
    check_message::<proto::TekSignatureList>(&schema, "TEKSignatureList");
    check_message::<proto::TekSignature>(&schema, "TEKSignature");
    check_enum::<proto::ReportType>(&schema, "ReportType");
    check_enum::<proto::VariantOfConcern>(&schema, "VariantOfConcern");
    assert_eq!(schema.reserved["SignatureInfo"], [1, 2]);
}

#[test]
fn defaults_match_export_proto() {
    let schema = parse_schema(&crate::gaen_text("export.proto"));
    let tek = &schema.messages["TemporaryExposureKey"];
    let default_of = |name: &str| {
        tek.iter()
            .find(|f| f.name == name)
            .and_then(|f| f.default.clone())
            .unwrap()
    };
    let empty = proto::TemporaryExposureKey::default();
    assert_eq!(empty.rolling_period, None);
    assert_eq!(
        empty.rolling_period().to_string(),
        default_of("rolling_period")
    );
    assert_eq!(
        format!("{:?}", empty.variant_of_concern()),
        camel(&default_of("variant_of_concern"))
    );
    // Fields without a declared default take proto2's zero.
    assert_eq!(empty.rolling_start_interval_number(), 0);
    assert_eq!(empty.report_type(), proto::ReportType::Unknown);
}
