//! The exact prefilter of nearest-reference scoring: one streaming `f32` pass over the
//! references (SIMD where the CPU has it) that finds which references can be among the `k`
//! nearest, so that only those few are scored by the reference `f64` SOART3 code
//! (`soart3::soart3`). The result is bit for bit the reference implementation's. Pure: no I/O.
//!
//! For every reference the pass computes, in `f32`, `x·y`, `Σ|xᵢyᵢ|`, then `beta` (in `f64`
//! from the precomputed `x·x`) and the Minkowski sums of the residual `y − beta·x` for the
//! orders the score needs. Each norm `ñ` carries a rigorous error bound `m` (below), so the
//! exact norm `n` lies in `[ñ − m, ñ + m]`; the score is monotone in the key `n_eta` (eta) or
//! `(1 + n_eta)/(1 + n_gamma)` (gamma), so each reference gets a key interval `[lo, hi]`. With
//! `H` the `k`-th smallest `hi`, the `k` nearest references all have `lo ≤ H`; every
//! reference with `lo > H·(1 + 1e-9)` is provably farther than `k` others by more than the
//! rounding of the `f64` code, so it cannot change the score, the nearest index or a tie. The
//! caller scores the candidates, in index order, with the reference code path.
//!
//! **The bound.** With `u = 2⁻²⁴` (`f32` unit roundoff), `d` the dimension and
//! `γ = 1.01·(d + 2)·u`: the computed `x·y` is within `γ·Σ|xᵢyᵢ|`, so `beta` is within
//! `E_β = γ·Σ|xᵢyᵢ|/(x·x + ε) + 2u·|beta|` (its own rounding and the cast to `f32`). Each
//! residual element is then within `eᵢ = E_β·|xᵢ| + 2u·(|yᵢ| + |beta·xᵢ|)`, and by the
//! triangle inequality any `p ≥ 1` norm of the residual moves by at most `‖e‖_p ≤ ‖e‖₁ =
//! E_β·‖x‖₁ + 2u·(‖y‖₁ + |beta|·‖x‖₁)` (`‖x‖₁` is precomputed). Computing `Σ|rᵢ|ᵖ` in `f32`
//! (at most `p` products per term, `d` positive terms) and its root in `f64` adds at most
//! `(d + 8)·u` relative, and underflow at most `(d·2⁻¹²⁶)^(1/p)`. The margin is twice the sum.
//!
//! Covered: orders 1, 2, 4 and 6 (the products above; other orders use `powf`, where the
//! reference path scores alone), `k` up to 64, finite frames and references. Anything else
//! returns `None`.

use crate::score::{Embeddings, Nearest, ScoreError, ScoreKind, Scored, Scoring, score_excluding};
use crate::soart3::EPSILON;
use crate::soart3::soart3;

/// Unit roundoff of `f32`.
const U: f64 = f32::EPSILON as f64 / 2.0;

/// Beyond this `k` (or a quarter of the set) pruning saves little: the reference path scores.
const MAX_K: usize = 64;

/// Relative gap between the cut and a reference left out: far above the rounding of the
/// reference code's `f64` `ln_1p` and difference, so that no tie can straddle the cut.
const RELATIVE_MARGIN: f64 = 1e-9;

/// Per-reference values computed once per reference set: `1/(x·x + ε)` and `‖x‖₁`, in `f64`
/// (16 bytes next to the row's `4·dim`).
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    per_ref: Vec<[f64; 2]>,
    /// Every value of every reference finite (else the bounds do not hold).
    usable: bool,
}

impl Prepared {
    pub fn new(refs: &Embeddings) -> Self {
        let mut usable = true;
        let per_ref = refs
            .rows()
            .map(|x| {
                let xx: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                let x1: f64 = x.iter().map(|&v| f64::from(v).abs()).sum();
                usable &= xx.is_finite() && x1.is_finite();
                [1.0 / (xx + EPSILON), x1]
            })
            .collect();
        Self { per_ref, usable }
    }

    pub fn len(&self) -> usize {
        self.per_ref.len()
    }

