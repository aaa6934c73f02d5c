//! The OTLP/JSON encoding of an `ExportTraceServiceRequest` (what `POST {endpoint}/v1/traces`
//! takes with `Content-Type: application/json`): `resourceSpans` → `scopeSpans` → `spans`,
//! ids as lowercase hex, times as decimal strings of nanoseconds, enums as integers, typed
//! attribute values. Pure.

use serde_json::{json, Map, Value};

use super::spans::{AttrValue, Link, Span, SpanKind, SpanStatus};

/// The request body for `spans`, as the service `service_version` of flightdeck.
pub fn encode(spans: &[Span], service_version: &str) -> Vec<u8> {
    let body = json!({
        "resourceSpans": [{
            "resource": {
                "attributes": [
                    attribute("service.name", &AttrValue::Str("flightdeck".into())),
                    attribute("service.version", &AttrValue::Str(service_version.into())),
                ],
            },
            "scopeSpans": [{
                "scope": {"name": "flightdeck", "version": service_version},
                "spans": spans.iter().map(span).collect::<Vec<Value>>(),
            }],
        }],
    });
    body.to_string().into_bytes()
}

fn span(span: &Span) -> Value {
    let mut out = Map::new();
    out.insert("traceId".into(), hex::encode(span.trace_id).into());
    out.insert("spanId".into(), hex::encode(span.span_id).into());
    if let Some(parent) = span.parent {
        out.insert("parentSpanId".into(), hex::encode(parent).into());
    }
    out.insert("name".into(), span.name.clone().into());
    out.insert(
        "kind".into(),
        match span.kind {
            SpanKind::Internal => 1,
            SpanKind::Client => 3,
        }
        .into(),
    );
    out.insert("startTimeUnixNano".into(), nanos(span.start_ms).into());
    out.insert("endTimeUnixNano".into(), nanos(span.end_ms).into());
    out.insert(
        "attributes".into(),
        span.attributes
            .iter()
            .map(|(k, v)| attribute(k, v))
            .collect::<Vec<_>>()
            .into(),
    );
    if !span.links.is_empty() {
        out.insert(
            "links".into(),
            span.links.iter().map(link).collect::<Vec<_>>().into(),
        );
    }
    out.insert(
        "status".into(),
        match &span.status {
            SpanStatus::Unset(None) => json!({"code": 0}),
            SpanStatus::Unset(Some(message)) => json!({"code": 0, "message": message}),
            SpanStatus::Ok => json!({"code": 1}),
            SpanStatus::Error(message) => json!({"code": 2, "message": message}),
        },
    );
    Value::Object(out)
}

fn link(link: &Link) -> Value {
    json!({
        "traceId": hex::encode(link.trace_id),
        "spanId": hex::encode(link.span_id),
        "attributes": link.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
    })
}

/// Milliseconds since the epoch → nanoseconds, as OTLP/JSON writes a `fixed64`: a string.
fn nanos(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    (u128::from(ms) * 1_000_000).to_string()
}

fn attribute(key: &str, value: &AttrValue) -> Value {
    json!({"key": key, "value": any_value(value)})
}

fn any_value(value: &AttrValue) -> Value {
    match value {
        AttrValue::Str(s) => json!({"stringValue": s}),
        // int64 is a string in proto3's JSON mapping.
        AttrValue::Int(i) => json!({"intValue": i.to_string()}),
        AttrValue::Double(d) if d.is_finite() => json!({"doubleValue": d}),
        AttrValue::Double(d) => json!({"stringValue": d.to_string()}),
        AttrValue::Bool(b) => json!({"boolValue": b}),
        AttrValue::Ints(values) => json!({"arrayValue": {
            "values": values.iter().map(|i| json!({"intValue": i.to_string()})).collect::<Vec<_>>(),
        }}),
    }
}
