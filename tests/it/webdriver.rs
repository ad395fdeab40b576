//! Just enough of the W3C WebDriver protocol to drive Debian's headless Chromium through
//! chromedriver: open a page, run a script, take a screenshot. Shared by the status-page test
//! and `make bench` (which includes this file by path).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver and the Chromium it starts, in their own process group: dropped, the session
/// is closed and the whole group killed, so no browser outlives a failing test.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Browser {
    /// Start chromedriver on `port` and a headless Chromium with a fresh profile in `profile`.
    pub fn start(port: u16, profile: &Path) -> Result<Browser, String> {
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("chromedriver: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
            rt,
            http,
        };
        let end = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > end {
                return Err("chromedriver did not listen within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1280,2000",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = b.call("POST", "/session", Some(caps))?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {v}"))?
            .to_string();
        Ok(b)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let req = match method {
            "POST" => self.http.post(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.get(&url),
        }
        .timeout(Duration::from_secs(60));
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(b.to_string()),
            None => req,
        };
        let text = self.rt.block_on(async {
            let r = req.send().await.map_err(|e| e.to_string())?;
            r.text().await.map_err(|e| e.to_string())
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text:.300}"))?;
        if let Some(err) = v["value"].get("error") {
            return Err(format!("webdriver {path}: {err} {}", v["value"]["message"]));
        }
        Ok(v.get("value").cloned().unwrap_or(Value::Null))
    }

    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.call(
            "POST",
            &format!("/session/{}/url", self.session),
            Some(json!({ "url": url })),
        )
        .map(|_| ())
    }

    /// Run `script` (a function body; `return` a JSON-able value) in the page.
    pub fn eval(&self, script: &str) -> Result<Value, String> {
        self.call(
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Run an async `script`: its last argument is the callback to call with the result.
    #[allow(dead_code)] // used by `make bench` (benches/lab.rs includes this file)
    pub fn eval_async(&self, script: &str) -> Result<Value, String> {
        self.call(
            "POST",
            &format!("/session/{}/execute/async", self.session),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>, String> {
        let v = self.call(
            "GET",
            &format!("/session/{}/screenshot", self.session),
            None,
        )?;
        let b64 = v.as_str().ok_or("screenshot: no data")?;
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("screenshot: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let pgid = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}
