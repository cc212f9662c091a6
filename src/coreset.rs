//! Coreset enrollment: a representative subset of the enrolled good parts, so that a set
//! enrolled from 100,000 parts scores at the speed of `n` references. Pure: no I/O.
//!
//! **Greedy k-center** (farthest-point selection, as PatchCore builds its memory bank): start at
//! the embedding nearest the mean of all embeddings, then repeatedly add the embedding whose
//! distance to its nearest selected one is the largest. Ties go to the lowest row index, so the
//! selection is deterministic, and the selection for `n` is the first `n` rows of the selection
//! for any larger `n`. A running min-distance array makes it O(n·M) distance evaluations for `M`
//! embeddings, with O(M) memory (no M×M matrix).
//!
//! **Distance** = the score the daemon uses: the SOART3 eta (or gamma) with the set's orders, of
//! the candidate as a frame against the selected embedding as a reference. The covering radius
//! of the selection (the largest distance from an embedding to its nearest selected one) is then
//! exactly the largest k = 1 score an enrolled good part can get against the coreset: the
//! quantity k-center minimises (within a factor of 2 of the optimum for a metric) is the one
//! the threshold is read from. (SOART3 is not symmetric and not a metric, so the factor-2
//! guarantee is not claimed; the selection is still the farthest-point heuristic.)
//!
//! The threshold of a coreset set is proposed from the leave-one-out scores of **all** enrolled
//! embeddings against the selected ones ([`leave_one_out_against`]), so the false-reject target
//! holds for the whole good population, not only for the selected parts.

use crate::score::{Embeddings, ScoreKind, Scoring};
use crate::soart3::{Orders, soart3};

/// The value of the `coreset` metadata key of a set selected by [`k_center`].
pub const METHOD: &str = "k-center";

/// The distance used for the selection: the score of `frame` against `reference`.
fn distance(reference: &[f32], frame: &[f32], kind: ScoreKind, orders: Orders) -> f64 {
    let m = soart3(reference, frame, orders);
    match kind {
        ScoreKind::Eta => m.eta,
        ScoreKind::Gamma => m.gamma,
    }
}

/// A k-center selection: rows of the enrolled embeddings, in the order they were picked.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub rows: Vec<usize>,
    /// The largest distance from an unselected embedding to its nearest selected one (0 when
    /// every embedding is selected).
    pub radius: f64,
}

/// The row nearest the mean of all rows (ties: the lowest index); `None` for no rows.
fn nearest_to_mean(all: &Embeddings, kind: ScoreKind, orders: Orders) -> Option<usize> {
    let count = all.len();
    if count == 0 {
        return None;
    }
    let mut sum = vec![0.0f64; all.dim];
    for row in all.rows() {
        sum.iter_mut()
            .zip(row)
            .for_each(|(s, &v)| *s += f64::from(v));
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / count as f64) as f32).collect();
    let mut best: Option<(usize, f64)> = None;
    for (i, row) in all.rows().enumerate() {
        let d = distance(&mean, row, kind, orders);
        if best.is_none_or(|(_, b)| d.total_cmp(&b).is_lt()) {
            best = Some((i, d));
        }
    }
    best.map(|(i, _)| i)
}

/// Greedy k-center selection of `n` rows of `all` (all rows, in index order, when `n` is at
/// least their count). `kind` and `orders` are the scoring's.
pub fn k_center(all: &Embeddings, n: usize, kind: ScoreKind, orders: Orders) -> Selection {
    let count = all.len();
    if n >= count {
        return Selection {
            rows: (0..count).collect(),
            radius: 0.0,
        };
    }
    let Some(start) = nearest_to_mean(all, kind, orders).filter(|_| n > 0) else {
        return Selection {
            rows: Vec::new(),
            radius: f64::INFINITY,
        };
    };
    let mut selected = vec![false; count];
    let mut min_distance = vec![f64::INFINITY; count];
    let mut rows = Vec::with_capacity(n);
    let mut last = start;
    loop {
        selected[last] = true;
        rows.push(last);
        // Fold the newest selected row into the running min-distances, and find the farthest
        // unselected row (ties: the lowest index) in the same pass.
        let reference = all.row(last);
        let mut farthest: Option<(usize, f64)> = None;
        for (i, frame) in all.rows().enumerate() {
            if selected[i] {
                continue;
            }
            let d = distance(reference, frame, kind, orders);
            if d.total_cmp(&min_distance[i]).is_lt() {
                min_distance[i] = d;
            }
            if farthest.is_none_or(|(_, f)| min_distance[i].total_cmp(&f).is_gt()) {
                farthest = Some((i, min_distance[i]));
            }
        }
        match farthest {
            Some((next, _)) if rows.len() < n => last = next,
            Some((_, radius)) => return Selection { rows, radius },
            None => return Selection { rows, radius: 0.0 },
        }
    }
}

