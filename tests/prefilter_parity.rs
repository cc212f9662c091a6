//! The prefiltered scorer (`prefilter::score`) against the reference implementation
//! (`score::score_excluding`) on real data: the held-out images embedded by the shipped small
//! encoder (`inspectord enroll` on the test split), scored against the shipped references, and
//! every third reference left out against the others, for both metric orders, eta and gamma, and
//! k in {1, 3, all}. Results must be identical (score, decision, nearest index, SOART3).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Artifacts, TestConfig};
use inspectord::prefilter::{self, Prepared};
use inspectord::references::ReferenceSet;
use inspectord::score::{Embeddings, ScoreKind, Scoring, score_excluding};
use inspectord::soart3::Orders;

const LIMIT: Duration = Duration::from_secs(240);

fn settings() -> Vec<Scoring> {
    let mut all = Vec::new();
    for orders in [Orders::DEFAULT, Orders::LEGACY] {
        for kind in [ScoreKind::Eta, ScoreKind::Gamma] {
            for k in [1, 3, usize::MAX] {
                all.push(Scoring {
                    kind,
                    k,
                    orders,
                    threshold: 0.8418058043555654,
                });
            }
        }
    }
    all
}

fn load(path: &Path) -> Embeddings {
    let bytes = std::fs::read(path).unwrap();
    ReferenceSet::parse(path, &bytes).unwrap().embeddings
}

/// Every `step`-th frame of `frames` against `refs` (leaving out `frames`' own row when `loo`).
fn assert_same(refs: &Embeddings, frames: &Embeddings, loo: bool, step: usize) -> usize {
    let prep = Prepared::new(refs);
    let (mut pruned, mut scored) = (0, 0);
    for s in settings() {
        for (i, y) in frames.rows().enumerate().step_by(step) {
            let skip = loo.then_some(i);
            let slow = score_excluding(refs, y, &s, skip);
            let fast = prefilter::score(refs, &prep, y, &s, skip);
            assert_eq!(fast, slow, "frame {i}, {s:?}");
            if let Some(c) = prefilter::candidates(refs, &prep, y, &s, skip) {
                assert!(
                    c.len() * 4 < refs.len(),
                    "frame {i}: {} candidates",
                    c.len()
                );
                pruned += 1;
                scored += c.len();
            }
        }
    }
    // On real embeddings the bounds are tight: a handful of references per frame, not the set.
    let mean = scored as f64 / pruned.max(1) as f64;
    eprintln!(
        "{} references, {mean:.1} scored per frame on average",
        refs.len()
    );
    assert!(mean < 20.0, "{mean} references scored per frame");
    pruned
}

#[test]
fn prefiltered_scores_equal_the_reference_path_on_shipped_references() {
    for file in [
        "models/elpv-references.safetensors",
        "models/elpv-lite0-references.safetensors",
    ] {
        let refs = load(&common::repo().join(file));
        // every third reference left out (the reference path costs |refs|² per setting)
        let pruned = assert_same(&refs, &refs, true, 3);
        // both orders, eta and gamma, at k = 1 and 3 (not k = all) prefiltered for every one
        assert_eq!(pruned, 8 * refs.len().div_ceil(3), "{file}");
    }
}

#[test]
fn prefiltered_scores_equal_the_reference_path_on_the_held_out_split() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("heldout");
    std::fs::create_dir_all(&images).unwrap();
    let list = std::fs::read_to_string(common::split_list("test")).unwrap();
    let files: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.rsplit('/').next().unwrap())
        .collect();
    for f in &files {
        std::fs::copy(common::image(f), images.join(f)).unwrap();
    }
    let config = TestConfig::new(&art, &images).write(&tmp.path().join("inspectord.toml"));
    let out = tmp.path().join("heldout.safetensors");
    let args = [
        "enroll".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--images".as_ref(),
        images.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    common::run(common::command(tmp.path(), args), LIMIT).assert_success();
    let frames = load(&out);
    assert_eq!(frames.len(), files.len());
    let refs = load(&art.references);
    let pruned = assert_same(&refs, &frames, false, 1);
    assert_eq!(pruned, 8 * frames.len());
}