    pub fn is_empty(&self) -> bool {
        self.per_ref.is_empty()
    }
}

/// The order as the pass computes it: 1, 2, 4 or 6 (products only), else `None`.
fn order(p: f64) -> Option<u32> {
    [1u32, 2, 4, 6].into_iter().find(|&q| f64::from(q) == p)
}

/// Whether the prefilter covers these settings (otherwise the reference path scores alone).
pub fn covers(s: &Scoring) -> bool {
    order(s.orders.eta_p).is_some()
        && (s.kind == ScoreKind::Eta || order(s.orders.gamma_p).is_some())
}

/// Lanes of the pass: eight `f32` (one AVX2 register), independent accumulators.
const LANES: usize = 8;

/// References handled together, phase by phase (see [`scan`]).
const BLOCK: usize = 8;

/// `r^P` for `r ≥ 0` by products (`P = 0`: the order is not needed, nothing is summed).
#[inline(always)]
fn pow<const P: u32>(r: f32) -> f32 {
    match P {
        1 => r,
        2 => r * r,
        4 => {
            let a = r * r;
            a * a
        }
        6 => {
            let a = r * r;
            a * a * a
        }
        _ => 0.0,
    }
}

/// `s^(1/P)` in `f64`.
#[inline(always)]
fn root<const P: u32>(s: f64) -> f64 {
    match P {
        1 => s,
        2 => s.sqrt(),
        4 => s.sqrt().sqrt(),
        _ => s.powf(1.0 / f64::from(P)),
    }
}

#[inline(always)]
fn hsum(v: [f32; LANES]) -> f32 {
    ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
}

/// `(x·y, Σ|xᵢyᵢ|)` in `f32`, eight lanes.
#[inline(always)]
fn dots(x: &[f32], y: &[f32]) -> (f32, f32) {
    let (xc, xt) = x.as_chunks::<LANES>();
    let (yc, yt) = y.as_chunks::<LANES>();
    let (mut s, mut a) = ([0.0f32; LANES], [0.0f32; LANES]);
    for (xs, ys) in xc.iter().zip(yc) {
        for l in 0..LANES {
            let p = xs[l] * ys[l];
            s[l] += p;
            a[l] += p.abs();
        }
    }
    let (st, at) = dots_tail(xt, yt);
    (hsum(s) + st, hsum(a) + at)
}

/// [`dots`] of the elements after the last full lane group.
#[inline(always)]
fn dots_tail(xt: &[f32], yt: &[f32]) -> (f32, f32) {
    let (mut st, mut at) = (0.0f32, 0.0f32);
    for (&xi, &yi) in xt.iter().zip(yt) {
        let p = xi * yi;
        st += p;
        at += p.abs();
    }
    (st, at)
}

/// The residual `y − b·x`: `(Σ|rᵢ|^P1, Σ|rᵢ|^P2)` in `f32`, eight lanes.
#[inline(always)]
fn sums<const P1: u32, const P2: u32, const FMA: bool>(x: &[f32], y: &[f32], b: f32) -> (f32, f32) {
    let (xc, xt) = x.as_chunks::<LANES>();
    let (yc, yt) = y.as_chunks::<LANES>();
    let (mut s1, mut s2) = ([0.0f32; LANES], [0.0f32; LANES]);
    for (xs, ys) in xc.iter().zip(yc) {
        for l in 0..LANES {
            let r = residual::<FMA>(xs[l], ys[l], b);
            s1[l] += pow::<P1>(r);
            if P2 != 0 {
                s2[l] += pow::<P2>(r);
            }
        }
    }
    let (t1, t2) = sums_tail::<P1, P2, FMA>(xt, yt, b);
    (hsum(s1) + t1, hsum(s2) + t2)
}

/// `|y − b·x|`, with one rounding when `FMA`.
#[inline(always)]
fn residual<const FMA: bool>(x: f32, y: f32, b: f32) -> f32 {
    if FMA {
        (-b).mul_add(x, y).abs()
    } else {
        (y - b * x).abs()
    }
}

