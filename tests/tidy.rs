//! The invariants ARCHITECTURE.md states, checked against the sources (after rust-analyzer's
//! `tidy.rs`): a change that breaks one fails here with the file and line, and says which rule.
//!
//! Each rule reads the non-test part of every file under `src/` (a file's `#[cfg(test)]` module
//! is its tail, by this project's convention). Exceptions are listed with their reasons.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as (path relative to the repository, non-test text).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files.sort();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read source");
            let code = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            let rel = p.strip_prefix(root).expect("under the repository");
            (rel.to_string_lossy().into_owned(), code)
        })
        .collect()
}

/// Lines of code (comments stripped) containing `needle`, outside the files `allowed` says.
fn offenders(needle: &str, allowed: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for (file, code) in sources() {
        if allowed(&file) {
            continue;
        }
        for (i, line) in code.lines().enumerate() {
            let code_part = line.split("//").next().unwrap_or("");
            if code_part.contains(needle) {
                found.push(format!("{file}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    found
}

fn assert_none(rule: &str, found: Vec<String>) {
    assert!(
        found.is_empty(),
        "tidy: {rule}\n  {}\n(see ARCHITECTURE.md, \"Invariants\")",
        found.join("\n  ")
    );
}

#[test]
fn only_the_pipeline_spawns_threads() {
    for needle in ["thread::spawn", "thread::Builder", "thread::scope"] {
        assert_none(
            "threads are spawned only in src/pipeline/",
            offenders(needle, |f| f.starts_with("src/pipeline/")),
        );
    }
}

#[test]
fn only_wire_rs_serialises() {
    assert_none(
        "wire types live in src/wire.rs: `Serialize` appears nowhere else",
        offenders("Serialize", |f| f == "src/wire.rs"),
    );
}

#[test]
fn only_the_config_compiler_reads_toml() {
    assert_none(
        "raw TOML is read only by the config compiler (src/config/)",
        offenders("toml::", |f| f.starts_with("src/config")),
    );
}

/// `unwrap()` / `expect(` on the daemon path, with the documented exceptions.
const PANIC_EXCEPTIONS: &[(&str, &str, &str)] = &[];

#[test]
fn no_unwrap_or_expect_outside_tests() {
    let mut found = offenders(".unwrap()", |_| false);
    found.extend(offenders(".expect(", |_| false));
    found.retain(|f| {
        !PANIC_EXCEPTIONS
            .iter()
            .any(|(file, text, _why)| f.starts_with(file) && f.contains(text))
    });
    assert_none(
        "no `unwrap()`/`expect(` outside tests (return an error, or document an exception in tests/tidy.rs)",
        found,
    );
}

/// Functions allowed to be longer than [`MAX_FN_LINES`], with the reason.
const LONG_FN_EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// About a screen: a function longer than this does several things.
const MAX_FN_LINES: usize = 120;

#[test]
fn no_function_is_longer_than_a_screen() {
    let mut found = Vec::new();
    for (file, code) in sources() {
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let is_fn = ["fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn "]
                .iter()
                .any(|p| trimmed.starts_with(p));
            if !is_fn || trimmed.ends_with(';') {
                continue;
            }
            // rustfmt puts a body's closing brace at the indentation of its `fn`.
            let indent = &line[..line.len() - trimmed.len()];
            let close = format!("{indent}}}");
            let Some(len) = lines[i..].iter().position(|l| *l == close) else {
                continue;
            };
            let name = trimmed
                .split("fn ")
                .nth(1)
                .and_then(|r| r.split(['(', '<']).next())
                .unwrap_or("?");
            let excepted = LONG_FN_EXCEPTIONS
                .iter()
                .any(|(f, n, _why)| *f == file && *n == name);
            if len + 1 > MAX_FN_LINES && !excepted {
                found.push(format!("{file}:{}: fn {name} is {} lines", i + 1, len + 1));
            }
        }
    }
    assert_none(
        &format!(
            "no function over {MAX_FN_LINES} lines (split it, or document an exception in tests/tidy.rs)"
        ),
        found,
    );
}

#[test]
fn architecture_md_names_every_source_file_and_only_real_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    for (file, _) in sources() {
        // A module folder may be described as a whole (`src/sink/`).
        let folder = Path::new(&file)
            .parent()
            .map(|p| format!("{}/", p.display()))
            .filter(|f| f != "src/");
        let named = doc.contains(&format!("`{file}`"))
            || folder.is_some_and(|f| doc.contains(&format!("`{f}`")));
        if !named {
            missing.push(file);
        }
    }
    assert_none(
        "ARCHITECTURE.md's code map names every file (or its folder)",
        missing,
    );

    let mut dangling = Vec::new();
    for piece in doc.split('`').skip(1).step_by(2) {
        let looks_like_path =
            (piece.starts_with("src/") || piece.starts_with("tests/")) && !piece.contains(' ');
        if looks_like_path && !root.join(piece.trim_end_matches('/')).exists() {
            dangling.push(piece.to_string());
        }
    }
    assert_none("ARCHITECTURE.md names only paths that exist", dangling);
}
