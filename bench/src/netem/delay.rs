//! When each chunk leaves the emulated link. Pure: no clocks are read and no
//! sockets touched, so the timing model is tested without a network.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::LinkProfile;

/// The timing of one direction of one connection or flow.
///
/// A chunk of `n` bytes arriving at `t` first waits for the link to finish
/// earlier chunks, then occupies it for `n × 8 / bandwidth` seconds (the
/// serialization clock), then propagates for `delay ± jitter`. Its release is
/// never earlier than the previous chunk's: TCP must not reorder, and keeping
/// UDP in order too makes runs easier to compare. So with jitter, a chunk
/// stuck behind a slow predecessor waits for it, as in a FIFO link.
#[derive(Debug, Clone)]
pub struct LinkScheduler {
    delay: Duration,
    jitter_ns: u64,
    bandwidth_bps: Option<u64>,
    loss: f64,
    rng: ChaCha8Rng,
    link_free: Option<Instant>,
    last_release: Option<Instant>,
}

impl LinkScheduler {
    /// `stream` separates the random sequences of directions and flows that
    /// share the profile's seed.
    pub fn new(profile: &LinkProfile, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(profile.seed);
        rng.set_stream(stream);
        Self {
            delay: profile.delay,
            jitter_ns: u64::try_from(profile.jitter.as_nanos()).unwrap_or(u64::MAX / 2),
            bandwidth_bps: profile.bandwidth_bps.filter(|&bps| bps > 0),
            loss: if profile.loss.is_finite() { profile.loss.clamp(0.0, 1.0) } else { 0.0 },
            rng,
            link_free: None,
            last_release: None,
        }
    }

    /// Whether the next datagram is lost. Lost datagrams never reach
    /// [`schedule`](Self::schedule), so they cost no bandwidth. With no loss
    /// configured the RNG is not touched, keeping jitter sequences the same
    /// as on a lossless link.
    pub fn lose(&mut self) -> bool {
        self.loss > 0.0 && self.rng.random_bool(self.loss)
    }

    /// The instant at which `len` bytes that arrived at `arrival` are
    /// delivered. Calls must come in arrival order.
    pub fn schedule(&mut self, arrival: Instant, len: usize) -> Instant {
        let tx_start = self.link_free.map_or(arrival, |free| free.max(arrival));
        let tx_end = tx_start + self.serialization_time(len);
        self.link_free = Some(tx_end);
        let propagated = tx_end + self.sample_delay();
        let release = self.last_release.map_or(propagated, |last| last.max(propagated));
        self.last_release = Some(release);
        release
    }