/// [`sums`] of the elements after the last full lane group.
#[inline(always)]
fn sums_tail<const P1: u32, const P2: u32, const FMA: bool>(
    xt: &[f32],
    yt: &[f32],
    b: f32,
) -> (f32, f32) {
    let (mut t1, mut t2) = (0.0f32, 0.0f32);
    for (&xi, &yi) in xt.iter().zip(yt) {
        let r = residual::<FMA>(xi, yi, b);
        t1 += pow::<P1>(r);
        if P2 != 0 {
            t2 += pow::<P2>(r);
        }
    }
    (t1, t2)
}

/// What one frame's pass needs besides the orders.
struct Pass<'a> {
    refs: &'a Embeddings,
    prep: &'a Prepared,
    y: &'a [f32],
    /// `‖y‖₁`
    y1: f64,
    k: usize,
    skip: Option<usize>,
}

/// The `k` smallest upper bounds so far (ascending) and the references whose lower bound is
/// within the `k`-th; the cut only falls as the pass goes on.
struct Cut {
    k: usize,
    highs: Vec<f64>,
    candidates: Vec<(usize, f64)>,
}

impl Cut {
    fn limit(&self) -> f64 {
        if self.highs.len() < self.k {
            f64::INFINITY
        } else {
            self.highs[self.k - 1] * (1.0 + RELATIVE_MARGIN) + f64::MIN_POSITIVE
        }
    }

    #[inline(always)]
    fn push(&mut self, i: usize, lo: f64, hi: f64) {
        // A bound that is not a number is no bound.
        let lo = if lo.is_nan() { f64::NEG_INFINITY } else { lo };
        let hi = if hi.is_nan() { f64::INFINITY } else { hi };
        if lo <= self.limit() {
            self.candidates.push((i, lo));
        }
        if self.highs.len() < self.k || hi < self.highs[self.highs.len() - 1] {
            let pos = self.highs.partition_point(|&w| w <= hi);
            self.highs.insert(pos, hi);
            self.highs.truncate(self.k);
        }
    }

    fn finish(self) -> Vec<usize> {
        let limit = self.limit();
        self.candidates
            .into_iter()
            .filter(|&(_, lo)| lo <= limit)
            .map(|(i, _)| i)
            .collect()
    }
}

/// The pass for orders `P1` (eta) and `P2` (gamma; 0 when the score is eta).
#[inline(always)]
fn scan<const P1: u32, const P2: u32, D, S>(p: &Pass, dots: D, sums: S) -> Vec<usize>
where
    D: Fn(&[f32], &[f32]) -> (f32, f32),
    S: Fn(&[f32], &[f32], f32) -> (f32, f32),
{
    let d = p.refs.dim as f64;
    let gamma_d = 1.01 * (d + 2.0) * U;
    let relative = (d + 8.0) * U;
    let underflow = |q: u32| (d * f64::from(f32::MIN_POSITIVE)).powf(1.0 / f64::from(q.max(1)));
    let (under1, under2) = (underflow(P1), underflow(P2));
    let mut cut = Cut {
        k: p.k,
        highs: Vec::with_capacity(p.k + 1),
        candidates: Vec::new(),
    };
    // Blocks of references, each phase over the whole block: the block's dependency chains
    // (dot products, then beta, then the residual sums) are independent, so they overlap.
    let dim = p.refs.dim;
    let rows = p
        .refs
        .data
        .chunks(BLOCK * dim)
        .zip(p.prep.per_ref.chunks(BLOCK));
    for (b, (block, per_ref)) in rows.enumerate() {
        let n = per_ref.len();
        let row = |j: usize| &block[j * dim..(j + 1) * dim];
        let mut dot = [(0.0f32, 0.0f32); BLOCK];
        for (j, d) in dot.iter_mut().enumerate().take(n) {
            *d = dots(row(j), p.y);
        }
        let mut beta = [0.0f64; BLOCK];
        let mut sum = [(0.0f32, 0.0f32); BLOCK];
        for j in 0..n {
            beta[j] = (f64::from(dot[j].0) + EPSILON) * per_ref[j][0];
            sum[j] = sums(row(j), p.y, beta[j] as f32);
        }
        for j in 0..n {
            let i = b * BLOCK + j;
            if Some(i) == p.skip {
                continue;
            }
            let [inv, x1] = per_ref[j];
            let (beta, axy) = (beta[j], f64::from(dot[j].1));
            let e_beta = gamma_d * axy * (1.0 + gamma_d) * inv + 3.0 * U * beta.abs();
            // How far any residual norm can be from the exact one (the module's bound).
            let e1 = (e_beta * x1 + 2.0 * U * (p.y1 + beta.abs() * x1)) * (1.0 + 4.0 * U);
            let n1 = root::<P1>(f64::from(sum[j].0));
            let m1 = 2.0 * (e1 + relative * n1 + under1);
            if P2 == 0 {
                cut.push(i, n1 - m1, n1 + m1);
            } else {
                let n2 = root::<P2>(f64::from(sum[j].1));
                let m2 = 2.0 * (e1 + relative * n2 + under2);
                // `lo > limit` (most references) also means `hi > limit`: nothing to record,
                // and no division to find out.
                let (top, bottom) = (1.0 + (n1 - m1).max(0.0), 1.0 + n2 + m2);
                if top > cut.limit() * bottom {
                    continue;
                }
                let hi = (1.0 + n1 + m1) / (1.0 + (n2 - m2).max(0.0));
                cut.push(i, top / bottom, hi);
            }
        }
    }
    cut.finish()
}

