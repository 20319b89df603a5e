//! Fuzz target `outbound_content`: arbitrary text as the `content` of an outbound row of
//! either kind, through the host's validation (`OutboundContent::parse`) and, for `system`
//! rows, `Action::from_content`. What parses must write back (`to_json`) into the same value,
//! except for floating-point arguments: serde_json (without its `float_roundtrip` feature)
//! may read a float back one unit in the last place off, which no action relies on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{OutboundContent, OutboundKind};
use serde_json::Value;

fn has_float(value: &Value) -> bool {
    match value {
        Value::Number(number) => number.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        Value::Null | Value::Bool(_) | Value::String(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for kind in [OutboundKind::Chat, OutboundKind::System] {
        crabpot_fuzz::outbound::validate_content(kind, text);
        let Ok(parsed) = OutboundContent::parse(kind, text) else {
            continue;
        };
        if let OutboundContent::System { args, .. } = &parsed
            && args.values().any(has_float)
        {
            continue;
        }
        let written = parsed.to_json();
        let again = OutboundContent::parse(kind, &written);
        assert_eq!(again.as_ref(), Ok(&parsed), "{written} does not read back");
    }
});
