//! The reference-file parser on arbitrary bytes: a set whose every value is finite and whose
//! scoring settings can score, or a clear error; never a panic, never a huge allocation.
#![no_main]

use std::path::Path;

use inspectord::references::ReferenceSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = ReferenceSet::parse(Path::new("/fuzz/references.safetensors"), data) {
        assert!(set.embeddings.data.iter().all(|v| v.is_finite()));
        assert!(set.meta.threshold.is_finite());
        assert!(set.meta.k >= 1 && set.meta.k <= set.embeddings.len());
        let orders = set.meta.orders;
        assert!(orders.eta_p.is_finite() && orders.gamma_p.is_finite());
    }
});
