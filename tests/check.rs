//! `inspectord check`: every config mistake reported with its key and line; the demo config
//! passes; references from another model and a missing ONNX Runtime are refused.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Artifacts, Encoder, TestConfig};
use inspectord::references::ReferenceSet;

const LIMIT: Duration = Duration::from_secs(90);

fn inspectord(cwd: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Command {
    common::command(cwd, args.iter().map(|a| a.as_ref()))
}

/// 1-based line of the first line of `text` equal to `line`.
fn line_of(text: &str, line: &str) -> usize {
    text.lines()
        .position(|l| l.trim() == line)
        .unwrap_or_else(|| panic!("{line:?} not in the config"))
        + 1
}

#[test]
fn three_mistakes_are_all_reported_with_key_and_line() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let good = TestConfig::new(&art, common::images_dir()).to_toml();
    let bad = good
        .replace("[output]\n", "[output]\nsockett = \"/tmp/x.sock\"\n")
        .replace("[runtime]\nworkers = 2\n", "[runtime]\nworkers = \"two\"\n")
        .replace("[output]", "[scoring]\nk = 0\n\n[output]");
    let path = tmp.path().join("bad.toml");
    std::fs::write(&path, &bad).unwrap();

    let out = common::run(
        inspectord(tmp.path(), &[&"check", &"--config", &path]),
        LIMIT,
    );
    out.assert_failure();
    let err = common::strip_ansi(&out.stderr);
    for (key, line) in [
        ("scoring.k", line_of(&bad, "k = 0")),
        ("output.sockett", line_of(&bad, "sockett = \"/tmp/x.sock\"")),
        ("runtime.workers", line_of(&bad, "workers = \"two\"")),
    ] {
        assert!(
            err.contains(&format!("line {line}: {key}")),
            "stderr does not name {key} at line {line}:\n{err}\nconfig:\n{bad}"
        );
    }
    assert!(
        err.contains("3 problems"),
        "expected exactly three problems:\n{err}"
    );
}

#[test]
fn demo_config_passes() {
    let tmp = common::temp_dir();
    // The demo runs the accurate encoder.
    let art = Artifacts::snapshot_of(tmp.path(), Encoder::Lite0);
    // The shipped demo config with its relative paths made absolute; model and references from
    // the snapshot (the files in models/ may be mid-replacement by a retraining).
    let demo = std::fs::read_to_string(common::repo().join("config/inspectord.toml")).unwrap();
    let models = common::repo().join("models");
    let copy = demo
        .replace("\"../", &format!("\"{}/", common::repo().display()))
        .replace(
            &format!("\"{}/elpv-lite0.onnx\"", models.display()),
            &format!("\"{}\"", art.model.display()),
        )
        .replace(
            &format!("\"{}/elpv-lite0-references.safetensors\"", models.display()),
            &format!("\"{}\"", art.references.display()),
        );
    assert!(
        copy.contains(&art.model.display().to_string()),
        "the demo config no longer names the model the expected way"
    );
    assert!(
        copy.contains(&art.references.display().to_string()),
        "the demo config no longer names the references the expected way"
    );
    let path = tmp.path().join("inspectord.toml");
    std::fs::write(&path, &copy).unwrap();

    let out = common::run(
        inspectord(tmp.path(), &[&"check", &"--config", &path]),
        LIMIT,
    );
    out.assert_success();
    let report = out.stdout.join("\n");
    assert!(report.contains(": ok"), "{report}");
    assert!(
        report.contains(&art.model_sha256),
        "check should report the model's sha256:\n{report}"
    );
    assert!(
        report.contains(&art.reference_set),
        "check should report the reference set id:\n{report}"
    );
}

/// A reference file identical to the shipped one except for its `model_sha256`.
fn foreign_references(art: &Artifacts, dir: &Path) -> std::path::PathBuf {
    let bytes = std::fs::read(&art.references).unwrap();
    let mut set =
        ReferenceSet::parse(&art.references, &bytes).expect("parse the shipped references");
    let other = common::sha256_hex(b"some other model");
    assert_ne!(other, art.model_sha256);
    set.meta.model_sha256 = other.clone();
    let path = dir.join("foreign.safetensors");
    ReferenceSet::write(&path, &set.embeddings, &set.meta).expect("write references");
    assert_eq!(
        common::safetensors_metadata(&std::fs::read(&path).unwrap())["model_sha256"],
        other
    );
    path
}

