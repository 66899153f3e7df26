//! Fitting the Universal Scalability Law (USL) to measured throughput against
//! concurrency, as plain maths: no I/O, no printing, no clocks.
//!
//! The model is `X(N) = λ·N / (1 + σ·(N−1) + κ·N·(N−1))`, where `N` is the
//! concurrency (in contend: the total connection-pool size, a count), `X` the
//! throughput (in whatever unit the caller supplies; contend uses transactions
//! per second), `λ > 0` the throughput of one (same unit as `X`), `σ ∈ [0, 1]`
//! the contention (serialisation) coefficient and `κ ≥ 0` the coherency
//! (crosstalk) coefficient; `σ` and `κ` are dimensionless.
//!
//! [`fit`] minimises the squared error in `X`. For fixed `(σ, κ)` the best `λ`
//! has a closed form, so only `(σ, κ)` is searched: a coarse grid (σ linear,
//! κ logarithmic plus zero), then repeatedly refined grids around the best
//! point until the search window bounds the change of both parameters below
//! one part in a million. The search is deterministic: the same points always
//! give the same fit.

use serde::{Deserialize, Serialize};

/// Number of σ values on the coarse grid, evenly spaced over `[0, 1]`.
const SIGMA_COARSE_STEPS: usize = 101;
/// Number of positive κ values on the coarse grid, log-spaced over `[KAPPA_MIN, KAPPA_MAX]` (κ = 0 is added).
const KAPPA_COARSE_STEPS: usize = 79;
/// Smallest positive κ on the coarse grid.
const KAPPA_MIN: f64 = 1e-7;
/// Largest κ on the coarse grid.
const KAPPA_MAX: f64 = 1.0;
/// Points per axis of each refinement grid (odd, so the centre is on the grid).
const REFINE_STEPS: usize = 7;
/// Relative change of σ and κ below which the refinement stops.
const RELATIVE_TOLERANCE: f64 = 1e-6;
/// Upper bound on refinement rounds, so a pathological surface still terminates.
const MAX_REFINE_ROUNDS: usize = 500;

/// A Universal Scalability Law fit of throughput against concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UslFit {
    /// λ: modelled throughput at concurrency 1, in the unit of the fitted throughputs
    /// (transactions per second in contend); always > 0.
    pub lambda: f64,
    /// σ: contention (serialisation) coefficient, dimensionless, in `[0, 1]`.
    pub sigma: f64,
    /// κ: coherency (crosstalk) coefficient, dimensionless, ≥ 0.
    pub kappa: f64,
    /// N*: concurrency (connections) of peak modelled throughput, `sqrt((1 − σ) / κ)` clamped to at
    /// least 1 (the smallest meaningful concurrency) when κ > 0; `None` when κ = 0, where modelled
    /// throughput keeps rising with concurrency.
    pub peak_concurrency: Option<f64>,
    /// X(N*): modelled throughput at [`Self::peak_concurrency`], same unit as [`Self::lambda`];
    /// `None` exactly when `peak_concurrency` is `None`.
    pub peak_throughput: Option<f64>,
    /// Coefficient of determination (dimensionless, ≤ 1) of the fit on the points used: `1 − SSE / SST`.
    /// When all used throughputs are equal (SST = 0) it is 1 for an exact fit and 0 otherwise.
    pub r_squared: f64,
    /// Number of points the fit used (see [`fit`] for which points are skipped).
    pub points: usize,
}

impl UslFit {
    /// Modelled throughput at concurrency `n` (connections), in the unit of [`Self::lambda`]:
    /// `λ·n / (1 + σ·(n−1) + κ·n·(n−1))`.
    pub fn predict(&self, n: f64) -> f64 {
        self.lambda * shape(self.sigma, self.kappa, n)
    }
}

