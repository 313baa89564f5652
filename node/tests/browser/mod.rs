//! A real headless browser for the web inbox test: Debian's `chromium` driven through
//! Debian's `chromedriver` over WebDriver (fantoccini, plain HTTP on loopback). Nothing is
//! downloaded: when either program is missing the test skips with a notice, or fails when
//! `KAIRAN_REQUIRE_BROWSER=1`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// Where Debian puts them (override with `KAIRAN_CHROMIUM` / `KAIRAN_CHROMEDRIVER`).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromium's flags: headless, and none of the background connections the closed network
/// here would refuse (and no test should make).
const FLAGS: [&str; 11] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1400",
    "--lang=ja",
];

fn program(variable: &str, default: &str) -> PathBuf {
    std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// The browser's programs, or `None` (after a notice) when the test should skip.
pub fn programs() -> Option<(PathBuf, PathBuf)> {
    let chromium = program("KAIRAN_CHROMIUM", CHROMIUM);
    let chromedriver = program("KAIRAN_CHROMEDRIVER", CHROMEDRIVER);
    let missing: Vec<String> =
        [&chromium, &chromedriver].iter().filter(|p| !p.exists()).map(|p| p.display().to_string()).collect();
    if missing.is_empty() {
        return Some((chromium, chromedriver));
    }
    let message = format!(
        "web inbox browser test: {} missing (apt-get install -y chromium chromium-driver fonts-noto-cjk)",
        missing.join(" and ")
    );
    assert!(std::env::var("KAIRAN_REQUIRE_BROWSER").as_deref() != Ok("1"), "{message}");
    eprintln!("SKIPPED {message}; set KAIRAN_REQUIRE_BROWSER=1 to fail instead");
    None
}

/// A chromedriver process and a browser session; both end when this is dropped or closed.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a fresh Chromium profile.
    pub async fn start(chromium: &Path, chromedriver: &Path) -> Self {
        let port = free_port();
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = driver.kill();
                panic!("chromedriver did not listen on {url}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium.display().to_string(), "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector).capabilities(capabilities).connect(&url).await {
            Ok(client) => client,
            Err(error) => {
                let _ = driver.kill();
                panic!("cannot start a Chromium session through chromedriver: {error}");
            }
        };
        Browser { client, driver, _profile: profile }
    }

    /// The text of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.client.find_all(Locator::Css(css)).await.expect("find") {
            texts.push(element.text().await.expect("text"));
        }
        texts
    }

    /// Waits until `check` holds of the page's texts at `css`, up to `timeout`.
    pub async fn wait_for(
        &self,
        css: &str,
        timeout: Duration,
        check: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let texts = self.texts(css).await;
            if check(&texts) {
                return texts;
            }
            assert!(Instant::now() < deadline, "page never showed what was expected at {css:?}: {texts:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the whole page (the window resized to the page's height first).
    pub async fn screenshot(&self, path: &Path) {
        let height = self
            .client
            .execute("return Math.ceil(document.documentElement.scrollHeight);", vec![])
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(1400)
            .clamp(600, 6000);
        let _ = self.client.set_window_size(1280, u32::try_from(height).unwrap_or(1400)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).expect("write screenshot");
        let _ = self.client.set_window_size(1280, 1400).await;
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