#[test]
fn references_of_another_model_are_refused() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let mut cfg = TestConfig::new(&art, common::split_list("test"));
    cfg.references = foreign_references(&art, tmp.path());
    let socket = tmp.path().join("v.sock");
    cfg.socket = Some(socket.clone());
    let config = cfg.write(&tmp.path().join("inspectord.toml"));

    let check = common::run(
        inspectord(tmp.path(), &[&"check", &"--config", &config]),
        LIMIT,
    );
    check.assert_failure();
    assert!(
        check.stderr.contains("different model"),
        "check:\n{}",
        check.stderr
    );

    let replay = common::run(
        inspectord(tmp.path(), &[&"replay", &"--config", &config]),
        LIMIT,
    );
    replay.assert_failure();
    assert!(
        replay.stderr.contains("different model"),
        "replay:\n{}",
        replay.stderr
    );
    assert!(
        replay.stdout.is_empty(),
        "no verdicts with foreign references: {:?}",
        replay.stdout.first()
    );
    assert!(!socket.exists(), "a refused replay must not leave a socket");
}

#[test]
fn missing_onnx_runtime_is_named() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let config =
        TestConfig::new(&art, common::images_dir()).write(&tmp.path().join("inspectord.toml"));
    let missing = "/nonexistent/libonnxruntime.so";
    let mut cmd = inspectord(tmp.path(), &[&"check", &"--config", &config]);
    cmd.env("ORT_DYLIB_PATH", missing);
    let out = common::run(cmd, LIMIT);
    out.assert_failure();
    assert!(
        out.stderr.contains("ORT_DYLIB_PATH"),
        "stderr should name ORT_DYLIB_PATH:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(missing),
        "stderr should name the path tried:\n{}",
        out.stderr
    );
}

#[test]
fn a_missing_camera_is_a_warning_not_an_error() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let toml = format!(
        "[source]\nkind = \"genicam\"\ndevice = \"inspectord-test-no-such-camera\"\n\n[model]\npath = {}\n\n[references]\npath = {}\n\n[output]\nsocket = {}\n",
        common::toml_str(art.model.to_str().unwrap()),
        common::toml_str(art.references.to_str().unwrap()),
        common::toml_str(tmp.path().join("v.sock").to_str().unwrap()),
    );
    let path = tmp.path().join("camera.toml");
    std::fs::write(&path, &toml).unwrap();
    let out = common::run(
        inspectord(tmp.path(), &[&"check", &"--config", &path]),
        LIMIT,
    );
    out.assert_success();
    let report = out.stdout.join("\n");
    assert!(report.contains("warning: camera not available"), "{report}");
    assert!(
        report.contains("inspectord-test-no-such-camera"),
        "{report}"
    );
}

/// Mistakes that only `run` used to find (after `check`, the unit's `ExecStartPre=`, had passed)
/// now fail `check` too: the same validation runs in both.
#[test]
fn what_run_would_refuse_check_refuses() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let check = |config: &TestConfig, name: &str, mode: Option<&str>| {
        let path = tmp.path().join(name);
        std::fs::write(&path, config.to_toml()).unwrap();
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"check", &"--config", &path];
        let mode_args;
        if let Some(m) = mode {
            mode_args = ["--mode", m];
            args.extend(mode_args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        }
        common::run(inspectord(tmp.path(), &args), LIMIT)
    };

    // `run` serves verdicts on the socket only: without output.socket it cannot start.
    let no_socket = TestConfig::new(&art, common::images_dir());
    let out = check(&no_socket, "no-socket.toml", None);
    out.assert_failure();
    assert!(
        out.stderr
            .contains("`run` sends verdicts to the socket only"),
        "{}",
        out.stderr
    );
    // ...which `replay` does not need.
    check(&no_socket, "no-socket.toml", Some("replay")).assert_success();
    let run = common::run(
        inspectord(
            tmp.path(),
            &[&"run", &"--config", &tmp.path().join("no-socket.toml")],
        ),
        LIMIT,
    );
    run.assert_failure();
    assert!(
        run.stderr
            .contains("`run` sends verdicts to the socket only")
    );

    // A replay directory without images: `check` used to load only model and references.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let mut no_images = TestConfig::new(&art, &empty);
    no_images.socket = Some(tmp.path().join("v.sock"));
    for mode in [None, Some("replay")] {
        let out = check(&no_images, "no-images.toml", mode);
        out.assert_failure();
        assert!(out.stderr.contains("holds no images"), "{}", out.stderr);
    }
    assert!(
        !tmp.path().join("v.sock").exists(),
        "check must not bind the socket"
    );
}

#[test]
fn the_deprecated_camera_kind_is_accepted_with_a_warning() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let toml = format!(
        "[source]\nkind = \"camera\"\ndevice = \"/dev/video987\"\n\n[model]\npath = {}\n\n[references]\npath = {}\n\n[output]\nsocket = {}\n",
        common::toml_str(art.model.to_str().unwrap()),
        common::toml_str(art.references.to_str().unwrap()),
        common::toml_str(tmp.path().join("v.sock").to_str().unwrap()),
    );
    let path = tmp.path().join("camera.toml");
    std::fs::write(&path, &toml).unwrap();
    let out = common::run(
        inspectord(tmp.path(), &[&"check", &"--config", &path]),
        LIMIT,
    );
    out.assert_success();
    let report = out.stdout.join("\n");
    let line = line_of(&toml, "kind = \"camera\"");
    assert!(
        report.contains(&format!("warning: source.kind (line {line}): ")),
        "{report}"
    );
    assert!(report.contains("kind = \"uvc\""), "{report}");
    // The camera itself is absent here: that is the other warning.
    assert!(report.contains("warning: camera not available"), "{report}");
    let err = common::strip_ansi(&out.stderr);
    assert!(
        err.contains("source.kind") && err.contains("deprecated"),
        "the warning is also logged:\n{err}"
    );
}

