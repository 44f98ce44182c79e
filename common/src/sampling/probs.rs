//! Turning logits into the distribution a request samples from.

use std::cmp::Ordering;

use super::{argmax, SamplingParams};

/// The filtered, renormalised distribution over the whole vocabulary, in f32.
///
/// See [`probs_f64`]; this only narrows the result.
pub fn probs(logits: &[f32], params: &SamplingParams) -> Vec<f32> {
    probs_f64(logits, params).into_iter().map(|p| p as f32).collect()
}

/// The filtered, renormalised distribution over the whole vocabulary.
///
/// Order: temperature, then top-k, then top-p (the smallest set of most likely
/// tokens whose mass reaches `p`). Ties in either cut go to the lower token id,
/// the same rule as [`argmax`](fn@argmax), so `top_k = 1` and greedy agree.
///
/// Work is done in f64 because verification subtracts and renormalises these
/// probabilities repeatedly, which f32 rounds badly.
///
/// Degenerate inputs never panic: a non-positive or NaN temperature is treated
/// as greedy (a one-hot at [`argmax`](fn@argmax)), NaN logits as impossible tokens, `+inf`
/// logits share all the mass, and a row with nothing possible falls back to the
/// one-hot. Out-of-range `top_k`/`top_p` are clamped; call
/// [`SamplingParams::validate`] to reject them instead.
pub fn probs_f64(logits: &[f32], params: &SamplingParams) -> Vec<f64> {
    let n = logits.len();
    if n == 0 {
        return Vec::new();
    }
    let t = params.temperature as f64;
    if t.is_nan() || t <= 0.0 {
        return one_hot(n, argmax(logits) as usize);
    }
    let key = |i: usize| sort_key(logits[i]);
    let max = (0..n).map(key).fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return one_hot(n, argmax(logits) as usize);
    }
    let weight = |i: usize| -> f64 {
        let k = key(i);
        if max == f64::INFINITY {
            // The limit of a softmax whose largest logits grow without bound.
            if k == f64::INFINITY {
                1.0
            } else {
                0.0
            }
        } else {
            ((k - max) / t).exp()
        }
    };
    let mut w: Vec<f64> = (0..n).map(weight).collect();
    let mut kept: Vec<usize> = (0..n).filter(|&i| w[i] > 0.0).collect();

    // Larger logit first, then lower id: weights are monotone in the logit, so
    // ordering by logit orders by probability without rounding artefacts.
    let by_rank =
        |a: &usize, b: &usize| -> Ordering { key(*b).partial_cmp(&key(*a)).unwrap_or(Ordering::Equal).then(a.cmp(b)) };

    if let Some(k) = params.top_k {
        let k = k.max(1);
        if k < kept.len() {
            kept.select_nth_unstable_by(k - 1, by_rank);
            kept.truncate(k);
        }
    }

    if let Some(p) = params.top_p {
        let p = p as f64;
        if p < 1.0 {
            let total: f64 = kept.iter().map(|&i| w[i]).sum();
            let target = p * total;
            // The nucleus is usually tiny next to the vocabulary, so rank a
            // growing head instead of sorting everything.
            let mut m = kept.len().min(64);
            loop {
                if m < kept.len() {
                    kept.select_nth_unstable_by(m - 1, by_rank);
                }
                kept[..m].sort_unstable_by(by_rank);
                let mut cum = 0.0;
                let cut = kept[..m].iter().position(|&i| {
                    cum += w[i];
                    cum >= target
                });
                if let Some(c) = cut {
                    kept.truncate(c + 1);
                    break;
                }
                if m == kept.len() {
                    break;
                }
                m = (m * 4).min(kept.len());
            }
        }
    }

    let mut keep = vec![false; n];
    for &i in &kept {
        keep[i] = true;
    }
    let total: f64 = kept.iter().map(|&i| w[i]).sum();
    for (i, wi) in w.iter_mut().enumerate() {
        *wi = if keep[i] { *wi / total } else { 0.0 };
    }
    w
}

/// NaN can never be chosen, and `-0.0` must tie with `0.0` as it does in
/// [`argmax`](fn@argmax).
fn sort_key(x: f32) -> f64 {
    if x.is_nan() {
        f64::NEG_INFINITY
    } else {
        x as f64 + 0.0
    }
}

