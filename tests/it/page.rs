//! The status page in a real browser: Debian's headless Chromium (through chromedriver) loads
//! the page of a running small testbed and waits until the live part lists every world client
//! and the VoD chart has points; the page also reads without JavaScript.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::webdriver::{Browser, CHROMIUM};

/// 1 seed + 4 world clients on a 600 KB movie; vod-client plays it at 40 KB/s (about 15 s).
fn start_small_testbed() -> Scenario {
    let tb = Scenario::new(
        &[("movie.bin", content(600_000, 5))],
        "interval: 2",
        "seed: 9\ntorrents: {piece_length: 16384}\n\
         world: {clients: 4, seeds: 1, upload_rate: 30, start_fraction: 0.3, linger: 60}\n\
         my_client: {rate: 40, delay: 3, prefetch: 1, max_upload_rate: 30}\n",
    );
    tb.start(&[env!("CARGO_BIN_EXE_vod-client")]);
    tb
}

#[test]
fn status_page_lists_the_world_and_draws_the_timeline_in_chromium() {
    if !have_tool("chromedriver") || !have_tool(CHROMIUM) {
        return;
    }
    let tb = start_small_testbed();

    // Without JavaScript: the first paint is complete HTML (what curl or a no-JS browser sees).
    wait_until(
        "the page lists 5 world clients",
        Duration::from_secs(30),
        || {
            http_get(tb.port, "/")
                .map(|(_, b)| {
                    String::from_utf8_lossy(&b)
                        .matches("class=\"client role-")
                        .count()
                        >= 5
                })
                .unwrap_or(false)
        },
    );
    let (code, body) = http_get(tb.port, "/").unwrap();
    let html = String::from_utf8_lossy(&body);
    assert_eq!(code, 200);
    assert!(
        html.contains("<noscript><meta http-equiv=\"refresh\""),
        "reloads without JS"
    );
    assert!(
        !html.contains("http://") || !html.contains("<script src"),
        "nothing external"
    );

    let profile = tb.root().join("chromium-profile");
    let browser = Browser::start(free_port(), &profile).expect("chromedriver and chromium start");
    browser
        .goto(&format!("http://127.0.0.1:{}/", tb.port))
        .unwrap();
    let probe = r#"
        const live = document.getElementById('live');
        const rows = [...document.querySelectorAll('table.clients tr.client')];
        return {
          updates: Number(live.dataset.updates || 0),
          world: rows.filter(r => r.classList.contains('role-world')).length,
          seeds: rows.filter(r => r.classList.contains('role-seed')).length,
          my: rows.filter(r => r.classList.contains('role-my')).length,
          points: document.querySelectorAll('svg.timeline circle.pt').length,
          heat: document.querySelectorAll('svg.heat rect').length,
          penalty: (document.getElementById('penalty') || {}).textContent,
          myState: (document.getElementById('my-state') || {dataset: {}}).dataset.state,
        };"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = serde_json::Value::Null;
    loop {
        last = browser.eval(probe).unwrap_or(last);
        let ok = last["world"] == 4
            && last["seeds"] == 1
            && last["my"] == 1
            && last["points"].as_u64().unwrap_or(0) > 0
            && last["updates"].as_u64().unwrap_or(0) >= 2;
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed every client and a chart with points: {last}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // 600 KB in 16 KiB pieces: one heat cell per piece.
    assert_eq!(last["heat"], 37, "{last}");
    assert!(last["penalty"].as_str().is_some(), "{last}");
    assert_eq!(last["myState"], "running", "{last}");

    let png = browser.screenshot().unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    // PAGE_SCREENSHOT=file.png keeps it for a look; otherwise it goes with the temporary dir.
    let shot = std::env::var_os("PAGE_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tb.root().join("run/status-page.png"));
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {} ({} bytes)", shot.display(), png.len());

    // The timeline as a file (what `testbed run` writes to run/report.svg, same renderer):
    // Chromium opening it shows the chart, not an XML parse error.
    let (_, live) = http_get(tb.port, "/?part=live").unwrap();
    let live = String::from_utf8_lossy(&live).to_string();
    let start = live.find("<svg xmlns").expect("the chart in the page");
    let end = start + live[start..].find("</svg>").unwrap() + "</svg>".len();
    let file = tb.root().join("timeline.svg");
    std::fs::write(&file, &live[start..end]).unwrap();
    browser.goto(&format!("file://{}", file.display())).unwrap();
    let shown = browser
        .eval(
            "return {root: document.documentElement.tagName, \
             errors: document.getElementsByTagName('parsererror').length, \
             points: document.querySelectorAll('circle').length};",
        )
        .unwrap();
    assert_eq!(shown["root"], "svg", "{shown}");
    assert_eq!(shown["errors"], 0, "{shown}");
    assert!(shown["points"].as_u64().unwrap() > 0, "{shown}");
    drop(browser);

    // Stopping: the page says so (or the server is gone), never a broken page.
    assert!(tb.testbed("stop", &[]).status.success());
}

#[test]
fn idle_page_says_no_my_client_and_no_swarm_yet() {
    // A world of nobody: the tracker has no swarm and there is no my client.
    let tb = Scenario::new(
        &[("a.bin", content(50_000, 1))],
        "",
        "world: {clients: 0, seeds: 0}\n",
    );
    tb.start(&[]);
    let (code, body) = http_get(tb.port, "/?part=live").unwrap();
    let html = String::from_utf8_lossy(&body);
    assert_eq!(code, 200);
    assert!(html.contains("data-state=\"none\""), "{html}");
    assert!(html.contains("id=\"no-report\""), "{html}");
    // The torrent is known to the tracker, but nobody announced: an empty swarm or "no swarms".
    assert!(
        html.contains("id=\"idle\"") || html.contains("0 clients"),
        "{html}"
    );
}

#[test]
fn a_big_world_shows_its_first_hundred_rows_and_all_on_request() {
    // 108 world clients and 2 seeds on a tiny file: more rows than the default view.
    let tb = Scenario::new(
        &[("a.bin", content(64 * 1024, 3))],
        "interval: 30",
        "seed: 4\ntorrents: {piece_length: 16384}\n\
         world: {clients: 108, seeds: 2, start_fraction: 0.5, linger: 600}\n",
    );
    tb.start(&[]);
    wait_until("110 clients announced", Duration::from_secs(60), || {
        http_get(tb.port, "/api/status")
            .ok()
            .and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["swarms"][0]["peers"].as_array().map(|a| a.len()))
            == Some(110)
    });
    let rows = |q: &str| {
        let (code, body) = http_get(tb.port, q).unwrap();
        assert_eq!(code, 200);
        let html = String::from_utf8_lossy(&body).into_owned();
        (html.matches("<tr class=\"client ").count(), html)
    };
    let (n, html) = rows("/?part=live");
    assert_eq!(n, 100, "the default view");
    assert!(html.contains("110 clients"), "the summary counts all");
    assert!(html.contains("10 more clients not shown"), "{html}");
    assert!(html.contains("href=\"/?all=1\""));
    let (n, html) = rows("/?part=live&all=1");
    assert_eq!(n, 110, "all on request");
    assert!(html.contains("all 110 clients"));
    // The whole page without JavaScript honours it too.
    assert_eq!(rows("/?all=1").0, 110);
    assert!(tb.testbed("stop", &[]).status.success());
}
