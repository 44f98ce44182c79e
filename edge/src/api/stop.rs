//! Stop sequences, matched on text as it streams.
//!
//! The engine's deltas are cut wherever its tokens end, so a stop sequence
//! can straddle several deltas. The matcher holds back only the tail of the
//! text that could still be the beginning of a stop sequence, and emits the
//! rest at once, so streaming is delayed by at most a few characters.
//!
//! The generation stops at the first character position where the text
//! ends with a stop sequence, exactly as if the text had been checked one
//! character at a time: the result does not depend on how the text was cut
//! into deltas. When several stop sequences end at that position (each is
//! then a suffix of the longest), the text is cut before the longest.

/// What to do with one delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Text that can be sent to the client now.
    pub emit: String,
    /// A stop sequence matched: `emit` is the last text, cut before it.
    pub stopped: bool,
}

#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet emitted: a proper prefix of some stop sequence.
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop sequences are ignored: they would match before any text.
    pub fn new(stops: impl IntoIterator<Item = String>) -> Self {
        Self { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), held: String::new(), stopped: false }
    }

    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Feeds one delta. After a stop, further input is ignored.
    pub fn push(&mut self, delta: &str) -> Step {
        if self.stopped {
            return Step { emit: String::new(), stopped: true };
        }
        self.held.push_str(delta);
        if let Some(cut) = self.first_match() {
            self.held.truncate(cut);
            self.stopped = true;
            return Step { emit: std::mem::take(&mut self.held), stopped: true };
        }
        let keep_from = self.hold_from();
        let emit = self.held[..keep_from].to_owned();
        self.held.replace_range(..keep_from, "");
        Step { emit, stopped: false }
    }

    /// The generation ended without a stop: what was held back is plain text.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Where to cut the held text for the stop sequence that completes first.
    fn first_match(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()).map(|start| (start + stop.len(), start)))
            .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, start)| start)
    }

    /// The start of the longest tail of the held text that is a proper prefix
    /// of some stop sequence (the held text's length if none is): nothing
    /// before it can ever be part of a match.
    fn hold_from(&self) -> usize {
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        // A tail as long as a whole stop sequence would have matched already.
        let earliest = self.held.len().saturating_sub(longest.saturating_sub(1));
        (earliest..self.held.len())
            .filter(|&k| self.held.is_char_boundary(k))
            .find(|&k| {
                let tail = &self.held[k..];
                self.stops.iter().any(|stop| stop.starts_with(tail))
            })
            .unwrap_or(self.held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(stops.iter().map(|s| s.to_string()))
    }

    /// Runs deltas through a matcher: (emitted text, stopped).
    fn run(stops: &[&str], deltas: &[&str]) -> (String, bool) {
        let mut m = matcher(stops);
        let mut out = String::new();
        for d in deltas {
            let step = m.push(d);
            out.push_str(&step.emit);
            if step.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn without_stops_text_passes_through_unheld() {
        let mut m = matcher(&[]);
        assert!(m.is_empty());
        assert_eq!(m.push("abc"), Step { emit: "abc".into(), stopped: false });
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn stop_inside_one_delta_truncates_before_it() {
        assert_eq!(run(&["STOP"], &["Hello STOP world"]), ("Hello ".into(), true));
    }

    #[test]
    fn stop_split_across_deltas() {
        assert_eq!(run(&["STOP"], &["Hello S", "T", "OP world"]), ("Hello ".into(), true));
        assert_eq!(run(&["\n\n"], &["a\n", "\nb"]), ("a".into(), true));
    }

    #[test]
    fn holds_back_only_a_possible_stop_prefix() {
        let mut m = matcher(&["###"]);
        assert_eq!(m.push("ab#"), Step { emit: "ab".into(), stopped: false });
        assert_eq!(m.push("#"), Step { emit: String::new(), stopped: false });
        // "##x" cannot begin "###" anywhere: all of it goes out.
        assert_eq!(m.push("x"), Step { emit: "##x".into(), stopped: false });
        // "#" inside a word that cannot continue into a stop is not held.
        assert_eq!(m.push("#y"), Step { emit: "#y".into(), stopped: false });
    }

    #[test]
    fn near_miss_is_released_at_the_end() {
        assert_eq!(run(&["STOP"], &["Hello ST", "O"]), ("Hello STO".into(), false));
    }

    #[test]
    fn first_completed_stop_wins_among_several() {
        assert_eq!(run(&["world", "lo"], &["Hello world"]), ("Hel".into(), true));
        // "abcd" would start earlier, but "c" completes first.
        assert_eq!(run(&["abcd", "c"], &["xabcd"]), ("xab".into(), true));
        // Both end together: cut before the longer.
        assert_eq!(run(&["bc", "abc"], &["xabc"]), ("x".into(), true));
    }

    #[test]
    fn stop_at_the_very_start_emits_nothing() {
        assert_eq!(run(&["<|end|>"], &["<|e", "nd|>tail"]), (String::new(), true));
    }

    #[test]
    fn multibyte_text_and_stops() {
        assert_eq!(run(&["é!"], &["caf", "é", "! ok"]), ("caf".into(), true));
        assert_eq!(run(&["→"], &["a→b"]), ("a".into(), true));
        assert_eq!(run(&["日本"], &["日", "日本"]), ("日".into(), true));
        assert_eq!(run(&["日本"], &["日", "x"]), ("日x".into(), false));
    }

    #[test]
    fn input_after_a_stop_is_ignored() {
        let mut m = matcher(&["x"]);
        assert!(m.push("ax").stopped);
        assert!(m.stopped());
        assert_eq!(m.push("more"), Step { emit: String::new(), stopped: true });
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn empty_stop_sequences_are_ignored() {
        assert_eq!(run(&["", "z"], &["abc"]), ("abc".into(), false));
    }

    /// Every way of cutting the text into deltas gives the same result as
    /// feeding it one character at a time.
    #[test]
    fn result_does_not_depend_on_delta_boundaries() {
        let cases: &[(&str, &[&str])] = &[
            ("The end.\n\nUser: hi", &["\n\nUser:", "User"]),
            ("aaab", &["aab", "ab"]),
            ("abababc", &["ababc", "bc"]),
            ("x<|im_end|>y", &["<|im_end|>", "<|im"]),
            ("naïve café", &["é", "ï"]),
            ("no stop here", &["zzz", "heref"]),
        ];
        for &(text, stops) in cases {
            let chars: Vec<String> = text.chars().map(String::from).collect();
            let by_char: Vec<&str> = chars.iter().map(String::as_str).collect();
            let expected = run(stops, &by_char);
            let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).skip(1).collect();
            for &i in &bounds {
                for &j in bounds.iter().filter(|&&j| j >= i) {
                    let deltas = [&text[..i], &text[i..j], &text[j..]];
                    assert_eq!(run(stops, &deltas), expected, "{text:?} cut at {i},{j} with {stops:?}");
                }
            }
            assert_eq!(run(stops, &[text]), expected, "{text:?} whole");
        }
    }
}
