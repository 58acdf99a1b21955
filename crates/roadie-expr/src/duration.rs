//! Durations as Argo writes them in `retryStrategy.backoff`, `suspend`, timeouts.

use std::time::Duration;

use crate::error::ExprError;

/// Parses `"30"` (plain seconds, Argo's default unit) or a Go duration such as `"30s"`,
/// `"2m"`, `"1h30m"`, `"500ms"`, `"1.5h"`, `"10us"`. Negative durations are rejected.
pub fn parse_duration(text: &str) -> Result<Duration, ExprError> {
    let err = |message: &str| ExprError::Duration {
        text: text.to_string(),
        message: message.to_string(),
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if s.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_nanos: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." {
            return Err(err("expected a number"));
        }
        let value: f64 = number.parse().map_err(|_| err("invalid number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(err("missing unit (use ns, us, ms, s, m or h)")),
            _ => {
                return Err(err(&format!(
                    "unknown unit '{unit}' (use ns, us, ms, s, m or h)"
                )));
            }
        };
        total_nanos += value * nanos_per;
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(err("too large"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_argo_durations() {
        let d = |s: &str| parse_duration(s).unwrap();
        assert_eq!(d("30"), Duration::from_secs(30));
        assert_eq!(d(" 5 "), Duration::from_secs(5));
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("30s"), Duration::from_secs(30));
        assert_eq!(d("2m"), Duration::from_secs(120));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("1.5h"), Duration::from_secs(5400));
        assert_eq!(d("10us"), Duration::from_micros(10));
        assert_eq!(d("10µs"), Duration::from_micros(10));
        assert_eq!(d("7ns"), Duration::from_nanos(7));
        assert_eq!(d("1m0.5s"), Duration::from_millis(60_500));
        assert_eq!(d("+3s"), Duration::from_secs(3));
    }

    #[test]
    fn errors_name_the_text() {
        let e = |s: &str| parse_duration(s).unwrap_err().to_string();
        assert_eq!(e(""), "invalid duration '': empty");
        assert_eq!(
            e("-5s"),
            "invalid duration '-5s': negative durations are not allowed"
        );
        assert_eq!(
            e("-5"),
            "invalid duration '-5': negative durations are not allowed"
        );
        assert_eq!(
            e("5d"),
            "invalid duration '5d': unknown unit 'd' (use ns, us, ms, s, m or h)"
        );
        assert_eq!(
            e("1.5"),
            "invalid duration '1.5': missing unit (use ns, us, ms, s, m or h)"
        );
        assert_eq!(e("s"), "invalid duration 's': expected a number");
        assert_eq!(e("1..2s"), "invalid duration '1..2s': invalid number");
        assert!(e("99999999999999999h").contains("too large"));
    }
}