    /// How long `len` bytes occupy the link at the bandwidth cap.
    pub fn serialization_time(&self, len: usize) -> Duration {
        match self.bandwidth_bps {
            None => Duration::ZERO,
            Some(bps) => {
                let nanos = (len as u128 * 8 * 1_000_000_000).div_ceil(u128::from(bps));
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        }
    }

    /// One-way delay with uniform jitter, floored at zero: a packet cannot
    /// arrive before it was sent.
    fn sample_delay(&mut self) -> Duration {
        if self.jitter_ns == 0 {
            return self.delay;
        }
        let offset = self.rng.random_range(0..=2 * self.jitter_ns) as i128 - self.jitter_ns as i128;
        let nanos = (self.delay.as_nanos() as i128 + offset).max(0);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Sleeps until `release` on tokio's clock. Deadlines already past return at
/// once, so a backlog drains without a timer tick per chunk.
pub(super) async fn sleep_until(release: Instant) {
    if release > Instant::now() {
        tokio::time::sleep_until(tokio::time::Instant::from_std(release)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn profile(spec: &str) -> LinkProfile {
        spec.parse().unwrap()
    }

    #[test]
    fn plain_delay_is_added_to_each_chunk() {
        let mut s = LinkScheduler::new(&profile("delay=20ms"), 0);
        let t0 = Instant::now();
        assert_eq!(s.schedule(t0, 100), t0 + ms(20));
        // Two chunks in flight at once: the second is not held behind the
        // first's delay, only behind its release.
        assert_eq!(s.schedule(t0 + ms(1), 100), t0 + ms(21));
        assert_eq!(s.schedule(t0 + ms(1), 100), t0 + ms(21));
    }

    #[test]
    fn order_is_preserved_under_heavy_jitter() {
        let mut s = LinkScheduler::new(&profile("delay=10ms,jitter=9ms"), 3);
        let t0 = Instant::now();
        let mut last = t0;
        for i in 0..1000u64 {
            let arrival = t0 + Duration::from_micros(i * 100);
            let release = s.schedule(arrival, 64);
            assert!(release >= last, "chunk {i} released before its predecessor");
            assert!(release >= arrival + ms(1), "chunk {i} beat the minimum delay");
            last = release;
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let mut s = LinkScheduler::new(&profile("delay=10ms,jitter=3ms"), 0);
        let t0 = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for i in 0..200u64 {
            // Arrivals far apart, so ordering never holds a chunk back.
            let arrival = t0 + Duration::from_secs(i);
            let latency = s.schedule(arrival, 10) - arrival;
            assert!(latency >= ms(7) && latency <= ms(13), "latency {latency:?}");
            seen.insert(latency);
        }
        assert!(seen.len() > 100, "jitter barely varies: {} distinct values", seen.len());
    }

    #[test]
    fn jitter_larger_than_delay_never_goes_negative() {
        let mut s = LinkScheduler::new(&profile("delay=1ms,jitter=5ms"), 0);
        let t0 = Instant::now();
        for i in 0..200u64 {
            let arrival = t0 + Duration::from_secs(i);
            assert!(s.schedule(arrival, 1) >= arrival);
        }
    }

    #[test]
    fn bandwidth_serializes_chunks_back_to_back() {
        let mut s = LinkScheduler::new(&profile("delay=5ms,bw=1mbit"), 0);
        assert_eq!(s.serialization_time(125_000), Duration::from_secs(1));
        assert_eq!(s.serialization_time(1), Duration::from_micros(8));
        let t0 = Instant::now();
        // Ten 12.5 KB chunks at once: 100 kbit each, 1 s in total on the wire.
        let releases: Vec<_> = (0..10).map(|_| s.schedule(t0, 12_500)).collect();
        assert_eq!(releases[0], t0 + ms(100) + ms(5));
        assert_eq!(releases[9], t0 + Duration::from_secs(1) + ms(5));
        // An idle link does not bank credit: a late chunk pays its own time.
        let late = t0 + Duration::from_secs(10);
        assert_eq!(s.schedule(late, 1_250), late + ms(10) + ms(5));
    }

    #[test]
    fn unlimited_bandwidth_costs_nothing() {
        let s = LinkScheduler::new(&profile("delay=5ms"), 0);
        assert_eq!(s.serialization_time(10_000_000), Duration::ZERO);
    }

    #[test]
    fn same_seed_same_schedule_and_streams_differ() {
        let run = |seed: u64, stream: u64| {
            let mut s = LinkScheduler::new(&profile("delay=10ms,jitter=5ms,loss=0.3").with_seed(seed), stream);
            let t0 = Instant::now();
            (0..100u64)
                .map(|i| {
                    let arrival = t0 + ms(i * 50);
                    (s.lose(), s.schedule(arrival, 100) - arrival)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7, 0), run(7, 0));
        assert_ne!(run(7, 0), run(8, 0));
        assert_ne!(run(7, 0), run(7, 1));
    }

    #[test]
    fn loss_rate_matches_probability() {
        let mut s = LinkScheduler::new(&profile("loss=30%"), 0);
        let lost = (0..10_000).filter(|_| s.lose()).count();
        // Binomial sd is ~46; allow 6 sd.
        assert!((2_725..=3_275).contains(&lost), "lost {lost}");
        let mut lossless = LinkScheduler::new(&profile("delay=1ms"), 0);
        assert!((0..1_000).all(|_| !lossless.lose()));
    }
}