/// Fits the USL to `(N, X)` points: `N` is concurrency (connections, ≥ 1), `X` throughput (≥ 0, any
/// unit; λ comes back in the same unit). Repeated `N` are allowed (e.g. several cells per pool size)
/// and each point counts once in the least-squares error.
///
/// Points with a non-finite coordinate, `N < 1` or `X < 0` are skipped and not counted in
/// [`UslFit::points`]. Returns `None` when the remaining points have fewer than 3 distinct `N` or no
/// positive `X`.
pub fn fit(points: &[(f64, f64)]) -> Option<UslFit> {
    let used: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(n, x)| n.is_finite() && x.is_finite() && n >= 1.0 && x >= 0.0)
        .collect();
    if !used.iter().any(|&(_, x)| x > 0.0) {
        return None;
    }
    let mut distinct: Vec<f64> = used.iter().map(|&(n, _)| n).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < 3 {
        return None;
    }

    let (sigma, kappa) = search(&used);
    let (lambda, sse) = solve_lambda(&used, sigma, kappa, &mut Vec::new());
    if lambda.is_nan() || lambda <= 0.0 {
        return None;
    }

    let mean = used.iter().map(|&(_, x)| x).sum::<f64>() / used.len() as f64;
    let sst: f64 = used.iter().map(|&(_, x)| (x - mean) * (x - mean)).sum();
    let sum_sq: f64 = used.iter().map(|&(_, x)| x * x).sum();
    let r_squared = if sst > f64::EPSILON * sum_sq {
        1.0 - sse / sst
    } else if sse <= 1e-12 * sum_sq {
        1.0
    } else {
        0.0
    };

    let mut usl = UslFit {
        lambda,
        sigma,
        kappa,
        peak_concurrency: None,
        peak_throughput: None,
        r_squared,
        points: used.len(),
    };
    if kappa > 0.0 {
        let peak = ((1.0 - sigma) / kappa).sqrt().max(1.0);
        usl.peak_concurrency = Some(peak);
        usl.peak_throughput = Some(usl.predict(peak));
    }
    Some(usl)
}

/// Throughput of `n` relative to λ: `n / (1 + σ(n−1) + κn(n−1))`.
fn shape(sigma: f64, kappa: f64, n: f64) -> f64 {
    n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
}

/// Least-squares λ for fixed (σ, κ), and the resulting sum of squared errors. `shapes` is scratch
/// space (reused between calls to avoid allocating); it ends up holding each point's [`shape`].
fn solve_lambda(points: &[(f64, f64)], sigma: f64, kappa: f64, shapes: &mut Vec<f64>) -> (f64, f64) {
    shapes.clear();
    let (mut xf, mut ff) = (0.0, 0.0);
    for &(n, x) in points {
        let f = shape(sigma, kappa, n);
        shapes.push(f);
        xf += x * f;
        ff += f * f;
    }
    let lambda = xf / ff;
    let sse = points
        .iter()
        .zip(shapes.iter())
        .map(|(&(_, x), &f)| {
            let r = x - lambda * f;
            r * r
        })
        .sum();
    (lambda, sse)
}

/// `steps` evenly spaced values over `[lo, hi]` (just `lo` when the interval is empty).
fn linspace(lo: f64, hi: f64, steps: usize) -> impl Iterator<Item = f64> {
    let count = if hi > lo { steps } else { 1 };
    (0..count).map(move |i| {
        if i + 1 == count {
            hi.max(lo)
        } else {
            lo + (hi - lo) * i as f64 / (steps - 1) as f64
        }
    })
}

