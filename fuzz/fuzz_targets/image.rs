//! Image decoding and preprocessing on arbitrary bytes, as a replayed file reaches a worker:
//! a tensor of exactly the model's size with finite values, or a clear error; never a panic.
#![no_main]

use inspectord::contract::ModelContract;
use inspectord::preprocess::{Preprocessor, decode};
use libfuzzer_sys::fuzz_target;

fn contract() -> ModelContract {
    let meta = |k: &str| {
        Some(
            match k {
                "input_width" | "input_height" => "64",
                "channels" => "1",
                "resize_filter" => "bilinear",
                "pixel_scale" => "0.00392156862745098",
                "mean" => "0.5",
                "std" => "0.25",
                "embedding_dim" => "8",
                "model_name" => "fuzz",
                "model_version" => "0",
                "layout" => "NCHW",
                _ => return None,
            }
            .to_string(),
        )
    };
    match ModelContract::from_metadata(meta) {
        Ok(c) => c,
        Err(e) => panic!("the fuzz target's own contract is invalid: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(image) = decode(data) else {
        return;
    };
    let mut pre = Preprocessor::new(contract());
    let mut tensor = Vec::new();
    if pre.tensor(&image, &mut tensor).is_ok() {
        assert_eq!(tensor.len(), 64 * 64);
        assert!(tensor.iter().all(|v| v.is_finite()));
    }
});
