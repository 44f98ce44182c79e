//! What an emulated link looks like, by name or by explicit spec.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::NetemError;

/// The seed used when a spec does not give one, so unseeded runs still
/// repeat exactly.
pub const DEFAULT_SEED: u64 = 0;

/// One emulated link, applied independently to each direction.
///
/// All delays are **one-way, per direction**: a round trip through the link
/// costs about `2 × delay` (plus jitter and serialization time). The named
/// profiles follow that convention:
///
/// | name               | one-way delay | jitter  | bandwidth   | loss |
/// |--------------------|---------------|---------|-------------|------|
/// | `none`             | 0             | 0       | unlimited   | 0    |
/// | `lan`              | 1 ms          | 0       | unlimited   | 0    |
/// | `wifi`             | 10 ms         | ± 3 ms  | unlimited   | 0    |
/// | `4g`               | 40 ms         | ± 10 ms | 20 Mbit/s   | 0.5% |
/// | `intercontinental` | 150 ms        | 0       | unlimited   | 0    |
///
/// Loss only applies to UDP: a TCP proxy sits above the kernel's
/// retransmission, so dropping bytes there would corrupt the stream rather
/// than emulate loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinkProfile {
    /// One-way propagation delay.
    #[serde(rename = "delay_ms", serialize_with = "millis")]
    pub delay: Duration,
    /// Half-width of the uniform jitter added to `delay` (one-way).
    #[serde(rename = "jitter_ms", serialize_with = "millis")]
    pub jitter: Duration,
    /// Bits per second, per direction; `None` is unlimited.
    pub bandwidth_bps: Option<u64>,
    /// Probability in `[0, 1]` that a datagram is dropped (UDP only).
    pub loss: f64,
    pub seed: u64,
}

const NAMES: [&str; 5] = ["none", "lan", "wifi", "4g", "intercontinental"];

impl LinkProfile {
    /// A link that adds nothing.
    pub const fn none() -> Self {
        Self { delay: Duration::ZERO, jitter: Duration::ZERO, bandwidth_bps: None, loss: 0.0, seed: DEFAULT_SEED }
    }

    /// The names [`LinkProfile::by_name`] knows.
    pub fn names() -> &'static [&'static str] {
        &NAMES
    }

    /// A named profile (case-insensitive); see the type docs for values.
    pub fn by_name(name: &str) -> Result<Self, NetemError> {
        let ms = Duration::from_millis;
        let base = Self::none();
        match name.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(base),
            "lan" => Ok(Self { delay: ms(1), ..base }),
            "wifi" => Ok(Self { delay: ms(10), jitter: ms(3), ..base }),
            "4g" => Ok(Self { delay: ms(40), jitter: ms(10), bandwidth_bps: Some(20_000_000), loss: 0.005, ..base }),
            "intercontinental" => Ok(Self { delay: ms(150), ..base }),
            _ => Err(NetemError::UnknownProfile { name: name.to_string(), known: NAMES.join(", ") }),
        }
    }

    /// Sets the one-way delay to half of `rtt_ms`; negative or non-finite
    /// values mean no delay.
    pub fn with_rtt_ms(mut self, rtt_ms: f64) -> Self {
        let one_way_s = if rtt_ms.is_finite() { (rtt_ms / 2e3).max(0.0) } else { 0.0 };
        self.delay = Duration::from_secs_f64(one_way_s);
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The nominal round-trip time, jitter and serialization aside.
    pub fn rtt(&self) -> Duration {
        self.delay * 2
    }

    fn is_none(&self) -> bool {
        self.delay.is_zero() && self.jitter.is_zero() && self.bandwidth_bps.is_none() && self.loss == 0.0
    }
}

impl Default for LinkProfile {
    fn default() -> Self {
        Self::none()
    }
}

