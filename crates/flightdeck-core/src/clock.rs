//! Time as the timeline records it: integer milliseconds since the Unix epoch, shown as
//! RFC 3339 UTC with millisecond precision (`2026-11-23T19:41:00.123Z`). One fixed layout,
//! so the hash of an event never depends on how a library chose to print a time.

use time::{macros::format_description, OffsetDateTime};

/// Formats `unix_millis` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_millis(unix_millis: i64) -> String {
    let nanos = i128::from(unix_millis) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => t
            .format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .unwrap_or_else(|_| unix_millis.to_string()),
        Err(_) => unix_millis.to_string(),
    }
}

/// Parses an RFC 3339 time back to milliseconds.
pub fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `HH:MM:SS` of a time, for one-line human views.
pub fn format_clock(unix_millis: i64) -> String {
    let nanos = i128::from(unix_millis) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(format_description!("[hour]:[minute]:[second]"))
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_millisecond_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_795_462_860_123, "2026-11-23T19:41:00.123Z"),
            (951_782_400_007, "2000-02-29T00:00:00.007Z"),
        ];
        for (millis, text) in cases {
            assert_eq!(format_rfc3339_millis(millis), text);
            assert_eq!(parse_rfc3339_millis(text), Some(millis));
        }
        assert_eq!(format_clock(1_795_462_860_123), "19:41:00");
    }
}