/// The AVX2 + FMA kernels: the same sums as [`dots`] and [`sums`], eight lanes per register.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::LANES;

    /// How far ahead of the row being read the next rows are fetched, in `f32`.
    const AHEAD: usize = 2048;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn hsum(v: __m256) -> f32 {
        let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let h = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps::<0b01>(h, h)))
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn pow<const P: u32>(r: __m256) -> __m256 {
        match P {
            1 => r,
            2 => _mm256_mul_ps(r, r),
            4 => {
                let a = _mm256_mul_ps(r, r);
                _mm256_mul_ps(a, a)
            }
            _ => {
                let a = _mm256_mul_ps(r, r);
                _mm256_mul_ps(_mm256_mul_ps(a, a), a)
            }
        }
    }

    /// `(x·y, Σ|xᵢyᵢ|)`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn dots(x: &[f32], y: &[f32]) -> (f32, f32) {
        let (xc, xt) = x.as_chunks::<LANES>();
        let (yc, yt) = y.as_chunks::<LANES>();
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let (mut s, mut a) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (c, (xs, ys)) in xc.iter().zip(yc).enumerate() {
            if c % 2 == 0 {
                // A hint, never a read: an address past the references is harmless.
                _mm_prefetch::<_MM_HINT_T0>(xs.as_ptr().wrapping_add(AHEAD).cast());
            }
            // SAFETY: each chunk is eight f32; unaligned loads read exactly those.
            let (xv, yv) = unsafe { (_mm256_loadu_ps(xs.as_ptr()), _mm256_loadu_ps(ys.as_ptr())) };
            let p = _mm256_mul_ps(xv, yv);
            s = _mm256_add_ps(s, p);
            a = _mm256_add_ps(a, _mm256_and_ps(p, abs));
        }
        let (st, at) = super::dots_tail(xt, yt);
        (hsum(s) + st, hsum(a) + at)
    }

    /// `(Σ|rᵢ|^P1, Σ|rᵢ|^P2)` of `r = y − b·x` (`P2 = 0`: not summed).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn sums<const P1: u32, const P2: u32>(x: &[f32], y: &[f32], b: f32) -> (f32, f32) {
        let (xc, xt) = x.as_chunks::<LANES>();
        let (yc, yt) = y.as_chunks::<LANES>();
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let nb = _mm256_set1_ps(-b);
        let (mut s1, mut s2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (xs, ys) in xc.iter().zip(yc) {
            // SAFETY: each chunk is eight f32; unaligned loads read exactly those.
            let (xv, yv) = unsafe { (_mm256_loadu_ps(xs.as_ptr()), _mm256_loadu_ps(ys.as_ptr())) };
            let r = _mm256_and_ps(_mm256_fmadd_ps(nb, xv, yv), abs);
            s1 = _mm256_add_ps(s1, pow::<P1>(r));
            if P2 != 0 {
                s2 = _mm256_add_ps(s2, pow::<P2>(r));
            }
        }
        let (t1, t2) = super::sums_tail::<P1, P2, true>(xt, yt, b);
        (hsum(s1) + t1, hsum(s2) + t2)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn scan<const P1: u32, const P2: u32>(p: &super::Pass) -> Vec<usize> {
        super::scan::<P1, P2, _, _>(p, |x, y| dots(x, y), |x, y, b| sums::<P1, P2>(x, y, b))
    }
}