/// Accepts a profile name (`4g`), an explicit spec
/// (`delay=20ms,jitter=5ms,bw=20mbit,loss=0.5%,seed=7`), or a name followed
/// by overrides (`4g,loss=0,seed=3`). `rtt=40ms` is shorthand for
/// `delay=20ms`. Later keys override earlier ones.
impl FromStr for LinkProfile {
    type Err = NetemError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| NetemError::InvalidSpec { spec: spec.to_string(), reason };
        let mut profile = Self::none();
        let tokens: Vec<&str> = spec.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
        if tokens.is_empty() {
            return Err(invalid("empty spec".into()));
        }
        for (i, token) in tokens.iter().enumerate() {
            let Some((key, value)) = token.split_once('=') else {
                if i > 0 {
                    return Err(invalid(format!("`{token}` is not key=value; a profile name may only come first")));
                }
                profile = Self::by_name(token)?;
                continue;
            };
            let value = value.trim().to_ascii_lowercase();
            match key.trim().to_ascii_lowercase().as_str() {
                "delay" => profile.delay = parse_duration(&value).map_err(invalid)?,
                "rtt" => profile.delay = parse_duration(&value).map_err(invalid)? / 2,
                "jitter" => profile.jitter = parse_duration(&value).map_err(invalid)?,
                "bw" | "bandwidth" | "rate" => profile.bandwidth_bps = parse_bandwidth(&value).map_err(invalid)?,
                "loss" => profile.loss = parse_loss(&value).map_err(invalid)?,
                "seed" => profile.seed = value.parse().map_err(|_| invalid(format!("seed `{value}` is not a u64")))?,
                other => {
                    return Err(invalid(format!("unknown key `{other}` (known: delay, rtt, jitter, bw, loss, seed)")))
                }
            }
        }
        Ok(profile)
    }
}

