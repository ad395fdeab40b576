//! The status page with many clients, for `scale`: the server's render and a refresh in
//! headless Chromium.

use super::*;

/// The status page with `n` clients: the server's render of the live part (what every poll
/// costs), then in headless Chromium the first load and a refresh (fetch, swap, layout), as the
/// page's own script times it.
pub(crate) fn page(b: &mut Bench, n: usize, port: u16, dir: &Path) -> Result<()> {
    // The default view lists a swarm's first 100 clients (the page's SHOWN_ROWS); `?all=1`
    // every one.
    let shown = n.min(100);
    let all = http_get(port, "/?part=live&all=1")?;
    let rows = all.matches("class=\"client role-").count();
    if rows < n {
        bail!("the page with all rows lists {rows} of {n} clients");
    }
    let mut server = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let body = http_get(port, "/?part=live")?;
        server.push(t.elapsed().as_secs_f64() * 1e3);
        let rows = body.matches("class=\"client role-").count();
        if rows < shown {
            bail!("the page lists {rows} of {shown} clients");
        }
    }
    server.sort_by(f64::total_cmp);
    let i = b.add(
        "scale",
        &format!("{n} clients: page live part, server (median of 20)"),
        server[server.len() / 2],
        "ms",
    );
    b.target(i, "< 200 ms", server[server.len() / 2] < 200.0);
    if !Path::new(webdriver::CHROMIUM).exists() {
        bail!(
            "no {}: install chromium chromium-driver",
            webdriver::CHROMIUM
        );
    }
    let browser = webdriver::Browser::start(free_port(), &dir.join("chromium-profile"))
        .map_err(|e| anyhow!(e))?;
    browser
        .goto(&format!("http://127.0.0.1:{port}/"))
        .map_err(|e| anyhow!(e))?;
    let load = browser
        .eval("const e = performance.getEntriesByType('navigation')[0]; return e.loadEventEnd - e.startTime;")
        .map_err(|e| anyhow!(e))?
        .as_f64()
        .ok_or_else(|| anyhow!("no navigation timing"))?;
    b.add(
        "scale",
        &format!("{n} clients: page first load, Chromium"),
        load,
        "ms",
    );
    refresh_row(
        b,
        &browser,
        shown,
        &format!("{n} clients: page refresh in Chromium"),
        100.0,
    )?;
    if n > shown {
        browser
            .goto(&format!("http://127.0.0.1:{port}/?all=1"))
            .map_err(|e| anyhow!(e))?;
        let label = format!("{n} clients: page refresh showing all rows");
        refresh_row(b, &browser, n, &label, 200.0)?;
    }
    Ok(())
}

/// The [`refreshes`] of the open page as a row `label`, its median and max under `limit` ms.
pub(crate) fn refresh_row(
    b: &mut Bench,
    browser: &webdriver::Browser,
    rows: usize,
    label: &str,
    limit: f64,
) -> Result<()> {
    let (median, max) = refreshes(browser, rows)?;
    let i = b.add(
        "scale",
        &format!("{label} (median of 10; max {max:.0} ms)"),
        median,
        "ms",
    );
    b.target(i, &format!("< {limit} ms"), median < limit && max < limit);
    Ok(())
}

/// Ten refreshes of the open page (fetch, swap, layout, as its script times them): the median
/// and the max, in ms. The page must show at least `rows` clients.
pub(crate) fn refreshes(browser: &webdriver::Browser, rows: usize) -> Result<(f64, f64)> {
    let v = browser
        .eval_async(
            "const done = arguments[arguments.length - 1];
             (async () => {
               const ms = [];
               for (let k = 0; k < 10; k++) {
                 await window.testbedRefresh();
                 ms.push(Number(document.getElementById('live').dataset.renderMs));
               }
               ms.sort((a, b) => a - b);
               done({median: ms[5], max: ms[9],
                     rows: document.querySelectorAll('table.clients tr.client').length});
             })();",
        )
        .map_err(|e| anyhow!(e))?;
    let median = v["median"]
        .as_f64()
        .ok_or_else(|| anyhow!("no timing: {v}"))?;
    let max = v["max"].as_f64().unwrap_or(f64::NAN);
    if (v["rows"].as_u64().unwrap_or(0) as usize) < rows {
        bail!("Chromium shows {} of {rows} clients", v["rows"]);
    }
    Ok((median, max))
}
