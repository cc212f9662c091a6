//! The exact prefilter of nearest-reference scoring: which references can be among the `k`
//! nearest, found from dot products alone, so that only those few are scored by the reference
//! SOART3 code (`soart3::soart3`). Pure: no I/O; one scratch vector per frame.
//!
//! Covered: score = eta with `p_eta = 2`. There the residual's squared Euclidean norm has a
//! closed form in `x·y`, `x·x` and `y·y`:
//!
//! ```text
//! beta = (x·y + ε) / (x·x + ε),   ‖y − beta·x‖² = y·y − 2·beta·(x·y) + beta²·(x·x)
//! ```
//!
//! `x·x` is precomputed per reference ([`Prepared`]); `x·y` is one streaming pass over the
//! contiguous `f32` references with `f64` accumulators (an `f32·f32` product is exact in
//! `f64`). The closed form cancels badly when the residual is small next to `‖y‖`, and the
//! dot products are rounded, so every estimate carries a rigorous error bound (below), and the
//! candidates are every reference whose *lower* bound is within the `k`-th smallest *upper*
//! bound (plus a relative margin). A reference left out is then provably farther than `k`
//! others, as the reference code computes them, and cannot change the score, the nearest index
//! or a tie: the caller scores the candidates, in index order, with the reference code path.
//! Anything outside the covered case, or not finite, returns `None` (use the reference path).

use crate::score::{Embeddings, ScoreKind, Scoring};
use crate::soart3::EPSILON;

/// Unit roundoff of `f64`.
const U: f64 = f64::EPSILON / 2.0;

/// Beyond this `k` (or fraction of the set) pruning saves little: the reference path scores.
const MAX_K: usize = 64;

/// Squared norms at most this keep every bound and residual far from overflow.
const LARGE: f64 = 1e100;

/// Relative margin added to the candidate bound, so that a reference left out is farther by
/// far more than the rounding of `ln_1p` (no tie can straddle the cut).
const RELATIVE_MARGIN: f64 = 1e-9;

/// Per-reference values computed once per reference set: `x·x` in `f64` (16 bytes of the
/// references' 4·dim are not duplicated: only one `f64` per reference).
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    xx: Vec<f64>,
    /// Every `x·x` finite and far from overflow (else the bounds do not hold).
    usable: bool,
}

