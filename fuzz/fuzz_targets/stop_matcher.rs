//! `StopMatcher` (edge/src/api/stop.rs) with arbitrary stop sequences and an
//! arbitrary cut of arbitrary text into deltas.
//!
//! Input: the stop sequences, separated by 0xFE, then 0xFF, then the deltas,
//! separated by 0xFD (bytes that never occur in UTF-8; each piece is
//! converted lossily).
//!
//! Checks, against a character-at-a-time reference: after every delta the
//! emitted text is a prefix of the input so far, and what is held back is
//! shorter than the longest stop sequence (the text emitted plus the text
//! held is the input); at a stop, the emitted text is exactly the input up
//! to the first stop sequence to complete (cut before the longest of those
//! that complete there); without a stop, emitted plus `finish()` is the
//! whole input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ouro_edge::api::StopMatcher;

/// The text up to the first position where it ends with a stop sequence,
/// cut before the longest that ends there; `None` if none ever does.
fn reference(text: &str, stops: &[String]) -> Option<String> {
    let ends = text.char_indices().map(|(i, c)| i + c.len_utf8());
    ends.into_iter().find_map(|end| {
        let seen = &text[..end];
        let longest = stops.iter().filter(|s| !s.is_empty() && seen.ends_with(s.as_str())).map(String::len).max()?;
        Some(seen[..end - longest].to_owned())
    })
}

fuzz_target!(|data: &[u8]| {
    let (stops, deltas) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let stops: Vec<String> = if stops.is_empty() {
        Vec::new()
    } else {
        stops.split(|&b| b == 0xFE).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
    };
    let deltas: Vec<String> = deltas.split(|&b| b == 0xFD).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
    let longest = stops.iter().map(String::len).max().unwrap_or(0);

    let mut matcher = StopMatcher::new(stops.clone());
    assert_eq!(matcher.is_empty(), stops.iter().all(String::is_empty));
    let mut input = String::new();
    let mut emitted = String::new();
    for delta in &deltas {
        input.push_str(delta);
        let step = matcher.push(delta);
        emitted.push_str(&step.emit);
        assert_eq!(step.stopped, matcher.stopped());
        if step.stopped {
            let expected = reference(&input, &stops).expect("a stop sequence occurs in the input");
            assert_eq!(emitted, expected, "text emitted before the stop");
            assert!(matcher.push("more").emit.is_empty(), "nothing after a stop");
            assert_eq!(matcher.finish(), "");
            return;
        }
        assert!(input.starts_with(&emitted), "emitted text is the input's prefix");
        let held = input.len() - emitted.len();
        assert!(held < longest.max(1), "{held} bytes held with stops of at most {longest}");
    }
    assert_eq!(reference(&input, &stops), None, "a stop sequence in the input was missed");
    emitted.push_str(&matcher.finish());
    assert_eq!(emitted, input, "without a stop, everything comes out");
});
