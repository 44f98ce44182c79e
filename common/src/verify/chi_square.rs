//! Pearson's chi-square goodness-of-fit test, for the statistical tests.
//!
//! The p-value is the regularised upper incomplete gamma function
//! `Q(df / 2, x / 2)`, by series or continued fraction (Numerical Recipes,
//! §6.2), with ln Γ from Lanczos' approximation.

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; ~1e-15 relative).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the approximation in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularised upper incomplete gamma `Q(a, x) = Γ(a, x) / Γ(a)`.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let prefactor = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        // Series for P converges fast here.
        let mut ap = a;
        let mut del = 1.0 / a;
        let mut sum = del;
        for _ in 0..10_000 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * prefactor).max(0.0)
    } else {
        // Modified Lentz continued fraction for Q.
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (prefactor * h).clamp(0.0, 1.0)
    }
}

/// Survival function of the chi-square distribution.
pub fn chi_square_sf(stat: f64, df: usize) -> f64 {
    gamma_q(df as f64 / 2.0, stat / 2.0)
}

/// The p-value of `observed` counts under cell probabilities `probs`.
///
/// Cells expected fewer than 5 times are pooled so the chi-square
/// approximation holds. A count in a cell of probability exactly 0 is proof
/// against the hypothesis: the p-value is 0.
pub fn chi_square_p_value(observed: &[u64], probs: &[f64]) -> f64 {
    assert_eq!(observed.len(), probs.len());
    let n: u64 = observed.iter().sum();
    let n = n as f64;
    let mut cells: Vec<(f64, f64)> = Vec::new();
    let (mut pooled_o, mut pooled_e) = (0.0, 0.0);
    for (&o, &p) in observed.iter().zip(probs) {
        let e = n * p;
        if p == 0.0 {
            if o > 0 {
                return 0.0;
            }
        } else if e < 5.0 {
            pooled_o += o as f64;
            pooled_e += e;
        } else {
            cells.push((o as f64, e));
        }
    }
    if pooled_e > 0.0 {
        cells.push((pooled_o, pooled_e));
    }
    if cells.len() < 2 {
        return 1.0;
    }
    let stat: f64 = cells.iter().map(|(o, e)| (o - e) * (o - e) / e).sum();
    chi_square_sf(stat, cells.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    #[test]
    fn ln_gamma_known_values() {
        assert!(near(ln_gamma(1.0), 0.0, 1e-13));
        assert!(near(ln_gamma(5.0), 24f64.ln(), 1e-13));
        assert!(near(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-13));
        assert!(near(ln_gamma(0.1), 2.252_712_651_734_206, 1e-12));
    }

    #[test]
    fn survival_function_matches_tables() {
        assert!(near(chi_square_sf(3.841_458_820_694_124, 1), 0.05, 1e-9));
        assert!(near(chi_square_sf(2.0, 2), (-1.0f64).exp(), 1e-12));
        assert!(near(chi_square_sf(18.307_038_053_275_146, 10), 0.05, 1e-9));
        assert!(near(chi_square_sf(124.342_113_404_004_07, 100), 0.05, 1e-9));
        assert!(near(chi_square_sf(10.827_566_170_662_733, 1), 0.001, 1e-10));
        assert_eq!(chi_square_sf(0.0, 3), 1.0);
        assert!(chi_square_sf(1e4, 7) < 1e-300);
    }

    #[test]
    fn fits_and_misfits() {
        assert!(chi_square_p_value(&[500, 500], &[0.5, 0.5]) > 0.99);
        assert!(chi_square_p_value(&[600, 400], &[0.5, 0.5]) < 1e-9);
        assert_eq!(chi_square_p_value(&[999, 1], &[1.0, 0.0]), 0.0);
        // Rare cells are pooled rather than blowing up the statistic.
        assert!(chi_square_p_value(&[998, 1, 1], &[0.998, 0.001, 0.001]) > 0.5);
    }
}