/// The (σ, κ) minimising the squared error: coarse grid, then shrinking grids around the best point.
fn search(points: &[(f64, f64)]) -> (f64, f64) {
    let mut shapes = Vec::with_capacity(points.len());
    let kappas: Vec<f64> = std::iter::once(0.0)
        .chain((0..KAPPA_COARSE_STEPS).map(|i| {
            let t = i as f64 / (KAPPA_COARSE_STEPS - 1) as f64;
            KAPPA_MIN * (KAPPA_MAX / KAPPA_MIN).powf(t)
        }))
        .collect();

    let (mut best_sigma, mut best_kappa_index, mut best_sse) = (0.0, 0, f64::INFINITY);
    for sigma in linspace(0.0, 1.0, SIGMA_COARSE_STEPS) {
        for (k, &kappa) in kappas.iter().enumerate() {
            let e = solve_lambda(points, sigma, kappa, &mut shapes).1;
            if e < best_sse {
                (best_sigma, best_kappa_index, best_sse) = (sigma, k, e);
            }
        }
    }
    let mut best_kappa = kappas[best_kappa_index];

    // Half-widths of the search window: one coarse cell either side.
    let mut d_sigma = 1.0 / (SIGMA_COARSE_STEPS - 1) as f64;
    let below = best_kappa_index.checked_sub(1).map_or(0.0, |k| best_kappa - kappas[k]);
    let above = kappas.get(best_kappa_index + 1).map_or(0.0, |&k| k - best_kappa);
    let mut d_kappa = below.max(above);

    for _ in 0..MAX_REFINE_ROUNDS {
        let sigma_done = d_sigma <= RELATIVE_TOLERANCE * best_sigma.max(1e-3);
        let kappa_done = d_kappa <= RELATIVE_TOLERANCE * best_kappa.max(KAPPA_MIN);
        if sigma_done && kappa_done {
            break;
        }
        let (centre_sigma, centre_kappa) = (best_sigma, best_kappa);
        let sigma_lo = (centre_sigma - d_sigma).max(0.0);
        let sigma_hi = (centre_sigma + d_sigma).min(1.0);
        let kappa_lo = (centre_kappa - d_kappa).max(0.0);
        let kappa_hi = centre_kappa + d_kappa;
        for sigma in linspace(sigma_lo, sigma_hi, REFINE_STEPS) {
            for kappa in linspace(kappa_lo, kappa_hi, REFINE_STEPS) {
                let e = solve_lambda(points, sigma, kappa, &mut shapes).1;
                if e < best_sse {
                    (best_sigma, best_kappa, best_sse) = (sigma, kappa, e);
                }
            }
        }
        // Shrink only once the best point stays put; if it moved, search the same-sized window around it.
        if best_sigma == centre_sigma && best_kappa == centre_kappa {
            d_sigma *= 0.5;
            d_kappa *= 0.5;
        }
    }
    (best_sigma, best_kappa)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL_SIZES: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

    fn curve(lambda: f64, sigma: f64, kappa: f64) -> Vec<(f64, f64)> {
        POOL_SIZES
            .iter()
            .map(|&n| (n, lambda * shape(sigma, kappa, n)))
            .collect()
    }

    fn relative_error(got: f64, want: f64) -> f64 {
        ((got - want) / want).abs()
    }

    #[test]
    fn recovers_known_parameters_from_an_exact_curve() {
        let points = curve(1000.0, 0.05, 0.002);
        let usl = fit(&points).expect("fit");
        assert!((usl.sigma - 0.05).abs() < 0.005, "{usl:?}");
        assert!((usl.kappa - 0.002).abs() < 0.0002, "{usl:?}");
        assert!(relative_error(usl.lambda, 1000.0) < 0.01, "{usl:?}");
        let peak = usl.peak_concurrency.expect("κ > 0 has a peak");
        assert!(relative_error(peak, (0.95f64 / 0.002).sqrt()) < 0.05, "{usl:?}");
        let peak_x = usl.peak_throughput.expect("peak throughput");
        assert!((peak_x - usl.predict(peak)).abs() < 1e-9, "{usl:?}");
        assert!(usl.r_squared > 0.999, "{usl:?}");
        assert_eq!(usl.points, 7);
        // On exact data the search converges far tighter than the brief's bounds.
        assert!((usl.sigma - 0.05).abs() < 1e-5, "{usl:?}");
        assert!((usl.kappa - 0.002).abs() < 1e-6, "{usl:?}");
        assert!(relative_error(usl.lambda, 1000.0) < 1e-5, "{usl:?}");
    }

    #[test]
    fn tolerates_three_percent_noise_with_repeated_pool_sizes() {
        // Tolerances: σ ±0.03, κ ±0.001, N* within 20%, R² > 0.95, on a deterministic ±3% pattern
        // (1 + 0.03·sin(1.7·i)) over three cells per pool size.
        let (lambda, sigma, kappa) = (1000.0, 0.05, 0.002);
        let mut points = Vec::new();
        for _rep in 0..3 {
            for &n in &POOL_SIZES {
                let i = points.len() as f64;
                points.push((n, lambda * shape(sigma, kappa, n) * (1.0 + 0.03 * (1.7 * i).sin())));
            }
        }
        let usl = fit(&points).expect("fit");
        assert!((usl.sigma - sigma).abs() < 0.03, "{usl:?}");
        assert!((usl.kappa - kappa).abs() < 0.001, "{usl:?}");
        let peak = usl.peak_concurrency.expect("κ > 0 has a peak");
        assert!(relative_error(peak, ((1.0 - sigma) / kappa).sqrt()) < 0.2, "{usl:?}");
        assert!(usl.r_squared > 0.95, "{usl:?}");
        assert_eq!(usl.points, 21);
    }

    #[test]
    fn linear_curve_has_no_peak() {
        let usl = fit(&curve(250.0, 0.0, 0.0)).expect("fit");
        assert!(usl.kappa < 1e-5, "{usl:?}");
        assert!(usl.sigma < 1e-4, "{usl:?}");
        assert!(usl.peak_concurrency.is_none_or(|n| n > 1000.0), "{usl:?}");
        assert_eq!(usl.peak_concurrency.is_none(), usl.peak_throughput.is_none());
        assert!((usl.r_squared - 1.0).abs() < 1e-9, "{usl:?}");
        assert!(relative_error(usl.lambda, 250.0) < 1e-4, "{usl:?}");
    }

    #[test]
    fn amdahl_curve_has_no_coherency() {
        let usl = fit(&curve(500.0, 0.2, 0.0)).expect("fit");
        assert!((usl.sigma - 0.2).abs() < 0.01, "{usl:?}");
        assert!(usl.kappa < 1e-4, "{usl:?}");
        assert!(relative_error(usl.lambda, 500.0) < 0.01, "{usl:?}");
        assert!(usl.r_squared > 0.999_999, "{usl:?}");
    }

    #[test]
    fn too_few_distinct_concurrencies_or_no_throughput_gives_none() {
        assert_eq!(fit(&[]), None);
        assert_eq!(fit(&[(1.0, 100.0), (2.0, 190.0)]), None);
        assert_eq!(fit(&[(1.0, 100.0), (2.0, 190.0), (2.0, 185.0), (1.0, 99.0)]), None);
        assert_eq!(fit(&[(1.0, 0.0), (2.0, 0.0), (4.0, 0.0), (8.0, 0.0)]), None);
        // Invalid points are skipped, so they cannot make up the third distinct N.
        assert_eq!(fit(&[(1.0, 100.0), (2.0, 190.0), (0.5, 60.0), (4.0, f64::NAN)]), None);
        assert!(fit(&[(1.0, 100.0), (2.0, 190.0), (4.0, 340.0)]).is_some());
    }

    #[test]
    fn skips_invalid_points() {
        let mut points = curve(1000.0, 0.05, 0.002);
        points.extend([(0.0, 5.0), (f64::INFINITY, 10.0), (8.0, -1.0), (16.0, f64::NAN)]);
        let usl = fit(&points).expect("fit");
        assert_eq!(usl.points, 7);
        assert!((usl.sigma - 0.05).abs() < 1e-5, "{usl:?}");
    }

    #[test]
    fn predict_reproduces_an_exact_curve() {
        let points = curve(1000.0, 0.05, 0.002);
        let usl = fit(&points).expect("fit");
        for &(n, x) in &points {
            assert!(
                relative_error(usl.predict(n), x) < 1e-5,
                "N = {n}: {} vs {x}",
                usl.predict(n)
            );
        }
        let exact = UslFit {
            lambda: 1000.0,
            sigma: 0.05,
            kappa: 0.002,
            ..usl
        };
        for &(n, x) in &points {
            assert!(relative_error(exact.predict(n), x) < 1e-12);
        }
        assert_eq!(exact.predict(1.0), 1000.0);
    }

    #[test]
    fn constant_throughput_fits_full_contention() {
        let usl = fit(&[(1.0, 300.0), (4.0, 300.0), (16.0, 300.0)]).expect("fit");
        assert!((usl.sigma - 1.0).abs() < 1e-6, "{usl:?}");
        assert!(usl.kappa < 1e-9, "{usl:?}");
        assert_eq!(usl.r_squared, 1.0, "{usl:?}");
    }

    #[test]
    fn fit_is_deterministic_and_serde_round_trips() {
        let points = curve(1000.0, 0.1, 0.0005);
        let a = fit(&points).expect("fit");
        assert_eq!(Some(a), fit(&points));
        let json = serde_json::to_string(&a).expect("serialize");
        let back: UslFit = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(a.points, back.points);
        assert!(relative_error(back.lambda, a.lambda) < 1e-12 && relative_error(back.kappa, a.kappa) < 1e-12);
        assert!(back.peak_concurrency.is_some() && json.contains("\"r_squared\""));
    }
}