/// Prints the spec form (`delay=20ms,jitter=5ms,bw=20Mbit,loss=0.5%`),
/// leaving out what is zero, so the output parses back to the same link.
impl fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() && self.seed == DEFAULT_SEED {
            return f.write_str("none");
        }
        let mut parts = vec![format!("delay={}", fmt_duration(self.delay))];
        if !self.jitter.is_zero() {
            parts.push(format!("jitter={}", fmt_duration(self.jitter)));
        }
        if let Some(bps) = self.bandwidth_bps {
            parts.push(format!("bw={}", fmt_bandwidth(bps)));
        }
        if self.loss > 0.0 {
            parts.push(format!("loss={}%", trim_decimal(self.loss * 100.0, 4)));
        }
        if self.seed != DEFAULT_SEED {
            parts.push(format!("seed={}", self.seed));
        }
        f.write_str(&parts.join(","))
    }
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// Splits `12.5ms` into `(12.5, "ms")`.
fn split_number(value: &str) -> Result<(f64, &str), String> {
    let end = value.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(value.len());
    let (number, unit) = value.split_at(end);
    let n: f64 = number.parse().map_err(|_| format!("`{value}` does not start with a number"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("`{value}` is not a non-negative number"));
    }
    Ok((n, unit.trim()))
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    let (n, unit) = split_number(value)?;
    let seconds = match unit {
        "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        // A bare zero is unambiguous; any other bare number is not.
        "" if n == 0.0 => 0.0,
        _ => return Err(format!("duration `{value}` needs a unit: s, ms, us or ns")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("duration `{value}`: {e}"))
}

fn parse_bandwidth(value: &str) -> Result<Option<u64>, String> {
    if matches!(value, "none" | "off" | "unlimited") {
        return Ok(None);
    }
    let (n, unit) = split_number(value)?;
    let scale = match unit {
        "" | "bit" | "bps" => 1.0,
        "kbit" | "kbps" => 1e3,
        "mbit" | "mbps" => 1e6,
        "gbit" | "gbps" => 1e9,
        _ => return Err(format!("bandwidth `{value}`: unit must be bit, kbit, mbit or gbit (per second)")),
    };
    let bps = (n * scale).round();
    if bps < 1.0 || bps > u64::MAX as f64 {
        return Err(format!("bandwidth `{value}` must be at least 1 bit/s (use `bw=none` for unlimited)"));
    }
    Ok(Some(bps as u64))
}

fn parse_loss(value: &str) -> Result<f64, String> {
    let loss = match value.strip_suffix('%') {
        Some(percent) => split_number(percent.trim())?.0 / 100.0,
        None => {
            let (n, unit) = split_number(value)?;
            if !unit.is_empty() {
                return Err(format!("loss `{value}` must be a fraction or a percentage"));
            }
            n
        }
    };
    if loss > 1.0 {
        return Err(format!("loss `{value}` is above 100%"));
    }
    Ok(loss)
}

fn fmt_duration(d: Duration) -> String {
    format!("{}ms", trim_decimal(d.as_secs_f64() * 1e3, 6))
}

fn fmt_bandwidth(bps: u64) -> String {
    match bps {
        b if b % 1_000_000_000 == 0 => format!("{}Gbit", b / 1_000_000_000),
        b if b % 1_000_000 == 0 => format!("{}Mbit", b / 1_000_000),
        b if b % 1_000 == 0 => format!("{}kbit", b / 1_000),
        b => format!("{b}bit"),
    }
}

/// `0.5000000001` → `0.5`: products like `0.005 * 100.0` are not exact.
fn trim_decimal(x: f64, places: usize) -> String {
    let s = format!("{x:.places$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn named_profiles_have_the_documented_one_way_values() {
        let g = LinkProfile::by_name("4g").unwrap();
        assert_eq!((g.delay, g.jitter, g.bandwidth_bps, g.loss), (MS(40), MS(10), Some(20_000_000), 0.005));
        assert_eq!(g.rtt(), MS(80));
        assert_eq!(LinkProfile::by_name("LAN").unwrap().delay, MS(1));
        assert_eq!(LinkProfile::by_name("wifi").unwrap().jitter, MS(3));
        assert_eq!(LinkProfile::by_name("intercontinental").unwrap().delay, MS(150));
        assert_eq!(LinkProfile::by_name("none").unwrap(), LinkProfile::default());
        for name in LinkProfile::names() {
            assert!(LinkProfile::by_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let err = LinkProfile::by_name("5g").unwrap_err().to_string();
        assert!(err.contains("5g") && err.contains("intercontinental") && err.contains("wifi"), "{err}");
        assert!("5g".parse::<LinkProfile>().is_err());
    }

    #[test]
    fn parses_explicit_specs() {
        let p: LinkProfile = "delay=20ms, jitter=5ms,bw=20mbit,loss=0.5%".parse().unwrap();
        assert_eq!((p.delay, p.jitter, p.bandwidth_bps), (MS(20), MS(5), Some(20_000_000)));
        assert!((p.loss - 0.005).abs() < 1e-12);
        assert_eq!("rtt=40ms".parse::<LinkProfile>().unwrap().delay, MS(20));
        assert_eq!("delay=1.5s".parse::<LinkProfile>().unwrap().delay, Duration::from_millis(1500));
        assert_eq!("delay=250us".parse::<LinkProfile>().unwrap().delay, Duration::from_micros(250));
        assert_eq!("bw=512kbps".parse::<LinkProfile>().unwrap().bandwidth_bps, Some(512_000));
        assert_eq!("loss=0.25,seed=9".parse::<LinkProfile>().unwrap().loss, 0.25);
        let o: LinkProfile = "4g,loss=0,bw=none,seed=3".parse().unwrap();
        assert_eq!((o.delay, o.loss, o.bandwidth_bps, o.seed), (MS(40), 0.0, None, 3));
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in
            ["", "delay=20", "delay=-1ms", "loss=150%", "loss=2", "bw=0", "bw=3furlongs", "speed=1", "delay=1ms,lan"]
        {
            let err = bad.parse::<LinkProfile>();
            assert!(matches!(err, Err(NetemError::InvalidSpec { .. })), "{bad}: {err:?}");
        }
        assert!("delay=0".parse::<LinkProfile>().is_ok());
    }

    #[test]
    fn rtt_helper_halves() {
        let p = LinkProfile::none().with_rtt_ms(50.0);
        assert_eq!(p.delay, MS(25));
        assert_eq!(LinkProfile::none().with_rtt_ms(-3.0).delay, Duration::ZERO);
        assert_eq!(LinkProfile::none().with_rtt_ms(f64::NAN).delay, Duration::ZERO);
    }

    #[test]
    fn display_is_compact_and_parses_back() {
        assert_eq!(LinkProfile::none().to_string(), "none");
        let g = LinkProfile::by_name("4g").unwrap();
        assert_eq!(g.to_string(), "delay=40ms,jitter=10ms,bw=20Mbit,loss=0.5%");
        for p in [g, LinkProfile::by_name("lan").unwrap(), "delay=0.25ms,bw=1500bit,seed=4".parse().unwrap()] {
            let back: LinkProfile = p.to_string().parse().unwrap();
            assert_eq!(
                (back.delay, back.jitter, back.bandwidth_bps, back.seed),
                (p.delay, p.jitter, p.bandwidth_bps, p.seed)
            );
            assert!((back.loss - p.loss).abs() < 1e-12);
        }
    }

    #[test]
    fn serializes_delays_as_milliseconds() {
        let json = serde_json::to_value(LinkProfile::by_name("wifi").unwrap()).unwrap();
        assert_eq!(json["delay_ms"], 10.0);
        assert_eq!(json["jitter_ms"], 3.0);
        assert_eq!(json["bandwidth_bps"], serde_json::Value::Null);
        assert_eq!(json["seed"], 0);
    }
}
