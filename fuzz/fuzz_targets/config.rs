//! The config compiler on arbitrary text: it returns a config or every problem, never panics,
//! and reads nothing but the text (paths in it are only resolved, not opened).
#![no_main]

use std::path::Path;

use inspectord::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match Config::parse(Path::new("/fuzz/inspectord.toml"), text) {
            Ok(config) => {
                // What the daemon derives from a valid config must not panic either.
                let _ = config.source.camera();
            }
            Err(e) => assert!(!e.errors.is_empty(), "an error without problems"),
        }
    }
});