impl Prepared {
    pub fn new(refs: &Embeddings) -> Self {
        let xx = refs
            .rows()
            .map(|x| x.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
            .collect::<Vec<f64>>();
        let usable = xx.iter().all(|&v| v < LARGE);
        Self { xx, usable }
    }

    pub fn len(&self) -> usize {
        self.xx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.xx.is_empty()
    }
}

/// Whether the prefilter covers these settings (otherwise the reference path scores alone).
pub fn covers(s: &Scoring) -> bool {
    s.kind == ScoreKind::Eta && s.orders.eta_p == 2.0
}

/// `x·y` with `f64` accumulation in eight independent lanes (auto-vectorised).
#[inline]
pub fn dot(x: &[f32], y: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let mut tail = 0.0f64;
    for (a, b) in xc.remainder().iter().zip(yc.remainder()) {
        tail += f64::from(*a) * b;
    }
    for (a, b) in xc.zip(yc) {
        for ((s, &a), &b) in acc.iter_mut().zip(a).zip(b) {
            *s += f64::from(a) * b;
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// The estimate of `‖y − beta·x‖²` for every reference (`+inf` for `skip`), one streaming pass.
fn estimates(
    refs: &Embeddings,
    prep: &Prepared,
    y64: &[f64],
    yy: f64,
    skip: Option<usize>,
) -> Vec<f64> {
    let mut q = Vec::with_capacity(prep.xx.len());
    for (x, &xx) in refs.rows().zip(&prep.xx) {
        let xy = dot(x, y64);
        let b = (xy + EPSILON) / (xx + EPSILON);
        q.push(yy - 2.0 * b * xy + b * b * xx);
    }
    if let Some(i) = skip.and_then(|i| q.get_mut(i)) {
        *i = f64::INFINITY;
    }
    q
}

/// Error bounds `(e, a)`: for every reference, `q − e ≤ ‖r‖² ≤ q + e` up to `a` in norm, where
/// `r` is the exact residual, and the reference code's computed `‖r‖` is within `a` too.
///
/// With `s = ‖y‖`, `n = ‖x‖`, `D = n² + ε`, a dot product summed over `d` exact products has
/// error `δ ≤ γ_d·n·s`; `|b·xy| ≤ s² + s·√ε/2` and `b²·xx ≤ (s + √ε/2)²` (Cauchy–Schwarz, and
/// `ε·n/(n² + ε) ≤ √ε/2`), so with `w = s + √ε/2` every term is bounded by `w`, `w²` alone:
/// `e = 2|b|δ + rounding(q) ≤ (2γ_d + 32u)·w²`, and the error of `beta` moves the residual by
/// at most `|Δbeta|·n ≤ (γ_d + 4u)·w`. Both are taken four times over.
fn bounds(dim: usize, s: f64) -> (f64, f64) {
    let gamma_d = 1.01 * (dim as f64 + 2.0) * U;
    let w = s + EPSILON.sqrt() / 2.0;
    let e = 4.0 * (2.0 * gamma_d + 32.0 * U) * w * w;
    let a = 4.0 * (gamma_d + 4.0 * U) * w;
    (e, a)
}

/// The `k`-th smallest of `q` (all finite but `skip`'s `+inf`), or `None` if `q` has fewer.
fn kth_smallest(q: &[f64], k: usize) -> Option<f64> {
    let mut smallest: Vec<f64> = Vec::with_capacity(k + 1);
    for &v in q {
        if smallest.len() < k || v < smallest[smallest.len() - 1] {
            let pos = smallest.partition_point(|&w| w <= v);
            smallest.insert(pos, v);
            smallest.truncate(k);
        }
    }
    smallest.get(k - 1).copied().filter(|v| v.is_finite())
}

/// The references that can be among the `k` nearest of `y` (ascending indices), or `None`
/// when the prefilter does not apply: settings it does not cover, `k` too large, a frame or
/// references that are not finite or so large that the bounds do not hold, fewer than `k`
/// references.
pub fn candidates(
    refs: &Embeddings,
    prep: &Prepared,
    y: &[f32],
    s: &Scoring,
    skip: Option<usize>,
) -> Option<Vec<usize>> {
    let n = refs.len();
    let k = s.k.clamp(1, n.max(1));
    if !covers(s) || k > MAX_K || 4 * k > n || prep.len() != n || y.len() != refs.dim {
        return None;
    }
    let y64: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
    let yy: f64 = y64.iter().map(|v| v * v).sum();
    // Far from overflow, so that no bound or residual is infinite.
    if !prep.usable || yy.is_nan() || yy >= LARGE {
        return None;
    }
    let q = estimates(refs, prep, &y64, yy, skip);
    if q.iter().any(|v| v.is_nan()) {
        return None;
    }
    let kth = kth_smallest(&q, k)?;
    let (e, a) = bounds(refs.dim, yy.sqrt());
    // The k-th smallest residual norm is at most `t` (the k references of smallest q are within
    // it), as the reference code computes it; a reference with `sqrt(q − e) − a > t` is beyond.
    let t = ((kth + e).sqrt() + a) * (1.0 + RELATIVE_MARGIN);
    let cut = ((t + a).powi(2) + e) * (1.0 + RELATIVE_MARGIN);
    Some(
        q.iter()
            .enumerate()
            .filter(|&(_, &v)| v <= cut)
            .map(|(i, _)| i)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::{Embeddings, ScoreKind, Scoring, score_excluding, score_prepared};
    use crate::soart3::Orders;

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Roughly normal (sum of uniforms).
        fn normal(&mut self) -> f64 {
            (0..4).map(|_| self.next()).sum::<f64>() - 2.0
        }
    }

    /// `n` references around a few centres, with norms from 0.05 to 20, exact duplicates
    /// (ties), one zero vector and one a scaled copy of another.
    fn references(n: usize, dim: usize, seed: u64) -> Embeddings {
        let mut rng = Rng(seed);
        let centres: Vec<Vec<f64>> = (0..8)
            .map(|_| (0..dim).map(|_| rng.normal()).collect())
            .collect();
        let mut data = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = &centres[i % centres.len()];
            let scale = [1.0, 0.05, 3.0, 20.0][i % 4] * (0.5 + rng.next());
            data.extend(c.iter().map(|v| ((v + 0.3 * rng.normal()) * scale) as f32));
        }
        for (dst, src) in [(3usize, 1usize), (n - 1, 1), (n / 2, 7)] {
            let row: Vec<f32> = data[src * dim..(src + 1) * dim].to_vec();
            data[dst * dim..(dst + 1) * dim].copy_from_slice(&row);
        }
        data[5 * dim..6 * dim].fill(0.0);
        let row: Vec<f32> = data[9 * dim..10 * dim].iter().map(|v| v * 2.5).collect();
        data[11 * dim..12 * dim].copy_from_slice(&row);
        Embeddings { dim, data }
    }

    fn settings() -> Vec<Scoring> {
        let mut all = Vec::new();
        for orders in [Orders::DEFAULT, Orders::LEGACY] {
            for kind in [ScoreKind::Eta, ScoreKind::Gamma] {
                for k in [1, 3, usize::MAX] {
                    all.push(Scoring {
                        kind,
                        k,
                        orders,
                        threshold: 1.0,
                    });
                }
            }
        }
        all
    }

    /// Frames: references themselves (exact ties, residual zero), references plus small and
    /// large noise, scaled references, fresh random vectors.
    fn frames(refs: &Embeddings, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = Rng(seed);
        let mut out = Vec::new();
        for i in [0usize, 1, 3, 5, 9, 11, refs.len() / 2, refs.len() - 1] {
            let x = refs.row(i);
            out.push(x.to_vec());
            for noise in [1e-6, 1e-3, 0.3] {
                out.push(
                    x.iter()
                        .map(|v| v + (noise * rng.normal()) as f32)
                        .collect(),
                );
            }
            out.push(x.iter().map(|v| v * -0.7).collect());
        }
        for _ in 0..6 {
            out.push((0..refs.dim).map(|_| (3.0 * rng.normal()) as f32).collect());
        }
        out
    }

    fn assert_same(refs: &Embeddings, seed: u64) {
        let prep = Prepared::new(refs);
        let mut pruned = 0usize;
        for s in settings() {
            for (f, y) in frames(refs, seed).iter().enumerate() {
                for skip in [None, Some(1), Some(f % refs.len())] {
                    let slow = score_excluding(refs, y, &s, skip);
                    let fast = score_prepared(refs, &prep, y, &s, skip);
                    assert_eq!(fast, slow, "frame {f}, skip {skip:?}, {s:?}");
                    if let Some(c) = candidates(refs, &prep, y, &s, skip) {
                        assert!(c.len() < refs.len() / 2, "{} candidates", c.len());
                        pruned += 1;
                    }
                }
            }
        }
        assert!(pruned > 0, "the prefilter never applied");
    }

    #[test]
    fn same_result_as_the_reference_path_on_1k_references() {
        assert_same(&references(1_000, 64, 1), 2);
        // a dimension that is not a multiple of the lanes
        assert_same(&references(1_000, 61, 3), 4);
    }

    #[test]
    fn same_result_as_the_reference_path_on_10k_references() {
        assert_same(&references(10_000, 64, 5), 6);
    }

    #[test]
    fn covers_only_euclidean_eta_and_small_k() {
        let refs = references(100, 8, 7);
        let prep = Prepared::new(&refs);
        let y = refs.row(2).to_vec();
        let mut s = Scoring {
            kind: ScoreKind::Eta,
            k: 1,
            orders: Orders::DEFAULT,
            threshold: 0.0,
        };
        assert!(candidates(&refs, &prep, &y, &s, None).is_some());
        s.k = 30;
        assert!(candidates(&refs, &prep, &y, &s, None).is_none());
        s.k = 1;
        s.kind = ScoreKind::Gamma;
        assert!(candidates(&refs, &prep, &y, &s, None).is_none());
        s.kind = ScoreKind::Eta;
        s.orders = Orders::LEGACY;
        assert!(candidates(&refs, &prep, &y, &s, None).is_none());
        s.orders = Orders::DEFAULT;
        let inf = vec![f32::INFINITY; 8];
        assert!(candidates(&refs, &prep, &inf, &s, None).is_none());
        let nan = vec![f32::NAN; 8];
        assert!(candidates(&refs, &prep, &nan, &s, None).is_none());
    }

    #[test]
    fn dot_is_close_to_the_sequential_sum() {
        let refs = references(100, 67, 9);
        let y: Vec<f64> = refs.row(3).iter().map(|&v| f64::from(v)).collect();
        for x in refs.rows() {
            let want: f64 = x.iter().zip(&y).map(|(&a, b)| f64::from(a) * b).sum();
            assert!((dot(x, &y) - want).abs() <= 1e-12 * want.abs().max(1.0));
        }
    }
}
