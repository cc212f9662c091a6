//! The parts of the per-frame work, each alone, through inspectord's own code (the limit rows of
//! `scripts/bench.sh`, docs/BENCHMARKS.md): image decode from bytes in memory, preprocessing of
//! a decoded image to the input tensor, raw ONNX Runtime on ready tensors (batch 1 and larger
//! batches of the same tensors), and SOART3 scoring of a ready embedding against the references.
//!
//! ```sh
//! cargo bench --bench pipeline_parts -- --model M.onnx --references R.safetensors \
//!     --images LIST --threads 1 --reps 3 [--batches 4,8,16] [--json OUT]
//! ```
//!
//! Each figure is the median over `reps` passes of the per-image mean time of one pass over all
//! images (µs per image; for a batch, per image of the batch). Prints one JSON object.
//! A plain `harness = false` binary: no benchmark framework, so it adds no dependency.

use std::path::{Path, PathBuf};
use std::time::Instant;

use inspectord::encoder::Model;
use inspectord::onnxruntime;
use inspectord::preprocess::{self, Preprocessor};
use inspectord::references::ReferenceSet;
use ort::session::Session;
use ort::value::TensorRef;

struct Args {
    model: PathBuf,
    references: PathBuf,
    images: PathBuf,
    threads: usize,
    reps: usize,
    batches: Vec<usize>,
    json: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        model: PathBuf::new(),
        references: PathBuf::new(),
        images: PathBuf::new(),
        threads: 1,
        reps: 3,
        batches: vec![4, 8, 16],
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--model" => a.model = value().into(),
            "--references" => a.references = value().into(),
            "--images" => a.images = value().into(),
            "--threads" => a.threads = value().parse().unwrap_or_else(|_| die("--threads")),
            "--reps" => a.reps = value().parse().unwrap_or_else(|_| die("--reps")),
            "--batches" => {
                a.batches = value()
                    .split(',')
                    .map(|b| b.parse().unwrap_or_else(|_| die("--batches")))
                    .collect()
            }
            "--json" => a.json = Some(value().into()),
            "--bench" => {} // cargo bench adds it
            other => die(&format!("unknown argument {other}")),
        }
    }
    if a.model.as_os_str().is_empty() || a.images.as_os_str().is_empty() {
        die("--model, --references and --images are required");
    }
    a.reps = a.reps.max(1);
    a
}

fn die(msg: &str) -> ! {
    eprintln!("pipeline_parts: {msg}");
    std::process::exit(2)
}

fn read_list(list: &Path) -> Vec<Vec<u8>> {
    let base = list.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(list).unwrap_or_else(|e| die(&format!("{e}")));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| std::fs::read(base.join(l)).unwrap_or_else(|e| die(&format!("{l}: {e}"))))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median over `reps` passes of (pass time / items) in µs; `pass` returns the items it did.
fn time_passes(reps: usize, mut pass: impl FnMut() -> usize) -> f64 {
    pass(); // warm-up pass, not timed
    let times = (0..reps)
        .map(|_| {
            let t = Instant::now();
            let n = pass();
            t.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64
        })
        .collect();
    median(times)
}

fn session(rt: &onnxruntime::Runtime, bytes: &[u8], threads: usize) -> Session {
    Session::builder(&rt.environment)
        .and_then(|b| Ok(b.with_intra_threads(threads)?))
        .and_then(|b| Ok(b.with_inter_threads(1)?))
        .and_then(|mut b| b.commit_from_memory(bytes))
        .unwrap_or_else(|e| die(&format!("session: {e}")))
}

