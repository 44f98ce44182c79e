//! How late the load generator itself ran. Every latency is measured here,
//! so when this process is starved of CPU (other work on a shared machine)
//! its requests look slow though the server answered at once. A task on the
//! load's runtime ticks every [`TICK`] and records how late each tick came;
//! a late refusal at the same moment as a stall is the generator's delay,
//! not the server's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

pub const TICK: Duration = Duration::from_millis(20);
/// Stalls at least this long are kept with their time.
const NOTABLE: Duration = Duration::from_millis(250);
/// The longest ones reported.
const KEPT: usize = 16;
/// Notable stalls kept at most (a starved run must stay small).
const NOTABLE_KEPT: usize = 10_000;

#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct Stalls {
    pub ticks: u64,
    pub max_late_ms: f64,
    pub late_over_100ms: u64,
    pub late_over_500ms: u64,
    /// The longest stalls of at least 250 ms: (seconds into the load, ms late).
    pub longest: Vec<(f64, f64)>,
    /// Every stall of at least 250 ms in time order (bounded), to set
    /// beside late requests.
    #[serde(skip)]
    notable: Vec<(f64, f64)>,
}

impl Stalls {
    fn record(&mut self, t_s: f64, late: Duration) {
        let ms = late.as_secs_f64() * 1e3;
        self.ticks += 1;
        self.max_late_ms = self.max_late_ms.max(ms);
        self.late_over_100ms += u64::from(ms > 100.0);
        self.late_over_500ms += u64::from(ms > 500.0);
        if late >= NOTABLE && self.notable.len() < NOTABLE_KEPT {
            self.notable.push((t_s, ms));
        }
    }

    /// Fills [`Stalls::longest`] once the load is over.
    pub fn finish(&mut self) {
        self.longest = self.notable.clone();
        self.longest.sort_by(|a, b| b.1.total_cmp(&a.1));
        self.longest.truncate(KEPT);
    }

    /// The longest stall that overlapped a request which ended `t_s`
    /// seconds into the load and took `took` seconds (a tick that came late
    /// at `t` was stalled from `t - late` to `t`).
    pub fn during(&self, t_s: f64, took: f64) -> Option<f64> {
        let (from, to) = (t_s - took, t_s);
        self.notable.iter().filter(|&&(t, ms)| t >= from && t - ms / 1e3 <= to).map(|&(_, ms)| ms).reduce(f64::max)
    }
}

/// Ticks until dropped (abort its task), recording into `into`.
pub async fn probe(start: Instant, into: Arc<Mutex<Stalls>>) {
    let mut next = Instant::now() + TICK;
    loop {
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        let late = now.saturating_duration_since(next);
        into.lock().unwrap_or_else(|e| e.into_inner()).record(now.duration_since(start).as_secs_f64(), late);
        next = now + TICK;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_longest_stalls_with_their_time() {
        let mut s = Stalls::default();
        s.record(1.0, Duration::from_millis(3));
        s.record(2.0, Duration::from_millis(300));
        s.record(5.0, Duration::from_millis(900));
        s.finish();
        assert_eq!((s.ticks, s.late_over_100ms, s.late_over_500ms), (3, 2, 1));
        assert_eq!(s.longest, vec![(5.0, 900.0), (2.0, 300.0)]);
        // A request from 4.0 to 4.5 s sat inside the stall from 4.1 to 5.0 s.
        assert_eq!(s.during(4.5, 0.5), Some(900.0));
        assert_eq!(s.during(2.1, 1.5), Some(300.0));
        assert_eq!(s.during(9.0, 1.0), None);
        assert_eq!(s.during(3.5, 0.5), None);
    }
}