/// Which instructions the pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// What the CPU has: AVX2 and FMA when present.
    Best,
    /// The build's baseline (SSE2 on x86-64).
    Baseline,
}

fn run<const P1: u32, const P2: u32>(p: &Pass, isa: Isa) -> Vec<usize> {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Best && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { avx2::scan::<P1, P2>(p) };
    }
    let _ = isa;
    scan::<P1, P2, _, _>(p, dots, sums::<P1, P2, false>)
}

/// Scores `y` against the references except `skip`, as the daemon scores: the same result as
/// [`score_excluding`] (the reference implementation), bit for bit. The pass picks the
/// references that can matter, and only those are scored, in index order, by the same code;
/// settings it does not cover are scored by [`score_excluding`].
pub fn score(
    refs: &Embeddings,
    prep: &Prepared,
    y: &[f32],
    s: &Scoring,
    skip: Option<usize>,
) -> Result<Scored, ScoreError> {
    let Some(candidates) = candidates(refs, prep, y, s, skip) else {
        return score_excluding(refs, y, s, skip);
    };
    let mut best = Nearest::new(s.k.clamp(1, refs.len().max(1)));
    for i in candidates {
        best.push(i, soart3(refs.row(i), y, s.orders), s.kind);
    }
    best.finish(s.threshold)
}

/// The references that can be among the `k` nearest of `y` (ascending indices), or `None`
/// when the prefilter does not apply: settings it does not cover, `k` too large, a frame or
/// references that are not finite, fewer than `k` references.
pub fn candidates(
    refs: &Embeddings,
    prep: &Prepared,
    y: &[f32],
    s: &Scoring,
    skip: Option<usize>,
) -> Option<Vec<usize>> {
    candidates_with(refs, prep, y, s, skip, Isa::Best)
}