fn main() {
    let a = args();
    let rt = onnxruntime::init(None).unwrap_or_else(|e| die(&format!("{e}")));
    let model = Model::load(rt, &a.model).unwrap_or_else(|e| die(&format!("{e}")));
    let c = model.contract.clone();
    let refs = ReferenceSet::load(&a.references, &model.sha256, &a.model, c.embedding_dim)
        .unwrap_or_else(|e| die(&format!("{e}")));
    let scoring = refs.meta.scoring();
    let files = read_list(&a.images);
    let n = files.len();
    if n == 0 {
        die("no images");
    }

    let decode_us = time_passes(a.reps, || {
        for b in &files {
            std::hint::black_box(preprocess::decode(b).unwrap_or_else(|e| die(&format!("{e}"))));
        }
        n
    });
    let images: Vec<_> = files
        .iter()
        .map(|b| preprocess::decode(b).unwrap())
        .collect();
    let mut pre = Preprocessor::new(c.clone());
    let mut tensors = vec![Vec::new(); n];
    let preprocess_us = time_passes(a.reps, || {
        for (img, t) in images.iter().zip(tensors.iter_mut()) {
            pre.tensor(img, t).unwrap_or_else(|e| die(&format!("{e}")));
        }
        n
    });

    let len = c.input_len();
    let (ch, h, w) = (c.channels as usize, c.height as usize, c.width as usize);
    let mut sess = session(rt, &model.bytes, a.threads);
    let input = model.input_name.clone();
    let mut embeddings = vec![Vec::new(); n];
    let run = |sess: &mut Session, batch: usize, data: &[f32]| -> Vec<f32> {
        let t = TensorRef::from_array_view(([batch, ch, h, w], data))
            .unwrap_or_else(|e| die(&format!("{e}")));
        let out = sess
            .run(ort::inputs![input.as_str() => t])
            .unwrap_or_else(|e| die(&format!("run: {e}")));
        let (_, y) = out[0].try_extract_tensor::<f32>().unwrap();
        y.to_vec()
    };
    let ort_b1_us = time_passes(a.reps, || {
        for (t, e) in tensors.iter().zip(embeddings.iter_mut()) {
            *e = run(&mut sess, 1, t);
        }
        n
    });
    let mut ort_batches = Vec::new();
    for &b in &a.batches {
        // The images in batches of b (the list repeated to fill the last one).
        let mut data = Vec::with_capacity(b * len);
        let mut batches = Vec::new();
        for i in 0..n.div_ceil(b) * b {
            data.extend_from_slice(&tensors[i % n]);
            if data.len() == b * len {
                batches.push(std::mem::take(&mut data));
            }
        }
        let us = time_passes(a.reps, || {
            for d in &batches {
                std::hint::black_box(run(&mut sess, b, d));
            }
            batches.len() * b
        });
        ort_batches.push(serde_json::json!({"batch": b, "us_per_image": us}));
    }

    // As the daemon scores (`Scorer`): the prefilter's per-set values are computed once.
    let prepared = inspectord::prefilter::Prepared::new(&refs.embeddings);
    let score_us = time_passes(a.reps, || {
        for e in &embeddings {
            std::hint::black_box(
                inspectord::prefilter::score(&refs.embeddings, &prepared, e, &scoring, None)
                    .unwrap_or_else(|e| die(&format!("{e}"))),
            );
        }
        n
    });

    let best = ort_batches
        .iter()
        .min_by(|x, y| {
            x["us_per_image"]
                .as_f64()
                .unwrap()
                .total_cmp(&y["us_per_image"].as_f64().unwrap())
        })
        .cloned();
    let out = serde_json::json!({
        "model": a.model,
        "images": n,
        "threads": a.threads,
        "reps": a.reps,
        "references": refs.embeddings.len(),
        "decode_us": decode_us,
        "preprocess_us": preprocess_us,
        "ort_batch1_us": ort_b1_us,
        "ort_batches": ort_batches,
        "ort_best_batch": best,
        "score_us": score_us,
        "sum_of_parts_us": decode_us + preprocess_us + ort_b1_us + score_us,
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    if let Some(p) = &a.json {
        std::fs::write(p, &text).unwrap_or_else(|e| die(&format!("{}: {e}", p.display())));
    }
    println!("{text}");
}
