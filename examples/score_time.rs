//! Scoring time per frame against reference sets, as the daemon scores (`prefilter::score`,
//! the prefiltered path `Scorer` uses, each set with the scoring its own metadata names). Frames are the rows of a reference file (e.g. every
//! enrolled good part), so no model is needed. Used by `scripts/coreset_table.py`:
//!
//! ```sh
//! cargo run --release --locked --example score_time -- FRAMES.safetensors REFS.safetensors...
//! ```
//!
//! Prints one line per reference set: path, references, microseconds per frame (the median of
//! 5 rounds over all frames).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inspectord::references::ReferenceSet;

fn load(path: &Path) -> Result<ReferenceSet, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(ReferenceSet::parse(path, &bytes)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [frames, sets @ ..] = args.as_slice() else {
        return Err("usage: score_time FRAMES.safetensors REFS.safetensors...".into());
    };
    let frames = load(frames)?.embeddings;
    for path in sets {
        let set = load(path)?;
        let scoring = set.meta.scoring();
        let prepared = inspectord::prefilter::Prepared::new(&set.embeddings);
        let mut rounds: Vec<Duration> = (0..5)
            .map(|_| {
                let started = Instant::now();
                let mut total = 0.0;
                for y in frames.rows() {
                    total +=
                        inspectord::prefilter::score(&set.embeddings, &prepared, y, &scoring, None)
                            .map_or(0.0, |s| s.score);
                }
                std::hint::black_box(total);
                started.elapsed()
            })
            .collect();
        rounds.sort();
        let per_frame = rounds[2].as_secs_f64() * 1e6 / frames.len().max(1) as f64;
        println!(
            "{}\t{}\t{per_frame:.1}",
            path.display(),
            set.embeddings.len()
        );
    }
    Ok(())
}