fn one_hot(n: usize, i: usize) -> Vec<f64> {
    let mut v = vec![0.0; n];
    v[i] = 1.0;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32, k: Option<usize>, p: Option<f32>) -> SamplingParams {
        SamplingParams { temperature: t, top_k: k, top_p: p, seed: 0 }
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-7)
    }

    #[test]
    fn plain_softmax() {
        let p = probs_f64(&[0.0, (2.0f32).ln()], &params(1.0, None, None));
        assert!(close(&p, &[1.0 / 3.0, 2.0 / 3.0]), "{p:?}");
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let l = [0.0, 1.0];
        let cold = probs_f64(&l, &params(0.5, None, None));
        let hot = probs_f64(&l, &params(2.0, None, None));
        assert!(cold[1] > hot[1] && hot[1] > 0.5);
    }

    #[test]
    fn greedy_is_one_hot_at_argmax() {
        assert_eq!(probs_f64(&[1.0, 3.0, 3.0], &params(0.0, None, None)), vec![0.0, 1.0, 0.0]);
        // Broken temperatures fall back to greedy instead of panicking.
        assert_eq!(probs_f64(&[1.0, 3.0], &params(-1.0, None, None)), vec![0.0, 1.0]);
        assert_eq!(probs_f64(&[1.0, 3.0], &params(f32::NAN, None, None)), vec![0.0, 1.0]);
    }

    #[test]
    fn top_k_keeps_largest_and_breaks_ties_by_id() {
        let p = probs_f64(&[1.0, 2.0, 2.0, 0.5], &params(1.0, Some(2), None));
        assert!(close(&p, &[0.0, 0.5, 0.5, 0.0]), "{p:?}");
        let p = probs_f64(&[1.0, 2.0, 2.0, 2.0], &params(1.0, Some(1), None));
        assert_eq!(p, vec![0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn top_k_one_agrees_with_argmax() {
        let l = [0.3, -0.0, 0.0, 0.3, f32::NAN];
        let p = probs_f64(&l, &params(0.9, Some(1), None));
        assert_eq!(p[argmax(&l) as usize], 1.0);
    }

    #[test]
    fn top_p_keeps_smallest_reaching_set() {
        // Probabilities 0.5, 0.3, 0.2.
        let l = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let p = probs_f64(&l, &params(1.0, None, Some(0.5)));
        assert!(close(&p, &[1.0, 0.0, 0.0]), "{p:?}");
        let p = probs_f64(&l, &params(1.0, None, Some(0.6)));
        assert!(close(&p, &[0.625, 0.375, 0.0]), "{p:?}");
        let p = probs_f64(&l, &params(1.0, None, Some(1.0)));
        assert!((p[2] - 0.2).abs() < 1e-6);
    }

    #[test]
    fn top_p_boundary_ties_go_to_lower_id() {
        // Four equal tokens: p = 0.5 needs exactly two, the lowest ids.
        let p = probs_f64(&[1.0; 4], &params(1.0, None, Some(0.5)));
        assert!(close(&p, &[0.5, 0.5, 0.0, 0.0]), "{p:?}");
    }

    #[test]
    fn top_k_then_top_p_renormalises_between() {
        // Top-2 keeps ids 0 and 2 (the 0.25 tie goes to the lower id); renormalised,
        // id 0 alone holds 0.3 / 0.55 > 0.5.
        let l = [0.3f32.ln(), 0.2f32.ln(), 0.25f32.ln(), 0.25f32.ln()];
        let p = probs_f64(&l, &params(1.0, Some(2), Some(0.5)));
        assert!(close(&p, &[1.0, 0.0, 0.0, 0.0]), "{p:?}");
    }

    #[test]
    fn top_p_on_a_large_vocabulary_grows_its_head() {
        // Nearly flat over 1000 tokens: the nucleus is larger than the first
        // ranked head, so the search must widen.
        let l: Vec<f32> = (0..1000).map(|i| -(i as f32) * 1e-3).collect();
        let p = probs_f64(&l, &params(1.0, None, Some(0.9)));
        let kept = p.iter().filter(|&&x| x > 0.0).count();
        assert!(kept > 800 && kept < 1000, "{kept}");
        assert!(p[..kept].iter().all(|&x| x > 0.0));
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn degenerate_logits_do_not_panic() {
        let p = probs_f64(&[f32::NAN, 1.0, f32::NEG_INFINITY], &params(1.0, None, None));
        assert_eq!(p, vec![0.0, 1.0, 0.0]);
        let p = probs_f64(&[f32::INFINITY, 1.0, f32::INFINITY], &params(1.0, None, None));
        assert_eq!(p, vec![0.5, 0.0, 0.5]);
        let p = probs_f64(&[f32::NEG_INFINITY; 3], &params(1.0, None, None));
        assert_eq!(p, vec![1.0, 0.0, 0.0]);
        assert!(probs_f64(&[], &params(1.0, None, None)).is_empty());
        let p = probs_f64(&[1.0, 2.0], &params(1.0, Some(0), Some(-3.0)));
        assert_eq!(p, vec![0.0, 1.0]);
    }

    #[test]
    fn f32_output_matches() {
        let l = [0.1, 0.7, -1.0];
        let a = probs(&l, &params(0.8, None, None));
        let b = probs_f64(&l, &params(0.8, None, None));
        assert!(a.iter().zip(&b).all(|(x, y)| (*x as f64 - y).abs() < 1e-7));
    }

    #[test]
    fn huge_logits_stay_finite() {
        let p = probs_f64(&[1e30, 1e30 - 1e24, -1e30], &params(1e-3, None, None));
        assert!(p.iter().all(|x| x.is_finite()));
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
