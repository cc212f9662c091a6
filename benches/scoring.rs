//! Scoring one frame against N synthetic references (unit-ish norms) with the shipped
//! encoders' settings (`small`: 64-dim, gamma with orders (1, 4), k = 3; `lite0`: 128-dim, eta
//! with order 1, k = 3): the reference path (`score::score`, SOART3 in `f64` per reference)
//! against the prefiltered one (`prefilter::score`), with the prefilter's best
//! instructions and with the baseline ones, next to a memory-bandwidth baseline that reads the
//! same bytes (a sum of the reference buffer). Throughput is in reference-dimensions
//! (elements), so criterion's "time" divided by N·dim is ns per reference-dimension, and new /
//! bandwidth is the ratio to bandwidth.
//!
//! `cargo bench --bench scoring -- --quick` runs 1k, 10k and 100k;
//! `INSPECTORD_BENCH_SMALL=1` only 1k and 10k (a CI smoke); `INSPECTORD_BENCH_1M=1` adds 1M.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use inspectord::prefilter::{self, Isa, Prepared};
use inspectord::score::{self, Embeddings, ScoreKind, Scoring};
use inspectord::soart3::Orders;

/// xorshift64*, roughly normal values (sum of four uniforms).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        (0..4).map(|_| self.uniform()).sum::<f64>() - 2.0
    }
}

/// References around 32 centres, each normalised to a norm between 0.8 and 1.2.
fn references(n: usize, dim: usize) -> Embeddings {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let centres: Vec<Vec<f64>> = (0..32)
        .map(|_| (0..dim).map(|_| rng.normal()).collect())
        .collect();
    let mut data = Vec::with_capacity(n * dim);
    for i in 0..n {
        let v: Vec<f64> = centres[i % 32]
            .iter()
            .map(|c| c + 0.5 * rng.normal())
            .collect();
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        let scale = (0.8 + 0.4 * rng.uniform()) / norm;
        data.extend(v.iter().map(|a| (a * scale) as f32));
    }
    Embeddings { dim, data }
}

/// A frame near a reference, as a good part would be.
fn frame(refs: &Embeddings) -> Vec<f32> {
    let mut rng = Rng(42);
    refs.row(refs.len() / 3)
        .iter()
        .map(|v| v + (0.05 * rng.normal()) as f32)
        .collect()
}

/// The bandwidth baseline: reads every byte of the references once (16 independent lanes).
fn sum(data: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for c in data.chunks_exact(16) {
        for (s, &v) in acc.iter_mut().zip(c) {
            *s += v;
        }
    }
    acc.iter().sum()
}

fn sizes() -> Vec<usize> {
    let mut sizes = vec![1_000, 10_000];
    if std::env::var_os("INSPECTORD_BENCH_SMALL").is_none() {
        sizes.push(100_000);
    }
    if std::env::var_os("INSPECTORD_BENCH_1M").is_some() {
        sizes.push(1_000_000);
    }
    sizes
}

/// The reference path's work for the candidates the prefilter picks, with the chosen ISA.
fn prefiltered(r: &Embeddings, prep: &Prepared, y: &[f32], s: &Scoring, isa: Isa) -> f64 {
    let c = prefilter::candidates_with(r, prep, y, s, None, isa).unwrap_or_default();
    c.iter()
        .map(|&i| inspectord::soart3::soart3(r.row(i), y, s.orders).eta)
        .fold(f64::INFINITY, f64::min)
}

fn scoring(c: &mut Criterion) {
    let shipped = [
        (
            "small",
            64,
            Scoring {
                kind: ScoreKind::Gamma,
                k: 3,
                orders: Orders::LEGACY,
                threshold: 1.0,
            },
        ),
        (
            "lite0",
            128,
            Scoring {
                kind: ScoreKind::Eta,
                k: 3,
                orders: Orders::LEGACY,
                threshold: 1.0,
            },
        ),
    ];
    for (name, dim, s) in shipped {
        let mut group = c.benchmark_group(format!("scoring_{name}"));
        for n in sizes() {
            let refs = references(n, dim);
            let prep = Prepared::new(&refs);
            let y = frame(&refs);
            // The two paths agree (the tests prove it more widely).
            assert_eq!(
                score::score(&refs, &y, &s),
                prefilter::score(&refs, &prep, &y, &s, None)
            );
            group.throughput(Throughput::Elements((n * dim) as u64));
            group.bench_with_input(BenchmarkId::new("bandwidth", n), &refs, |b, r| {
                b.iter(|| sum(black_box(&r.data)))
            });
            group.bench_with_input(BenchmarkId::new("new", n), &refs, |b, r| {
                b.iter(|| prefilter::score(r, &prep, black_box(&y), &s, None))
            });
            group.bench_with_input(BenchmarkId::new("new_baseline_isa", n), &refs, |b, r| {
                b.iter(|| prefiltered(r, &prep, black_box(&y), &s, Isa::Baseline))
            });
            if n <= 100_000 {
                group.bench_with_input(BenchmarkId::new("old", n), &refs, |b, r| {
                    b.iter(|| score::score(r, black_box(&y), &s))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, scoring);
criterion_main!(benches);
