//! Small helpers every API module shares: bodies, timestamps, etags, list filters.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::error::invalid;
use crate::world::World;

/// The JSON body of a request; an empty body is `{}` (the clients send no body, or
/// `{}`, for calls whose request has nothing besides the path).
pub(crate) fn body(bytes: &Bytes) -> Result<Value, Response> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("Invalid JSON payload received. {e}")))
}

/// 200 with `v` as JSON.
pub(crate) fn ok(v: Value) -> Response {
    Json(v).into_response()
}

/// A string field of `v`, or "".
pub(crate) fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

/// Now as RFC 3339 in UTC with milliseconds (`2026-11-26T15:56:16.123Z`), which both
/// compute's string timestamps and `google.protobuf.Timestamp` accept.
pub(crate) fn now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Standard base64 with padding: the encoding of `bytes` fields in Google's JSON.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A fresh etag or fingerprint (8 bytes, base64), different on every call.
pub(crate) fn etag(w: &mut World) -> String {
    let n = w.next();
    let mut b = [0u8; 8];
    b[0] = 0x07;
    b[1] = 0x06;
    b[2..].copy_from_slice(&n.to_be_bytes()[2..]);
    base64(&b)
}

/// A fresh numeric id of `digits` digits (ids of compute objects, unique ids of
/// service accounts), as the decimal string Google sends for 64-bit numbers.
pub(crate) fn numeric_id(w: &mut World, digits: u32) -> String {
    let n = w.next();
    let base = 10u128.pow(digits - 1);
    // Spread the sequence over the range so ids do not look consecutive.
    let spread = (u128::from(n) * 7_919_317_741) % (9 * base);
    format!("{}", base + spread)
}

/// Keeps the items matching a compute-style list filter: `name = "x"`, `name eq x`,
/// `name != x`, optionally in parentheses. An empty filter keeps everything.
pub(crate) fn filter(items: Vec<Value>, filter: Option<&str>) -> Result<Vec<Value>, Response> {
    let f = filter.unwrap_or("").trim();
    if f.is_empty() {
        return Ok(items);
    }
    let f = f.trim_start_matches('(').trim_end_matches(')').trim();
    let (field, negate, value) = [
        (" != ", true),
        (" = ", false),
        (" eq ", false),
        (" ne ", true),
    ]
    .iter()
    .find_map(|(op, neg)| f.split_once(op).map(|(a, b)| (a.trim(), *neg, b.trim())))
    .ok_or_else(|| invalid(format!("Invalid list filter expression '{f}'.")))?;
    let value = value.trim_matches('"').trim_matches('\'');
    Ok(items
        .into_iter()
        .filter(|item| {
            let actual = match item.get(field) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            (actual == value) != negate
        })
        .collect())
}

/// One page of `items` from `page_token` (an offset, as the double hands them out)
/// with at most `max` items (0 = all); returns the page and the next token.
pub(crate) fn page(
    items: Vec<Value>,
    max: usize,
    page_token: &str,
) -> (Vec<Value>, Option<String>) {
    let start: usize = page_token.parse().unwrap_or(0);
    let rest: Vec<Value> = items.into_iter().skip(start).collect();
    if max == 0 || rest.len() <= max {
        return (rest, None);
    }
    let next = Some((start + max).to_string());
    (rest.into_iter().take(max).collect(), next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b"Hello, World!"), "SGVsbG8sIFdvcmxkIQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }

    #[test]
    fn now_is_rfc3339() {
        let t = now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