/// [`candidates`] with the instruction set chosen (the tests and benchmarks run both).
pub fn candidates_with(
    refs: &Embeddings,
    prep: &Prepared,
    y: &[f32],
    s: &Scoring,
    skip: Option<usize>,
    isa: Isa,
) -> Option<Vec<usize>> {
    let n = refs.len();
    let k = s.k.clamp(1, n.max(1));
    if !covers(s) || k > MAX_K || 4 * k > n || prep.len() != n || y.len() != refs.dim {
        return None;
    }
    if !prep.usable || !y.iter().all(|v| v.is_finite()) {
        return None;
    }
    let y1: f64 = y.iter().map(|&v| f64::from(v).abs()).sum();
    let p = Pass {
        refs,
        prep,
        y,
        y1,
        k,
        skip,
    };
    let p1 = order(s.orders.eta_p)?;
    let p2 = match s.kind {
        ScoreKind::Eta => 0,
        ScoreKind::Gamma => order(s.orders.gamma_p)?,
    };
    macro_rules! dispatch {
        ($($a:literal, $b:literal);*) => {
            match (p1, p2) {
                $(($a, $b) => run::<$a, $b>(&p, isa),)*
                _ => return None,
            }
        };
    }
    Some(dispatch!(
        1, 0; 1, 1; 1, 2; 1, 4; 1, 6;
        2, 0; 2, 1; 2, 2; 2, 4; 2, 6;
        4, 0; 4, 1; 4, 2; 4, 4; 4, 6;
        6, 0; 6, 1; 6, 2; 6, 4; 6, 6
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::{Embeddings, ScoreKind, Scoring, score_excluding};
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
        let mut scored = 0usize;
        for s in settings() {
            for (f, y) in frames(refs, seed).iter().enumerate() {
                for skip in [None, Some(1), Some(f % refs.len())] {
                    let slow = score_excluding(refs, y, &s, skip);
                    let fast = score(refs, &prep, y, &s, skip);
                    assert_eq!(fast, slow, "frame {f}, skip {skip:?}, {s:?}");
                    for isa in [Isa::Best, Isa::Baseline] {
                        let Some(c) = candidates_with(refs, &prep, y, &s, skip, isa) else {
                            continue;
                        };
                        let mut best = Nearest::new(s.k.clamp(1, refs.len()));
                        for &i in &c {
                            best.push(i, soart3(refs.row(i), y, s.orders), s.kind);
                        }
                        assert_eq!(best.finish(s.threshold), slow, "{isa:?} frame {f}, {s:?}");
                        scored += c.len();
                        pruned += 1;
                    }
                }
            }
        }
        assert!(pruned > 0, "the prefilter never applied");
        // On average, a handful of references are scored in full, not the set.
        assert!(
            scored / pruned < refs.len() / 10,
            "{} per frame",
            scored / pruned
        );
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
    fn covers_orders_1_2_4_6_and_small_k() {
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
        for kind in [ScoreKind::Eta, ScoreKind::Gamma] {
            s.kind = kind;
            s.orders = Orders::LEGACY;
            assert!(candidates(&refs, &prep, &y, &s, None).is_some());
            s.orders = Orders {
                eta_p: 3.0,
                gamma_p: 6.0,
            };
            assert!(candidates(&refs, &prep, &y, &s, None).is_none());
        }
        // gamma's order only matters when gamma is the score
        s.orders = Orders {
            eta_p: 2.0,
            gamma_p: 5.0,
        };
        s.kind = ScoreKind::Eta;
        assert!(candidates(&refs, &prep, &y, &s, None).is_some());
        s.kind = ScoreKind::Gamma;
        assert!(candidates(&refs, &prep, &y, &s, None).is_none());
        s.orders = Orders::DEFAULT;
        let inf = vec![f32::INFINITY; 8];
        assert!(candidates(&refs, &prep, &inf, &s, None).is_none());
        let nan = vec![f32::NAN; 8];
        assert!(candidates(&refs, &prep, &nan, &s, None).is_none());
    }

    #[test]
    fn references_that_are_not_finite_fall_back() {
        let mut refs = references(100, 8, 11);
        refs.data[17] = f32::INFINITY;
        let prep = Prepared::new(&refs);
        let s = Scoring {
            kind: ScoreKind::Eta,
            k: 1,
            orders: Orders::DEFAULT,
            threshold: 0.0,
        };
        assert!(candidates(&refs, &prep, refs.row(4), &s, None).is_none());
    }

    #[test]
    fn the_two_instruction_sets_agree_on_the_sums() {
        let refs = references(50, 67, 9);
        let y = refs.row(3);
        for x in refs.rows() {
            let (xy, axy) = dots(x, y);
            let want: f64 = x
                .iter()
                .zip(y)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            let abs: f64 = x
                .iter()
                .zip(y)
                .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
                .sum();
            assert!(
                (f64::from(xy) - want).abs() <= 1.01 * 69.0 * U * abs,
                "{xy} vs {want}"
            );
            assert!((f64::from(axy) - abs).abs() <= 1.01 * 69.0 * U * abs);
            let (a, b) = sums::<2, 6, false>(x, y, 0.5);
            let (c, e) = sums::<2, 6, true>(x, y, 0.5);
            assert!((a - c).abs() <= 1e-4 * a.abs().max(1e-30), "{a} {c}");
            assert!((b - e).abs() <= 1e-4 * b.abs().max(1e-30), "{b} {e}");
        }
    }
}
