//! The clinic's web inbox in a real headless browser.
//!
//! A tree over real MQTT (national → prefecture → district → one clinic serving its page on a
//! free loopback port). An advisory is published and found on the clinic's page with its
//! Japanese title; a second (TLP:GREEN) appears without a reload; a cancel marks the first as
//! cancelled and an update marks the second as superseded, still without a reload. The
//! `kairan inbox list --json` of the same inbox agrees. Screenshots of the list, one advisory
//! and its print view go to `$KAIRAN_SCREENSHOTS` (docs/screenshots/ when regenerating them)
//! or a temporary directory.
//!
//! Needs Debian's `chromium` and `chromium-driver` (and `fonts-noto-cjk` for the Japanese
//! glyphs); skips with a notice without them, fails with `KAIRAN_REQUIRE_BROWSER=1`.

mod browser;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use fantoccini::Locator;
use kairan_node::draft::{AdvisoryDraft, SAMPLES};
use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder};
use kairan_protocol::{Advisory, Digest, Kind, Localized, Tlp};

const WAIT: Duration = Duration::from_secs(30);

/// Sample `index`, re-dated to now.
fn sample(index: usize) -> Advisory {
    let mut draft = AdvisoryDraft::parse(SAMPLES[index].1).expect("sample parses");
    draft.issued_at = None;
    draft.expires_at = None;
    draft.valid_days = Some(30);
    draft.into_advisory(kairan_node::clock::now(), None).expect("sample is valid")
}

/// A notice of `kind` about `target` (sample `index`'s text, re-titled).
fn notice(index: usize, kind: Kind, target: Digest, id: &str, ja: &str, en: &str) -> Advisory {
    let mut advisory = sample(index);
    advisory.kind = kind;
    advisory.references = vec![target];
    advisory.id = id.into();
    advisory.title = Localized::new("ja", ja).with("en", en);
    advisory
}

async fn publish(tree: &mut Hierarchy, advisory: Advisory) -> Digest {
    let (bytes, digest) = tree.sign_next(advisory);
    tree.publish_raw(bytes).await.expect("publish");
    digest
}

fn screenshots_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("KAIRAN_SCREENSHOTS") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).expect("screenshot dir");
            (dir, None)
        }
        None => {
            let temporary = tempfile::tempdir().expect("tempdir");
            (temporary.path().to_owned(), Some(temporary))
        }
    }
}

