//! The gateway's operator page in a real browser (headless chromium through chromedriver),
//! against the real daemon (trigger-mode replay of held-out ELPV images, saving its fail images
//! with `[failures]`): it loads without a console error; once the parts are inspected its
//! counters equal the daemon's replay summary; the gallery shows saved fail images (decoded by
//! the browser) with their score; the daemon stopped, the page says "Daemon unreachable".
//! Screenshots go to <target>/gateway-screenshots/ (and to $INSPECTORD_SCREENSHOTS if set).

mod common;

use std::path::Path;
use std::time::Duration;

use common::gateway::{self, Gateway, GatewayConfig, Observer, Summary};
use common::webdriver::{ChromeDriver, Session};
use common::{Artifacts, TestConfig};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(20);

/// The page's counters (`#n-pass`, …) as numbers; `Err` with what it shows while one is missing.
fn page_counts(s: &Session) -> Result<Summary, String> {
    let mut shown = Vec::new();
    let mut get = |id: &str| -> Result<u64, String> {
        let text = s.text(&format!("#{id}")).ok_or(format!("no #{id}"))?;
        shown.push(format!("#{id}={text:?}"));
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        digits.parse().map_err(|_| format!("#{id} shows {text:?}"))
    };
    let pass = get("n-pass")?;
    let fail = get("n-fail")?;
    let error = get("n-error")?;
    let skipped = get("n-skipped")?;
    Ok(Summary {
        frames: pass + fail + error + skipped,
        pass,
        fail,
        error,
        skipped,
    })
}

fn screenshot(s: &Session, name: &str) {
    s.screenshot(&gateway::screenshot_dir().join(name));
    if let Some(dir) = std::env::var_os("INSPECTORD_SCREENSHOTS") {
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).expect("create $INSPECTORD_SCREENSHOTS");
        s.screenshot(&dir.join(name));
    }
}

/// Whether `text` holds a decimal number that is `score` rounded to the digits it shows.
fn shows_score(text: &str, score: f64) -> bool {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|w| w.contains('.') && w.len() > 2)
        .any(|w| {
            let decimals = w.len() - w.find('.').unwrap() - 1;
            w.parse::<f64>().is_ok_and(|x| {
                decimals >= 2 && (x - score).abs() <= 0.5 * 10f64.powi(-(decimals as i32)) + 1e-12
            })
        })
}

#[test]
fn the_page_shows_the_daemons_counts_its_failures_and_its_absence() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    let n = art.copy_heldout(&images, 5, 4).len();
    let socket = tmp.path().join("v.sock");
    let failures = tmp.path().join("failures");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.socket = Some(socket.clone());
    let toml = gateway::trigger_mode(&cfg.to_toml())
        + &format!(
            "\n[failures]\ndir = {}\nquota_mb = 50\n",
            common::toml_str(failures.to_str().unwrap())
        );
    let config = tmp.path().join("inspectord.toml");
    std::fs::write(&config, toml).unwrap();
    let daemon = common::spawn(
        gateway::json_command(
            tmp.path(),
            &["replay".as_ref(), "--config".as_ref(), config.as_os_str()],
        ),
        LIMIT,
    );
    let mut observer = Observer::connect(&daemon, &socket);
    let mut g = GatewayConfig::new(&socket);
    g.failures_dir = Some(failures.clone());
    let gw = Gateway::start(&g.write(&tmp.path().join("gateway.toml")), LIMIT);

    let driver = ChromeDriver::start(&tmp.path().join("chromedriver"));
    let mut s = driver.session();
    s.navigate(&format!("{}/", gw.url()));
    s.wait("the daemon up", WAIT, |s| {
        let t = s.text("#daemon-state").unwrap_or_default();
        if !t.is_empty() && !t.starts_with("Daemon unreachable") {
            Ok(())
        } else {
            Err(format!("#daemon-state {t:?}"))
        }
    });
    let severe = s.severe();
    assert!(severe.is_empty(), "console errors on load: {severe:?}");

    let verdicts: Vec<Value> = (0..n)
        .map(|i| observer.trigger_and_wait(&format!("part-{i}")))
        .collect();
    let seen = gateway::tally(&verdicts);
    assert!(seen.fail > 0, "some parts fail: {seen:?}");
    let shown = s.wait("the counts of every verdict", WAIT, |s| {
        page_counts(s).and_then(|c| {
            if c == seen {
                Ok(c)
            } else {
                Err(format!("{c:?}, want {seen:?}"))
            }
        })
    });

    // The gallery: saved fail images, decoded by the browser, each with its score.
    let fail_scores: Vec<f64> = verdicts
        .iter()
        .filter(|v| v["verdict"] == "fail")
        .map(|v| v["score"].as_f64().expect("a fail has a score"))
        .collect();
    let gallery = s.wait("the gallery's images loaded", WAIT, |s| {
        let v = s.execute(
            "return Array.from(document.querySelectorAll('#gallery img')).map(i => ({\
               complete: i.complete, width: i.naturalWidth, src: i.getAttribute('src'),\
               caption: (i.closest('figure') || i.parentElement).innerText}))",
            vec![],
        );
        let items = v.as_array().cloned().unwrap_or_default();
        let loaded = !items.is_empty()
            && items
                .iter()
                .all(|i| i["complete"] == true && i["width"].as_u64().unwrap_or(0) > 0);
        if loaded {
            Ok(items)
        } else {
            Err(v.to_string())
        }
    });
    for item in &gallery {
        let caption = item["caption"].as_str().unwrap_or_default();
        assert!(
            fail_scores.iter().any(|&score| shows_score(caption, score)),
            "a gallery caption without a fail's score {fail_scores:?}: {item}"
        );
        let src = item["src"].as_str().unwrap_or_default();
        assert!(src.starts_with("/failures/"), "{item}");
        let name = &src["/failures/".len()..];
        assert!(
            failures.join(name).is_file(),
            "{name} is not one of the daemon's images"
        );
    }
    assert!(
        gallery.len() as u64 <= seen.fail + seen.error,
        "{gallery:?}"
    );
    screenshot(&s, "gateway-running.png");

    // The daemon stops: its summary is what the page showed; the page notices it is gone.
    daemon.signal(libc::SIGTERM);
    let done = daemon.wait(LIMIT);
    done.assert_success();
    assert_eq!(
        gateway::parse_summary(&done.stderr),
        shown,
        "the replay summary"
    );
    s.wait("\"Daemon unreachable\"", Duration::from_secs(8), |s| {
        let t = s.text("#daemon-state").unwrap_or_default();
        if t.starts_with("Daemon unreachable") {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
    assert_eq!(page_counts(&s), Ok(shown), "the last known counts stay");
    screenshot(&s, "gateway-unreachable.png");
    let severe = s.severe();
    assert!(severe.is_empty(), "console errors: {severe:?}");
    s.delete();
    let stopped = gw.terminate();
    assert!(
        stopped.status.success(),
        "gateway: {}\n{}",
        stopped.status,
        stopped.stderr
    );
}

#[test]
fn a_caption_shows_a_score_only_when_rounded_right() {
    assert!(shows_score("seq 17 · fail 0.0589 · 10:00:01", 0.05891));
    assert!(shows_score("score 0.06", 0.0589));
    assert!(!shows_score("score 0.07", 0.0589));
    assert!(!shows_score("seq 17 fail", 0.0589));
}
