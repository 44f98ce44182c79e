//! The emulated-link spec parser (`impl FromStr for LinkProfile` in
//! bench/src/netem/profile.rs) on arbitrary text.
//!
//! Checks: parsing returns an error rather than panicking; a parsed profile
//! is in range, and its `Display` form parses back to the same link (to the
//! printed precision).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ouro_bench::netem::LinkProfile;

fn close(a: f64, b: f64, abs: f64) -> bool {
    (a - b).abs() <= abs + 1e-9 * a.abs().max(b.abs())
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = std::str::from_utf8(data) else { return };
    let Ok(profile) = spec.parse::<LinkProfile>() else { return };
    assert!((0.0..=1.0).contains(&profile.loss), "loss {}", profile.loss);
    assert!(profile.bandwidth_bps != Some(0));
    let printed = profile.to_string();
    let back: LinkProfile = printed.parse().unwrap_or_else(|e| panic!("`{printed}` does not parse back: {e}"));
    assert_eq!(back.seed, profile.seed, "{printed}");
    assert_eq!(back.bandwidth_bps, profile.bandwidth_bps, "{printed}");
    assert!(close(back.delay.as_secs_f64(), profile.delay.as_secs_f64(), 1e-9), "{printed}: {back:?} vs {profile:?}");
    assert!(close(back.jitter.as_secs_f64(), profile.jitter.as_secs_f64(), 1e-9), "{printed}: {back:?} vs {profile:?}");
    assert!(close(back.loss, profile.loss, 5e-7), "{printed}: {back:?} vs {profile:?}");
});