/// `kairan inbox --config … ARGS` of the tree's clinic: its standard output.
fn cli_inbox(tree: &Hierarchy, args: &[&str]) -> String {
    let clinic = &tree.clinics[0].config;
    let config = tree.dir.join("clinic.toml");
    let text = format!(
        "[clinic]\nid = \"{}\"\nscope = \"{}\"\ndata_dir = \"{}\"\ntrust = \"{}\"\n\n[upstream]\nurl = \"{}\"\nparent = \"{}\"\n\n[web]\nenabled = false\n",
        clinic.id,
        clinic.scope,
        clinic.data_dir.display(),
        tree.dir.join("trust.toml").display(),
        clinic.addr.url(),
        clinic.district
    );
    std::fs::write(&config, text).expect("clinic.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_kairan"))
        .args(["inbox", "--config"])
        .arg(&config)
        .args(args)
        .output()
        .expect("kairan inbox");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinic_page_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser::programs() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = HierarchyBuilder::new(dir.path())
        .prefectures(1)
        .districts_per_prefecture(1)
        .clinics_per_district(1)
        .clinic_web(true)
        .start()
        .await
        .expect("tree");
    tree.wait_subscribed(WAIT).await.expect("subscribed");
    let web = tree.clinics[0].handle.as_ref().and_then(|h| h.web).expect("the clinic serves its page");
    let page = format!("http://{web}/");

    let ransomware = sample(0);
    let ransomware_title = ransomware.title.get("ja").to_owned();
    let first = publish(&mut tree, ransomware).await;
    let browser = browser::Browser::start(&chromium, &chromedriver).await;
    browser.client.goto(&page).await.expect("open the page");
    browser.wait_for("li.row h2.title", WAIT, |titles| titles == [ransomware_title.clone()]).await;
    // Rendered, not only in the DOM: the title has a width and the Japanese font is in use.
    let width = browser
        .client
        .execute("return document.querySelector('li.row h2.title a').getBoundingClientRect().width;", vec![])
        .await
        .expect("width");
    assert!(width.as_f64().unwrap_or(0.0) > 200.0, "title width {width}");
    // A marker that only survives if the page is never reloaded.
    browser.client.execute("window.kairanNoReload = 42; return true;", vec![]).await.expect("marker");

    let mut emotet = sample(1);
    // TLP:RED: sealed to this clinic (issue 8), which opens it with its recipient key for
    // display; relays and stores see only ciphertext.
    emotet.tlp = Tlp::Red;
    emotet.handling = "指定された受信者限り / named recipients only".into();
    let emotet_title = emotet.title.get("ja").to_owned();
    let clinic_id = tree.clinics[0].config.id.clone();
    let clinic_key = kairan_protocol::fixtures::sealed::recipient(&clinic_id);
    let (bytes, second) = tree.sign_next_sealed_to(emotet, &[(clinic_id.as_str(), clinic_key.public())]);
    tree.publish_raw(bytes).await.expect("publish");
    let titles = browser.wait_for("li.row h2.title", WAIT, |titles| titles.len() == 2).await;
    assert_eq!(titles, [emotet_title.clone(), ransomware_title.clone()], "newest first");
    let fresh = browser.texts("li.row.fresh h2.title").await;
    assert_eq!(fresh, std::slice::from_ref(&emotet_title), "the new row is marked");
    assert_eq!(browser.texts("li.row .tlp").await, ["TLP:RED", "TLP:AMBER"]);

    let cancel_title = "【取消】ランサムウェア注意喚起（MHLW-CS-2021-001）の取消";
    let cancel =
        notice(0, Kind::Cancel, first, "MHLW-CS-2021-001-C", cancel_title, "[Cancel] MHLW-CS-2021-001");
    let cancel_digest = publish(&mut tree, cancel).await;
    let update_title = "【更新】Emotet の活動再開について（第2報）";
    let update =
        notice(1, Kind::Update, second, "MHLW-CS-2021-002-2", update_title, "[Update] Emotet, second report");
    let update_digest = publish(&mut tree, update).await;
    let cancelled = browser
        .wait_for("li.row.cancelled h2.title", WAIT, |titles| titles == [ransomware_title.clone()])
        .await;
    assert_eq!(cancelled.len(), 1);
    browser.wait_for("li.row.superseded h2.title", WAIT, |titles| titles == [emotet_title.clone()]).await;
    let states = browser.texts("li.row .standing").await;
    assert_eq!(states, ["現行 / current", "現行 / current", "更新済み / superseded", "取消済み / cancelled"]);
    let marker =
        browser.client.execute("return window.kairanNoReload === 42;", vec![]).await.expect("marker");
    assert_eq!(marker, serde_json::Value::Bool(true), "the page was never reloaded");

    let (shots, _keep) = screenshots_dir();
    browser.screenshot(&shots.join("web-inbox-list.png")).await;
    let second_page = format!("{page}advisory/{}", &second.to_string()[7..]);
    browser.client.goto(&second_page).await.expect("open the advisory");
    let banners = browser.texts(".banner .tlp-label").await;
    assert_eq!(banners, ["TLP:RED", "TLP:RED"], "TLP banner at the top and the bottom");
    let headings = browser.texts("article.column h1").await;
    assert_eq!(headings.len(), 2, "Japanese and English side by side: {headings:?}");
    assert_eq!(headings[0], emotet_title);
    let path = browser.texts("ol.path li strong").await;
    assert_eq!(path, ["mhlw", "jp", "jp-13", "jp-13-chuo", "jp-13-chuo-c1"]);
    browser.screenshot(&shots.join("web-inbox-advisory-red.png")).await;
    browser
        .client
        .find(Locator::Css("nav.actions a[href$='/print']"))
        .await
        .expect("print link")
        .click()
        .await
        .expect("click");
    let markings = browser.wait_for(".marking", WAIT, |m| m.len() == 2).await;
    assert!(markings.iter().all(|m| m.starts_with("TLP:RED 取扱:")), "{markings:?}");
    browser.screenshot(&shots.join("web-inbox-print.png")).await;
    browser.close().await;

    let listed: serde_json::Value =
        serde_json::from_str(&cli_inbox(&tree, &["list", "--json"])).expect("JSON");
    let standing = |digest: &Digest| {
        let entries = listed["entries"].as_array().cloned().unwrap_or_default();
        let entry = entries.into_iter().find(|e| e["digest"] == digest.to_string()).expect("listed");
        entry["state"]["standing"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(standing(&first), "cancelled");
    assert_eq!(standing(&second), "superseded");
    assert_eq!(standing(&cancel_digest), "current");
    assert_eq!(standing(&update_digest), "current");
    let text = cli_inbox(&tree, &["list"]);
    eprintln!("kairan inbox list:\n{text}");
    let entries: Vec<&str> = text.lines().filter(|line| line.contains("sha256:")).collect();
    assert_eq!(entries.len(), 4, "one line with a digest per entry:\n{text}");
    assert!(entries[0].contains("取消済み") && entries[1].contains("更新済み"), "{text}");
    let shown = cli_inbox(&tree, &["show", &first.to_string()[7..19]]);
    eprintln!("kairan inbox show:\n{shown}");
    assert!(shown.contains("状態 / state: 取消済み / cancelled"), "{shown}");
    assert!(shown.contains("経緯 / history"), "{shown}");
    tree.shutdown().await.expect("shutdown");
}

/// A clinic.toml (with a trust file beside it) whose upstream is never reached, plus `web`.
fn clinic_config(dir: &std::path::Path, web: &str) -> PathBuf {
    let anchors = kairan_protocol::fixtures::Hierarchy::standard().anchors;
    std::fs::write(dir.join("trust.toml"), kairan_node::keyfile::render_trust(&anchors)).expect("trust");
    let config = dir.join("clinic.toml");
    let text = format!(
        "[clinic]\nid = \"c1\"\nscope = \"jp/13/chuo\"\ndata_dir = \"data\"\ntrust = \"trust.toml\"\nannounce = false\n\n[upstream]\nurl = \"mqtt://127.0.0.1:9\"\nparent = \"jp-13-chuo\"\n\n{web}"
    );
    std::fs::write(&config, text).expect("clinic.toml");
    config
}

#[test]
fn a_bad_web_address_exits_64_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (web, env) in [
        ("[web]\nlisten = \"0.0.0.0:8765\"\n", None),
        ("[web]\nlisten = \"localhost\"\n", None),
        ("", Some("not-an-address")),
    ] {
        let config = clinic_config(dir.path(), web);
        let mut command = Command::new(env!("CARGO_BIN_EXE_kairan"));
        command.args(["clinic", "--config"]).arg(&config);
        if let Some(value) = env {
            command.env("KAIRAN__WEB__LISTEN", value);
        }
        let output = command.output().expect("kairan clinic");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{web}: {stderr}");
        assert!(stderr.contains("configuration error: web.listen: "), "{stderr}");
    }
    // Turned off (here from the environment), the address is not looked at.
    let config = clinic_config(dir.path(), "[web]\nlisten = \"0.0.0.0:8765\"\n");
    let output = Command::new(env!("CARGO_BIN_EXE_kairan"))
        .args(["inbox", "--config"])
        .arg(&config)
        .arg("list")
        .env("KAIRAN__WEB__ENABLED", "false")
        .output()
        .expect("kairan inbox list");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "(inbox empty)\n");
}

#[cfg(unix)]
#[test]
fn kairan_clinic_serves_its_page_on_the_configured_address_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let config = clinic_config(dir.path(), &format!("[web]\nlisten = \"127.0.0.1:{port}\"\n"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_kairan"))
        .args(["clinic", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kairan clinic");
    let get = |host: &str| -> Option<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        write!(stream, "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).ok()?;
        Some(reply)
    };
    let deadline = std::time::Instant::now() + WAIT;
    let page = loop {
        if let Some(reply) = get(&format!("127.0.0.1:{port}")) {
            break reply;
        }
        assert!(std::time::Instant::now() < deadline, "kairan clinic never served its page");
        std::thread::sleep(Duration::from_millis(100));
    };
    let refused = get("kairan.example:80").unwrap_or_default();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().expect("wait");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("まだ通知はありません"), "{page}");
    assert!(refused.starts_with("HTTP/1.1 421"), "{refused}");
    assert_eq!(status.code(), Some(0), "clean stop on SIGTERM");
}
