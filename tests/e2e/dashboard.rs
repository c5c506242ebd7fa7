//! The dashboard and the API docs in a real browser: headless Chromium (Debian's package)
//! loads them from a running `cacheplane serve` with no internet, runs their scripts, and
//! the test reads the rendered DOM: the cache listed, a plot of the storage history with
//! points, the drill measured against its prediction, Swagger UI rendering the document.
//! A screenshot of the dashboard is saved under the test's target directory.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::harness::{TempDir, free_port, poll};
use crate::serve::{ControlPlane, TOKEN, cache_url, call, create, premium, wait_operation};

/// Runs headless Chromium on `url` with `args`; its scripts get `VIRTUAL_TIME_MS` of
/// virtual time (Chromium settles the page's work within it, not on the wall clock).
fn chromium(url: &str, args: &[&str]) -> String {
    const VIRTUAL_TIME_MS: &str = "--virtual-time-budget=8000";
    let profile = TempDir::new("chromium-profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            VIRTUAL_TIME_MS,
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium (scripts/test.sh installs Debian's chromium package)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_dashboard_renders_caches_storage_plots_and_drills_in_a_browser() {
    let data = TempDir::new("dashboard");
    let cp = ControlPlane::start(data.path(), free_port());
    create(
        &cp,
        "webshop",
        premium(
            json!({"rdb-backup-enabled": "true", "rdb-backup-frequency": "15", "cacheplane-time-scale": "900"}),
        ),
    );
    // Snapshots every simulated 15 minutes (a second here) give the ledger its history.
    poll("storage history", Duration::from_secs(60), || {
        let (_, _, r) = call(
            reqwest::Method::GET,
            &format!("{}/storageReport", cache_url(&cp, "webshop")),
            None,
        );
        match r["accounts"][0]["liveHistory"].as_array().map(Vec::len) {
            Some(n) if n >= 2 => Ok(()),
            _ => Err(r.to_string()),
        }
    });
    let (status, headers, _) = call(
        reqwest::Method::POST,
        &format!("{}/simulateFault", cache_url(&cp, "webshop")),
        Some(json!({"kind": "nodeCrash", "durationSeconds": 1})),
    );
    assert_eq!(status, 202);
    assert_eq!(wait_operation(&headers), "Succeeded");

    let url = format!("{}/dashboard#token={TOKEN}", cp.base);
    let dom = chromium(&url, &["--dump-dom"]);
    assert!(dom.contains(r#"data-name="webshop""#), "{dom}");
    assert!(dom.contains("rdb every 1 s"), "{dom}");
    let points = dom.matches(r#"class="point live""#).count();
    assert!(points >= 2, "a plot with points: {dom}");
    assert!(dom.contains(r#"<svg class="plot""#), "{dom}");
    // The page's script is in the DOM too: match rendered elements, not words.
    assert!(dom.contains("<td>nodeCrash</td>"), "{dom}");
    assert!(dom.contains(r#"<span class="ok">✓ within</span>"#), "{dom}");
    assert!(
        dom.contains(r#"<p id="error" hidden="">"#),
        "no error shown: {dom}"
    );

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1300,1200",
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG at {}", shot.display());

    // Without the token the page asks for it and shows no data.
    let dom = chromium(&format!("{}/dashboard", cp.base), &["--dump-dom"]);
    assert!(!dom.contains(r#"data-name="webshop""#));
    assert!(
        dom.contains(r#"id="login""#) && !dom.contains(r#"id="login" hidden"#),
        "{dom}"
    );

    // Swagger UI's assets ship with the binary: the page renders the document offline.
    let docs = chromium(&format!("{}/docs/", cp.base), &["--dump-dom"]);
    assert!(docs.contains("/simulateFault"), "{docs}");
    let page = reqwest::blocking::get(format!("{}/docs/", cp.base))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        !page.contains("https://") && !page.contains("http://"),
        "{page}"
    );
}