/// Inputs that `run` cannot take (or that used to hang or crash it) are refused by `check`,
/// promptly, with a message naming the key or the path and what is wrong with it.
#[test]
fn check_refuses_what_run_cannot_take_promptly_and_by_name() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    art.copy_heldout(&images, 2, 0);
    let fifo = tmp.path().join("pipe.png");
    common::mkfifo(&fifo);
    let mut good = TestConfig::new(&art, &images);
    good.socket = Some(tmp.path().join("v.sock"));
    // Each case fails at once; a hang (a FIFO, /dev/zero read to the end) runs into this.
    let limit = Duration::from_secs(30);
    let count =
        common::safetensors_metadata(&std::fs::read(&art.references).unwrap())["count"].clone();

    let with = |f: &dyn Fn(&mut TestConfig)| {
        let mut c = good.clone();
        f(&mut c);
        c.to_toml()
    };
    let long_socket = tmp.path().join("s".repeat(110));
    let more_than_count = format!("\n[scoring]\nk = {}\n", count.parse::<usize>().unwrap() + 1);
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "fps 1e-300",
            with(&|c| c.fps = 1e-300),
            vec!["source.fps".into()],
        ),
        (
            "fps 5e-324",
            with(&|c| c.fps = 5e-324),
            vec!["source.fps".into()],
        ),
        (
            "fps 1e-19",
            with(&|c| c.fps = 1e-19),
            vec!["source.fps".into()],
        ),
        (
            "no extensions",
            good.to_toml()
                .replace("loop = false\n", "loop = false\nextensions = []\n"),
            vec!["source.extensions".into()],
        ),
        (
            "socket path too long",
            with(&|c| c.socket = Some(long_socket.clone())),
            vec!["output.socket".into(), "108".into()],
        ),
        (
            "setuid socket mode",
            good.to_toml()
                .replace("[output]\n", "[output]\nsocket_mode = 0o7777\n"),
            vec!["output.socket_mode".into(), "0o7777".into()],
        ),
        (
            "k above the reference count",
            good.to_toml() + &more_than_count,
            vec!["scoring.k".into(), count.clone()],
        ),
        (
            "model is /dev/zero",
            with(&|c| c.model = "/dev/zero".into()),
            vec!["/dev/zero".into(), "not a regular file".into()],
        ),
        (
            "model is a directory",
            with(&|c| c.model = images.clone()),
            vec![images.display().to_string(), "directory".into()],
        ),
        (
            "references are a FIFO",
            with(&|c| c.references = fifo.clone()),
            vec![fifo.display().to_string(), "FIFO".into()],
        ),
        (
            "replay path is a FIFO",
            with(&|c| c.source = fifo.clone()),
            vec![fifo.display().to_string(), "FIFO".into()],
        ),
        (
            "replay list file is /dev/zero",
            with(&|c| c.source = "/dev/zero".into()),
            vec!["/dev/zero".into(), "not a regular file".into()],
        ),
    ];
    // Every case runs; the failure lists each one that did not hold.
    let mut problems = Vec::new();
    for (name, toml, needles) in cases {
        let path = tmp.path().join("case.toml");
        std::fs::write(&path, &toml).unwrap();
        let daemon = common::spawn(
            inspectord(tmp.path(), &[&"check", &"--config", &path]),
            limit * 2,
        );
        if !common::wait_until(limit, || daemon.try_status().is_some()) {
            let err = common::strip_ansi(&daemon.stderr_so_far());
            let tail: Vec<&str> = err.lines().rev().take(2).collect();
            problems.push(format!("{name}: still running after {limit:?}: {tail:?}"));
            continue; // dropping the daemon kills it
        }
        let out = daemon.wait(limit);
        let err = common::strip_ansi(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        if out.status.code().is_none_or(|c| c == 0) {
            problems.push(format!(
                "{name}: check did not fail promptly ({} after {:?}): {tail:?}",
                out.status, out.elapsed
            ));
        } else if let Some(needle) = needles.iter().find(|n| !err.contains(n.as_str())) {
            problems.push(format!("{name}: stderr lacks {needle:?}: {tail:?}"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    assert!(!tmp.path().join("v.sock").exists(), "check must not bind");
}