/// The selected rows of `all`, as a reference set's embeddings (in selection order).
pub fn subset(all: &Embeddings, rows: &[usize]) -> Embeddings {
    let mut data = Vec::with_capacity(rows.len() * all.dim);
    for &r in rows {
        data.extend_from_slice(all.row(r));
    }
    Embeddings { dim: all.dim, data }
}

/// The score of every row of `all` against the references `rows` selected from it (the
/// finite ones, in row order), each excluding its own reference when it was selected: the
/// leave-one-out scores of the whole enrolled population against the coreset. With every row
/// selected this is [`crate::score::leave_one_out`].
pub fn leave_one_out_against(all: &Embeddings, rows: &[usize], s: &Scoring) -> Vec<f64> {
    let refs = subset(all, rows);
    let prepared = crate::prefilter::Prepared::new(&refs);
    let mut own = vec![None; all.len()];
    for (position, &r) in rows.iter().enumerate() {
        own[r] = Some(position);
    }
    (0..all.len())
        .filter_map(|i| crate::prefilter::score(&refs, &prepared, all.row(i), s, own[i]).ok())
        .map(|r| r.score)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score;

    /// `count` deterministic pseudo-random rows of dimension `dim` (a fixed LCG).
    fn random(count: usize, dim: usize, seed: u64) -> Embeddings {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let data = (0..count * dim)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
            })
            .collect();
        Embeddings { dim, data }
    }

    const ORDERS: Orders = Orders::DEFAULT;

    /// The covering radius of `rows`, by brute force.
    fn radius(all: &Embeddings, rows: &[usize], kind: ScoreKind) -> f64 {
        (0..all.len())
            .filter(|i| !rows.contains(i))
            .map(|i| {
                rows.iter()
                    .map(|&r| distance(all.row(r), all.row(i), kind, ORDERS))
                    .fold(f64::INFINITY, f64::min)
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn selects_n_distinct_rows() {
        let all = random(60, 8, 1);
        for n in [1, 2, 7, 30, 59] {
            let s = k_center(&all, n, ScoreKind::Eta, ORDERS);
            assert_eq!(s.rows.len(), n);
            let mut sorted = s.rows.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), n, "repeated rows: {:?}", s.rows);
            assert!(s.rows.iter().all(|&r| r < 60));
        }
    }

    #[test]
    fn duplicates_still_give_distinct_rows() {
        // Every row the same: all distances are zero; still n distinct rows, lowest first.
        let all = Embeddings {
            dim: 2,
            data: [0.6f32, 0.8].repeat(10),
        };
        let s = k_center(&all, 4, ScoreKind::Eta, ORDERS);
        assert_eq!(s.rows, vec![0, 1, 2, 3]);
        assert!(s.radius.abs() < 1e-6, "{s:?}");
    }

    #[test]
    fn n_at_least_count_selects_all() {
        let all = random(12, 4, 2);
        for n in [12, 13, 1000] {
            let s = k_center(&all, n, ScoreKind::Gamma, Orders::LEGACY);
            assert_eq!(s.rows, (0..12).collect::<Vec<_>>());
            assert_eq!(s.radius, 0.0);
        }
        assert!(k_center(&all, 0, ScoreKind::Eta, ORDERS).rows.is_empty());
    }

    #[test]
    fn radius_is_non_increasing_as_n_grows_and_selections_nest() {
        let all = random(80, 6, 3);
        for kind in [ScoreKind::Eta, ScoreKind::Gamma] {
            let full = k_center(&all, 79, kind, ORDERS);
            let mut previous = f64::INFINITY;
            for n in 1..80 {
                let s = k_center(&all, n, kind, ORDERS);
                assert_eq!(s.rows, full.rows[..n], "n = {n}: not a prefix");
                let r = radius(&all, &s.rows, kind);
                assert!((s.radius - r).abs() < 1e-12, "n = {n}: {} vs {r}", s.radius);
                assert!(r <= previous, "n = {n}: radius {r} > {previous}");
                previous = r;
            }
        }
    }

    #[test]
    fn each_pick_is_the_farthest_from_the_picks_before() {
        let all = random(40, 5, 4);
        let s = k_center(&all, 10, ScoreKind::Eta, ORDERS);
        for j in 1..s.rows.len() {
            let before = &s.rows[..j];
            let d = |i: usize| {
                before
                    .iter()
                    .map(|&r| distance(all.row(r), all.row(i), ScoreKind::Eta, ORDERS))
                    .fold(f64::INFINITY, f64::min)
            };
            let picked = d(s.rows[j]);
            for i in (0..40).filter(|i| !before.contains(i)) {
                assert!(
                    d(i) <= picked,
                    "pick {j}: row {i} is farther than {}",
                    s.rows[j]
                );
            }
        }
    }

    #[test]
    fn starts_near_the_mean_and_finds_every_cluster() {
        // Three tight clusters on the axes plus one point on the diagonal (nearest the mean):
        // three picks after the start are one per cluster.
        let mut data = Vec::new();
        for axis in 0..3 {
            for j in 0..5 {
                let mut v = [0.01 * j as f32; 3];
                v[axis] = 1.0;
                data.extend_from_slice(&v);
            }
        }
        data.extend_from_slice(&[1.0, 1.0, 1.0]);
        let all = Embeddings { dim: 3, data };
        let s = k_center(&all, 4, ScoreKind::Eta, ORDERS);
        assert_eq!(s.rows[0], 15, "{s:?}");
        let mut clusters: Vec<usize> = s.rows[1..].iter().map(|r| r / 5).collect();
        clusters.sort_unstable();
        assert_eq!(clusters, vec![0, 1, 2], "{s:?}");
    }

    #[test]
    fn deterministic() {
        let all = random(50, 7, 5);
        let a = k_center(&all, 17, ScoreKind::Gamma, Orders::LEGACY);
        let b = k_center(&all.clone(), 17, ScoreKind::Gamma, Orders::LEGACY);
        assert_eq!(a, b);
    }

    fn scoring(k: usize) -> Scoring {
        Scoring {
            kind: ScoreKind::Eta,
            k,
            orders: ORDERS,
            threshold: 0.0,
        }
    }

    #[test]
    fn leave_one_out_against_all_rows_is_plain_leave_one_out() {
        let all = random(30, 4, 6);
        let rows: Vec<usize> = (0..30).collect();
        for k in [1, 3] {
            assert_eq!(
                leave_one_out_against(&all, &rows, &scoring(k)),
                score::leave_one_out(&all, &scoring(k))
            );
        }
    }

    #[test]
    fn leave_one_out_against_a_subset_scores_everyone_and_skips_only_own_rows() {
        let all = random(30, 4, 7);
        let rows = k_center(&all, 6, ScoreKind::Eta, ORDERS).rows;
        let refs = subset(&all, &rows);
        let loo = leave_one_out_against(&all, &rows, &scoring(1));
        assert_eq!(loo.len(), 30);
        for (i, got) in loo.iter().enumerate() {
            let own = rows.iter().position(|&r| r == i);
            let expected = score::score_excluding(&refs, all.row(i), &scoring(1), own)
                .unwrap()
                .score;
            assert_eq!(*got, expected, "row {i}");
            // A selected row is never scored against itself (that would be 0).
            if own.is_some() {
                assert!(*got > 1e-3, "row {i}: {got}");
            }
        }
    }
}
