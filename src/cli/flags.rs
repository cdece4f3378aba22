//! Value parsers shared by every subcommand, so one kind of value reads the same
//! everywhere: durations as Go and kubectl write them (`15m`, `10s`, `1h30m`, `500ms`),
//! listen addresses as Go servers take them (`:8443` means every interface).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Parses `15m`, `90s`, `1h30m`, `500ms`; a bare number is seconds. Zero is refused (a
/// timeout of zero is a mistake); see [`parse_duration_or_zero`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration (write it like 15m, 10s or 500ms)".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        if secs == 0 {
            return Err(format!("invalid duration {text:?}: must be above zero"));
        }
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number before a unit (write it like 15m, 10s or 500ms)"
            ));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            unit => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m or h)"
                ))
            }
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("invalid duration {text:?}: must be above zero"));
    }
    Ok(total)
}

/// [`parse_duration`], and zero as well (`0s`, `0ms`, `0`): for delays, where zero means
/// "at once".
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let all_zero = digits > 0 && trimmed[..digits].bytes().all(|b| b == b'0');
    if all_zero && ["", "ms", "s", "m", "h"].contains(&&trimmed[digits..]) {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

/// Parses a listen address: `host:port`, `[v6]:port`, or `:port` for every interface.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("invalid listen address {text:?}: {port:?} is not a port"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    text.parse().map_err(|_| {
        format!(
            "invalid listen address {text:?} (write it like :8443, 127.0.0.1:8443 or [::1]:8443)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        for bad in ["", "m", "15x", "0s", "0", "-1m", "1.5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("2s"), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn listen_addresses_take_the_go_short_form() {
        assert_eq!(parse_listen(":8443").unwrap().to_string(), "0.0.0.0:8443");
        assert_eq!(
            parse_listen("127.0.0.1:9090").unwrap().to_string(),
            "127.0.0.1:9090"
        );
        assert_eq!(
            parse_listen("[::1]:8443").unwrap().to_string(),
            "[::1]:8443"
        );
        for bad in ["8443", ":", ":x", "localhost", ":70000"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }
}

/// `--rollout-by`: who rolls encryption configs out to the API servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RolloutBy {
    /// eargate's reconciler: a removed key stays until a storage scan finds nothing sealed
    /// with it.
    #[default]
    Eargate,
    /// Another controller (Kubermatic's, in a gate-only install).
    Other,
}

impl From<RolloutBy> for eargate_policy::RolloutBy {
    fn from(r: RolloutBy) -> Self {
        match r {
            RolloutBy::Eargate => Self::Eargate,
            RolloutBy::Other => Self::Other,
        }
    }
}
