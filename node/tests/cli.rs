//! The `kairan` binary as scripts and operators use it.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kairan(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kairan")).args(args).current_dir(dir).output().expect("run kairan")
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Root keys, trust file, an origin and a national relay certificate in `dir`.
fn identities(dir: &Path) {
    for name in ["root-1", "root-2", "root-3", "mhlw", "jp"] {
        ok(&kairan(&["keygen", "--name", name, "--out", "keys"], dir));
    }
    ok(&kairan(
        &[
            "trust",
            "init",
            "--threshold",
            "2",
            "--root",
            "keys/root-1.pub",
            "--root",
            "keys/root-2.pub",
            "--root",
            "keys/root-3.pub",
            "--out",
            "trust.toml",
        ],
        dir,
    ));
    for (subject, role, out) in [("mhlw", "origin", "mhlw.cert.json"), ("jp", "relay", "jp.cert.json")] {
        ok(&kairan(
            &[
                "cert",
                "issue",
                "--subject",
                subject,
                "--subject-key",
                &format!("keys/{subject}.pub"),
                "--role",
                role,
                "--scope",
                "jp",
                "--issuer-key",
                "keys/root-1.key",
                "--issuer-key",
                "keys/root-2.key",
                "--out",
                out,
            ],
            dir,
        ));
    }
}

#[test]
fn keygen_writes_the_contracted_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(&kairan(&["keygen", "--name", "mhlw", "--out", "keys"], dir.path()));
    let public = std::fs::read_to_string(dir.path().join("keys/mhlw.pub")).expect("pub");
    assert_eq!(public.len(), 65);
    assert!(public[..64].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(dir.path().join("keys/mhlw.key")).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn keygen_recipient_prints_the_key_it_writes_and_clinic_toml_names_a_bad_recipient_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ok(&kairan(&["keygen-recipient", "--out", "keys/clinic.x25519"], dir.path()));
    let line =
        |label: &str| out.lines().find_map(|l| l.strip_prefix(label)).map(str::trim).expect(label).to_owned();
    let path = dir.path().join("keys/clinic.x25519");
    let secret = kairan_node::keyfile::load_recipient(&path).expect("loads");
    assert_eq!(
        (line("public key"), line("kid")),
        (secret.public().to_hex(), secret.public().kid().to_owned())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).expect("key").permissions().mode() & 0o777, 0o600);
    }
    let again = kairan(&["keygen-recipient", "--out", "keys/clinic.x25519"], dir.path());
    assert_eq!(again.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    identities(dir.path());
    let clinic = |key: &str| {
        format!(
            "[clinic]\nid = \"c1\"\nscope = \"jp/13/chuo\"\ndata_dir = \"inbox\"\ntrust = \"trust.toml\"\n\
             recipient_key = \"{key}\"\n[upstream]\nurl = \"mqtts://127.0.0.1:8885\"\nparent = \"jp-13-chuo\"\n"
        )
    };
    std::fs::write(dir.path().join("clinic.toml"), clinic("keys/missing.x25519")).expect("write");
    let output = kairan(&["inbox", "--config", "clinic.toml", "list"], dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("clinic.recipient_key") && stderr.contains("missing.x25519"), "{stderr}");
    std::fs::write(dir.path().join("clinic.toml"), clinic("keys/clinic.x25519")).expect("write");
    ok(&kairan(&["inbox", "--config", "clinic.toml", "list"], dir.path()));
}

#[test]
fn template_sign_verify_and_json_failure_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    identities(dir.path());
    let template = ok(&kairan(&["advisory", "template"], dir.path()));
    std::fs::write(dir.path().join("advisory.toml"), template).expect("write");
    let envelope = ok(&kairan(&["advisory", "sign", "--key", "keys/mhlw.key", "advisory.toml"], dir.path()));
    std::fs::write(dir.path().join("advisory.json"), &envelope).expect("write");
    let text = ok(&kairan(
        &["verify", "--trust", "trust.toml", "--cert", "mhlw.cert.json", "advisory.json"],
        dir.path(),
    ));
    assert!(text.contains("VERIFIED") && text.contains("root (root-1, root-2; threshold 2)"), "{text}");
    let json = ok(&kairan(
        &["verify", "--json", "--trust", "trust.toml", "--cert", "mhlw.cert.json", "advisory.json"],
        dir.path(),
    ));
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(value["verified"], true);
    assert_eq!(value["origin"], "mhlw");
    // Without the origin certificate: refused, exit 1, reason named.
    let refused = kairan(&["verify", "--json", "--trust", "trust.toml", "advisory.json"], dir.path());
    assert_eq!(refused.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&refused.stdout).expect("json");
    assert_eq!(value["reason"], "unknown_signer");
}

/// Issue 8: TLP:RED and AMBER+STRICT advisories travel only sealed, which `kairan publish
/// --seal-to` does; signing or importing one says so, naming the rule and the command.
#[test]
fn red_advisories_are_refused_naming_the_sealing_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    identities(dir.path());
    let template = ok(&kairan(&["advisory", "template"], dir.path()));
    std::fs::write(dir.path().join("amber.toml"), &template).expect("write");
    let red = template.replacen("tlp = \"AMBER\"", "tlp = \"RED\"", 1);
    assert_ne!(red, template, "the template has tlp = \"AMBER\"");
    std::fs::write(dir.path().join("red.toml"), red).expect("write");
    let refused = kairan(&["advisory", "sign", "--key", "keys/mhlw.key", "red.toml"], dir.path());
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            "TLP:RED advisories must be sealed to named recipients (issue 8): publish it with kairan \
             publish --seal-to CLINIC_ID"
        ),
        "{stderr}"
    );
    let csaf = ok(&kairan(&["advisory", "export", "--format", "csaf-2.1", "amber.toml"], dir.path()));
    let strict = csaf.replacen("\"label\": \"AMBER\"", "\"label\": \"AMBER+STRICT\"", 1);
    assert_ne!(strict, csaf, "the export has the AMBER label");
    std::fs::write(dir.path().join("strict.json"), strict).expect("write");
    let refused = kairan(&["advisory", "import", "--format", "csaf-2.1", "strict.json"], dir.path());
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("TLP:AMBER+STRICT advisories must be sealed"), "{stderr}");
    assert!(stderr.contains("--seal-to-scope DISTRICT_SCOPE"), "{stderr}");
}

#[test]
fn bad_config_exits_64_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    identities(dir.path());
    let cases = [
        (
            "[node]\nid = \"jp\"\ndata_dir = \"d\"\nkey = \"keys/jp.key\"\ncert = \"jp.cert.json\"\ntrust = \"trust.toml\"\n[upstream]\ningest = true\n[broker]\nlisten = \"not-an-address\"\n",
            "broker.listen",
        ),
        (
            "[node]\nid = \"jp\"\ndata_dir = \"d\"\nkey = \"keys/jp.key\"\ncert = \"jp.cert.json\"\ntrust = \"trust.toml\"\n[upstream]\nurl = \"mqtt://127.0.0.1:1\"\n",
            "upstream.parent",
        ),
        (
            "[node]\nid = \"jp\"\ndata_dir = \"d\"\nkey = \"keys/jp.key\"\ncert = \"mhlw.cert.json\"\ntrust = \"trust.toml\"\n[upstream]\ningest = true\n",
            "node.cert",
        ),
        (
            "[node]\nid = \"jp\"\ndata_dir = \"d\"\nkey = \"keys/jp.key\"\ncert = \"jp.cert.json\"\ntrust = \"trust.toml\"\n[upstream]\nurl = \"mqtt://relay.jp.example:1883\"\nparent = \"jp\"\n",
            "upstream.url: mqtt://relay.jp.example:1883 is plaintext over the network",
        ),
        (
            "[node]\nid = \"jp\"\ndata_dir = \"d\"\nkey = \"keys/jp.key\"\ncert = \"jp.cert.json\"\ntrust = \"trust.toml\"\n[upstream]\ningest = true\n[broker]\nexternal = \"mqtt://mqtt.example:1883\"\n",
            "broker.external: mqtt://mqtt.example:1883 is plaintext over the network",
        ),
        (
            "[node]\nid = \"jp\"\ndata_dir = \"d\"\nkey = \"keys/jp.key\"\ncert = \"jp.cert.json\"\ntrust = \"trust.toml\"\nbogus = 1\n[upstream]\ningest = true\n",
            "bogus",
        ),
        (
            "[node]\nid = \"jp\"\ndata_dir = \"d\"\nkey = \"keys/jp.key\"\ncert = \"jp.cert.json\"\ntrust = \"trust.toml\"\n[upstream]\ningest = true\n[broker]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"localhost:nine\"\n",
            "metrics.listen",
        ),
    ];
    for (text, field) in cases {
        std::fs::write(dir.path().join("node.toml"), text).expect("write");
        let output = kairan(&["node", "--config", "node.toml"], dir.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(field), "error should name {field}: {stderr}");
    }
    // An environment override is applied (and checked) too.
    std::fs::write(dir.path().join("node.toml"), cases[0].0.replace("not-an-address", "127.0.0.1:0"))
        .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_kairan"))
        .args(["node", "--config", "node.toml"])
        .env("KAIRAN__BROKER__LISTEN", "still-not-an-address")
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("still-not-an-address"));
    // A metrics address that cannot be bound stops the node the same way, before its store opens.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let text = cases[0].0.replace("not-an-address", "127.0.0.1:0");
    std::fs::write(dir.path().join("node.toml"), format!("{text}[metrics]\nlisten = \"127.0.0.1:{port}\"\n"))
        .expect("write");
    let output = kairan(&["node", "--config", "node.toml"], dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("metrics.listen"), "{stderr}");
}

#[test]
fn generated_configs_parse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = ok(&kairan(&["node", "generate-config"], dir.path()));
    let clinic = ok(&kairan(&["clinic", "generate-config"], dir.path()));
    let _: kairan_node::config::NodeFile = toml::from_str(&node).expect("node template parses");
    let _: kairan_node::config::ClinicFile = toml::from_str(&clinic).expect("clinic template parses");
}

#[cfg(unix)]
#[test]
fn node_process_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    identities(dir.path());
    std::fs::write(
        dir.path().join("node.toml"),
        "[node]\nid = \"jp\"\ndata_dir = \"data\"\nkey = \"keys/jp.key\"\ncert = \"jp.cert.json\"\ntrust = \"trust.toml\"\n[upstream]\ningest = true\n[broker]\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("write");
    let child = Command::new(env!("CARGO_BIN_EXE_kairan"))
        .args(["node", "--config", "node.toml", "--log-format", "json"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    // Wait until it has opened its store and started its broker.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.path().join("data/index").exists() {
        assert!(Instant::now() < deadline, "node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("relay node stopped; store flushed"), "{stderr}");
    assert!(stderr.lines().all(|line| line.starts_with('{')), "JSON logs: {stderr}");
}

#[test]
fn deploy_examples_parse() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    for node in
        ["national/node.toml", "prefecture-13/node.toml", "district-13-chuo/node.toml", "node.example.toml"]
    {
        let text = std::fs::read_to_string(deploy.join(node)).expect("read");
        let _: kairan_node::config::NodeFile =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{node}: {e}"));
    }
    for clinic in ["clinic/clinic.toml", "clinic.example.toml"] {
        let text = std::fs::read_to_string(deploy.join(clinic)).expect("read");
        let _: kairan_node::config::ClinicFile =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{clinic}: {e}"));
    }
}

#[cfg(unix)]
#[test]
fn publish_reaches_a_running_national_node_and_advances_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    identities(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    // The origin's password, hashed into the national node's members file by the command an
    // operator uses (files holding secrets are mode 0600).
    kairan_node::secrets::write_private(&dir.path().join("mhlw.secret"), b"origin-password-1\n")
        .expect("secret");
    ok(&kairan(
        &[
            "members",
            "add",
            "--members",
            "members.toml",
            "--id",
            "mhlw",
            "--kind",
            "origin",
            "--password-file",
            "mhlw.secret",
        ],
        dir.path(),
    ));
    let members = std::fs::read_to_string(dir.path().join("members.toml")).expect("members");
    assert!(members.contains("password_hash = \"$7$") && !members.contains("origin-password-1"), "{members}");
    std::fs::write(
        dir.path().join("node.toml"),
        format!(
            "[node]\nid = \"jp\"\ndata_dir = \"data\"\nkey = \"keys/jp.key\"\ncert = \"jp.cert.json\"\ntrust = \"trust.toml\"\n\
             [upstream]\ningest = true\n[broker]\nlisten = \"127.0.0.1:{port}\"\nmembers = \"members.toml\"\n"
        ),
    )
    .expect("write");
    let child = Command::new(env!("CARGO_BIN_EXE_kairan"))
        .args(["node", "--config", "node.toml"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "node did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    // A sample dated 2021 is older than the origin's certificate: refused before publishing.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/01-ransomware.toml");
    let to = format!("mqtts://127.0.0.1:{port}");
    let refused = kairan(
        &[
            "publish",
            "--key",
            "keys/mhlw.key",
            "--cert",
            "mhlw.cert.json",
            "--trust",
            "trust.toml",
            "--to",
            &to,
            "--password-file",
            "mhlw.secret",
            sample.to_str().expect("utf8"),
        ],
        dir.path(),
    );
    assert_eq!(refused.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("outside the origin certificate's validity"));
    let dated_now = std::fs::read_to_string(&sample)
        .expect("sample")
        .replace("issued_at = \"2021-12-01T10:00:00+09:00\"", "");
    std::fs::write(dir.path().join("advisory.toml"), dated_now).expect("write");
    let sample = dir.path().join("advisory.toml");
    for expected_seq in [1, 2] {
        let output = kairan(
            &[
                "publish",
                "--key",
                "keys/mhlw.key",
                "--cert",
                "mhlw.cert.json",
                "--trust",
                "trust.toml",
                "--to",
                &to,
                "--password-file",
                "mhlw.secret",
                sample.to_str().expect("utf8"),
            ],
            dir.path(),
        );
        let stdout = ok(&output);
        assert!(stdout.contains(&format!("seq {expected_seq})")), "{stdout}");
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("keys/mhlw.state.json")).expect("state"))
            .expect("json");
    assert_eq!(state["chains"]["jp"]["seq"], 2);
    // A wrong password is refused by the broker.
    kairan_node::secrets::write_private(&dir.path().join("bad.secret"), b"wrong\n").expect("secret");
    let refused = kairan(
        &[
            "publish",
            "--key",
            "keys/mhlw.key",
            "--cert",
            "mhlw.cert.json",
            "--trust",
            "trust.toml",
            "--to",
            &to,
            "--password-file",
            "bad.secret",
            "--head",
        ],
        dir.path(),
    );
    assert!(!refused.status.success());
    // The broker is relay jp's: an origin told to expect another relay refuses it, before
    // sending its password.
    let wrong_relay = kairan(
        &[
            "publish",
            "--key",
            "keys/mhlw.key",
            "--cert",
            "mhlw.cert.json",
            "--to",
            &to,
            "--trust",
            "trust.toml",
            "--node",
            "jp-99",
            "--password-file",
            "mhlw.secret",
            "--head",
        ],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&wrong_relay.stderr);
    assert_eq!(wrong_relay.status.code(), Some(70), "{stderr}");
    assert!(stderr.contains(&format!("{to} presents the key of relay jp (keyid ")), "{stderr}");
    assert!(stderr.contains("not of the configured parent jp-99"), "{stderr}");
    // Without the anchors (to check the broker and the acceptance with) nothing is sent.
    let no_trust = kairan(
        &["publish", "--key", "keys/mhlw.key", "--cert", "mhlw.cert.json", "--to", &to, "--head"],
        dir.path(),
    );
    assert_eq!(no_trust.status.code(), Some(2), "a missing argument, as clap reports it");
    assert!(String::from_utf8_lossy(&no_trust.stderr).contains("--trust"));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("accepted").count(), 2, "{stderr}");
}

#[test]
fn rabbitmq_config_is_written_from_the_members_file_and_a_member_without_its_hash_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    identities(dir.path());
    for (id, kind, secret, rabbitmq) in
        [("mhlw", "origin", "origin-password-12", true), ("admin", "admin", "admin-password-12", false)]
    {
        let file = format!("{id}.secret");
        kairan_node::secrets::write_private(&dir.path().join(&file), secret.as_bytes()).expect("secret");
        let mut args = vec![
            "members",
            "add",
            "--members",
            "members.toml",
            "--id",
            id,
            "--kind",
            kind,
            "--password-file",
            &file,
        ];
        if rabbitmq {
            args.push("--rabbitmq");
        }
        ok(&kairan(&args, dir.path()));
    }
    kairan_node::secrets::write_private(&dir.path().join("own.secret"), b"own-clients-password-1\n")
        .expect("own");
    std::fs::write(
        dir.path().join("node.toml"),
        "[node]\nid = \"jp\"\ndata_dir = \"data\"\nkey = \"keys/jp.key\"\ncert = \"jp.cert.json\"\ntrust = \"trust.toml\"\n\
         [upstream]\ningest = true\n[broker]\nexternal = \"mqtt://127.0.0.1:1883\"\npassword_file = \"own.secret\"\nmembers = \"members.toml\"\n",
    )
    .expect("write");
    let args =
        ["broker", "rabbitmq-config", "--config", "node.toml", "--listen", "127.0.0.1:1883", "--out", "mq"];
    let refused = kairan(&args, dir.path());
    assert_eq!(refused.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("member admin") && stderr.contains("--rabbitmq"), "{stderr}");
    assert!(!dir.path().join("mq").join("kairan-definitions.json").exists(), "nothing written");

    let secret = "admin.secret";
    ok(&kairan(
        &[
            "members",
            "add",
            "--members",
            "members.toml",
            "--id",
            "admin",
            "--kind",
            "admin",
            "--password-file",
            secret,
            "--rabbitmq",
        ],
        dir.path(),
    ));
    ok(&kairan(&args, dir.path()));
    let definitions = dir.path().join("mq").join("kairan-definitions.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&definitions).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o077, 0, "password hashes are the owner's only");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&definitions).expect("read")).expect("json");
    let users: Vec<&str> =
        json["users"].as_array().expect("users").iter().filter_map(|u| u["name"].as_str()).collect();
    for user in ["jp~out", "jp~ingest", "mhlw", "admin"] {
        assert!(users.contains(&user), "{user} in {users:?}");
    }
    let conf = std::fs::read_to_string(dir.path().join("mq").join("rabbitmq.conf")).expect("conf");
    assert!(conf.contains("mqtt.listeners.tcp.default = 127.0.0.1:1883"), "{conf}");
}

#[test]
fn tls_cert_writes_what_openssl_and_mosquitto_load() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    identities(dir.path());
    ok(&kairan(&["keygen", "--name", "jp-13", "--out", "keys"], dir.path()));
    ok(&kairan(
        &[
            "cert",
            "issue",
            "--subject",
            "jp-13",
            "--subject-key",
            "keys/jp-13.pub",
            "--role",
            "relay",
            "--scope",
            "jp/13",
            "--issuer-key",
            "keys/jp.key",
            "--issuer-cert",
            "jp.cert.json",
            "--out",
            "jp-13.cert.json",
        ],
        dir.path(),
    ));
    let stdout = ok(&kairan(
        &[
            "tls",
            "cert",
            "--key",
            "keys/jp-13.key",
            "--cert",
            "jp-13.cert.json",
            "--chain",
            "jp.cert.json",
            "--out",
            "tls",
        ],
        dir.path(),
    ));
    assert!(stdout.contains("tls_version tlsv1.3"), "{stdout}");
    let (cert, key) = (dir.path().join("tls/jp-13.crt.pem"), dir.path().join("tls/jp-13.key.pem"));
    let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is readable by its owner only");
    // OpenSSL (what Mosquitto loads them with) reads both, and they are one key pair.
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl").args(args).current_dir(dir.path()).output();
        output.ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Some(text) = openssl(&["x509", "-in", "tls/jp-13.crt.pem", "-noout", "-text"]) else {
        assert!(std::env::var("KAIRAN_REQUIRE_MOSQUITTO").is_err(), "openssl is missing");
        eprintln!("NOTICE: openssl is not installed; the PEM files were not checked with it");
        return;
    };
    assert!(text.contains("ED25519"), "{text}");
    assert!(text.contains("CN = jp-13") || text.contains("CN=jp-13"), "{text}");
    assert!(text.contains("2.25.2512605605985017033"), "the kairan certificates travel in it: {text}");
    let from_cert = openssl(&["x509", "-in", "tls/jp-13.crt.pem", "-noout", "-pubkey"]).expect("pubkey");
    let from_key = openssl(&["pkey", "-in", "tls/jp-13.key.pem", "-pubout"]).expect("key reads");
    assert_eq!(from_cert, from_key, "the certificate is for the key written beside it");
    assert!(cert.exists());

    // Without the certificate above it, no child could verify the broker: refused, naming
    // node.chain.
    std::fs::write(
        dir.path().join("node.toml"),
        "[node]\nid = \"jp-13\"\ndata_dir = \"d\"\nkey = \"keys/jp-13.key\"\ncert = \"jp-13.cert.json\"\ntrust = \"trust.toml\"\n[upstream]\nurl = \"mqtts://127.0.0.1:1\"\nparent = \"jp\"\n",
    )
    .expect("write");
    let refused = kairan(&["tls", "cert", "--config", "node.toml", "--out", "tls2"], dir.path());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("node.chain: children could not accept this certificate"), "{stderr}");
}

/// Issue 7, attack 8d: members files and password files were accepted with mode 0644 and
/// members files held plaintext passwords. Now a secret file group or others can read stops
/// the command with exit 64 naming the field and the file, and a plaintext password is refused.
#[cfg(unix)]
#[test]
fn secrets_readable_by_others_and_plaintext_passwords_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    identities(dir.path());
    let open_to_all = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    };
    let node = "[node]\nid = \"jp\"\ndata_dir = \"d\"\nkey = \"keys/jp.key\"\ncert = \"jp.cert.json\"\n\
                trust = \"trust.toml\"\n[upstream]\ningest = true\n[broker]\nlisten = \"127.0.0.1:0\"\n\
                members = \"members.toml\"\n";
    std::fs::write(dir.path().join("node.toml"), node).expect("write");
    let refused = |args: &[&str], field: &str, file: &str| {
        let output = kairan(args, dir.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(field) && stderr.contains(file), "should name {field} and {file}: {stderr}");
        stderr.into_owned()
    };
    // A members file written by `kairan members add`, then opened to everyone.
    kairan_node::secrets::write_private(&dir.path().join("mhlw.secret"), b"origin-password-1\n")
        .expect("secret");
    let add = [
        "members",
        "add",
        "--members",
        "members.toml",
        "--id",
        "mhlw",
        "--kind",
        "origin",
        "--password-file",
        "mhlw.secret",
    ];
    ok(&kairan(&add, dir.path()));
    std::fs::set_permissions(dir.path().join("members.toml"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let stderr = refused(&["node", "--config", "node.toml"], "broker.members", "members.toml");
    assert!(stderr.contains("mode 0644"), "{stderr}");
    // `members add` will not extend it either, nor read a password file open to everyone.
    refused(&add, "members file", "members.toml");
    open_to_all("open.secret", "origin-password-2\n");
    let add_open = [
        "members",
        "add",
        "--members",
        "fresh.toml",
        "--id",
        "nisc",
        "--kind",
        "origin",
        "--password-file",
        "open.secret",
    ];
    refused(&add_open, "password file", "open.secret");
    assert!(!dir.path().join("fresh.toml").exists(), "nothing written");
    // A plaintext password in a (private) members file.
    kairan_node::secrets::write_private(
        &dir.path().join("members.toml"),
        b"[[members]]\nid = \"mhlw\"\nkind = \"origin\"\npassword = \"origin-password-1\"\n",
    )
    .expect("write");
    refused(&["node", "--config", "node.toml"], "broker.members", "password");
    // A clinic's password file open to everyone.
    let clinic = "[clinic]\nid = \"c1\"\nscope = \"jp\"\ndata_dir = \"inbox\"\ntrust = \"trust.toml\"\n\
                  [upstream]\nurl = \"mqtt://127.0.0.1:1\"\nparent = \"jp\"\npassword_file = \"open.secret\"\n";
    std::fs::write(dir.path().join("clinic.toml"), clinic).expect("write");
    refused(&["clinic", "--config", "clinic.toml"], "upstream.password_file", "open.secret");
    assert!(!dir.path().join("inbox").exists(), "the clinic opened its inbox");
}

/// The README's demo still passes, and the demo's members cannot read outside their rows: a
/// stopped clinic's password is refused every subscription but its own.
#[test]
fn the_demo_passes_and_a_clinic_password_reads_only_its_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout = ok(&kairan(&["demo", "--keep"], dir.path()));
    assert!(stdout.contains("demo passed"), "{stdout}");
    let kept = stdout.lines().find_map(|l| l.strip_prefix("data kept in ")).expect("kept").to_owned();
    let kept = scopeguard_dir(Path::new(&kept));
    // The audit of one advisory it ends with, and the same through the CLI on its stores.
    assert!(stdout.contains("OK   every relay on its path proves it logged the advisory"), "{stdout}");
    let digest = stdout
        .lines()
        .find_map(|l| l.strip_prefix("VERIFIED  advisory ").and_then(|rest| rest.split(['(', ')']).nth(1)))
        .expect("the audited digest")
        .to_owned();
    let trust = kept.0.join("trust.toml");
    let (clinic, relays) = (kept.0.join("clinics/jp-13-chuo-c1/store"), kept.0.join("nodes"));
    let mut evidence: Vec<String> = vec![digest.clone(), "--trust".into(), trust.display().to_string()];
    evidence.extend(["--store".into(), clinic.display().to_string()]);
    for node in ["jp", "jp-13", "jp-13-chuo"] {
        evidence.extend(["--store".into(), relays.join(node).display().to_string()]);
    }
    let args = |command: &str, extra: &[&str]| -> Vec<String> {
        let mut all = vec!["audit".to_owned(), command.to_owned()];
        all.extend(evidence.iter().cloned());
        all.extend(extra.iter().map(|s| (*s).to_owned()));
        all
    };
    let run = |args: &[String]| kairan(&args.iter().map(String::as_str).collect::<Vec<_>>(), dir.path());
    let report = ok(&run(&args("advisory", &[])));
    assert_eq!(report.matches("proof verified").count(), 3, "{report}");
    let bundle = dir.path().join("evidence.json");
    ok(&run(&args("bundle", &["--out", bundle.to_str().expect("utf-8")])));
    let verify = |file: &Path| {
        kairan(
            &[
                "audit",
                "verify-bundle",
                file.to_str().expect("utf-8"),
                "--trust",
                trust.to_str().expect("utf-8"),
                "--json",
            ],
            dir.path(),
        )
    };
    let report: serde_json::Value = serde_json::from_str(&ok(&verify(&bundle))).expect("json");
    assert_eq!(report["logs"].as_array().map(Vec::len), Some(3), "{report}");
    // A relay's evidence moved to another leaf: exit 1, the piece named.
    let mut edited: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle).expect("bundle")).expect("json");
    let leaf = edited["logs"][0]["relay_seq"].as_u64().expect("relay_seq");
    edited["logs"][0]["relay_seq"] = serde_json::json!(leaf + 1);
    let edited_path = dir.path().join("edited.json");
    std::fs::write(&edited_path, serde_json::to_vec(&edited).expect("json")).expect("write");
    let refused = verify(&edited_path);
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("evidence_refused: jp's log"), "{refused:?}");
    let not_a_store = kairan(
        &[
            "audit",
            "advisory",
            &digest,
            "--trust",
            trust.to_str().expect("utf-8"),
            "--store",
            dir.path().to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    assert_eq!(not_a_store.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&not_a_store.stderr).contains("not a node's store"));
    let row_lines: Vec<&str> = stdout.lines().filter(|l| l.contains("'s password on ")).collect();
    assert_eq!(row_lines.len(), 4, "{stdout}");
    assert!(row_lines.iter().all(|l| l.starts_with("OK")), "{row_lines:#?}");
    assert!(row_lines[..3].iter().all(|l| l.ends_with("refused")), "{row_lines:#?}");
    assert!(row_lines[3].contains("its own catch-up answers") && row_lines[3].ends_with("granted"));
    // The TLP:RED step: sealed to two clinics of the first district, opened by exactly those two.
    let red: Vec<&str> =
        stdout.lines().skip_while(|l| !l.contains("One TLP:RED advisory")).skip(1).take(3).collect();
    assert_eq!(red.len(), 3, "{stdout}");
    assert!(red[..2].iter().all(|l| l.starts_with("OK") && l.contains("opens it: 【TLP:RED】")), "{red:#?}");
    assert!(red[2].starts_with("OK") && red[2].ends_with("cannot open it: not_a_recipient"), "{red:#?}");
}

/// Removes a directory the demo kept when dropped.
struct KeptDir(std::path::PathBuf);

impl Drop for KeptDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scopeguard_dir(path: &Path) -> KeptDir {
    KeptDir(path.to_owned())
}

#[test]
fn audit_log_passes_a_consistent_store_and_names_a_wrong_checkpoint() {
    use kairan_node::store::{CHECKPOINT_BLOB, DiskStore, Store, StoredDelivery, WriteBatch, WriteOp};
    use kairan_protocol::note::Checkpoint;
    use kairan_protocol::tlog::{Frontier, leaf_hash};
    use kairan_protocol::{Digest, SecretKey, Timestamp};

    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("store");
    let key = SecretKey::from_seed(&[7; 32]).expect("key");
    let sign = |size: u64, root| {
        let note = Checkpoint::new("kairan.example/jp", size, root).sign(&key).expect("sign");
        WriteBatch { ops: vec![WriteOp::Blob(CHECKPOINT_BLOB, note.to_bytes())] }
    };
    {
        let store = DiskStore::open(&store_dir).expect("open");
        let mut frontier = Frontier::new();
        for relay_seq in 1..=5u64 {
            let record = StoredDelivery {
                digest: Digest::of(&relay_seq.to_be_bytes()),
                origin: "mhlw".into(),
                seq: relay_seq,
                scope: "jp".into(),
                relay_seq,
                received_at: Timestamp::from_unix_ms(0),
                delivery: format!("{{\"n\":{relay_seq}}}").into(),
            };
            let hashes = frontier.append(leaf_hash(&record.delivery)).expect("room");
            store
                .commit(&WriteBatch { ops: vec![WriteOp::Accepted(record), WriteOp::TreeHashes(hashes)] })
                .expect("commit");
            store.commit(&sign(frontier.size(), frontier.root())).expect("checkpoint");
        }
    }
    let store_arg = store_dir.to_str().expect("utf-8 path");
    let report = ok(&kairan(&["audit", "log", "--store", store_arg], dir.path()));
    assert!(report.contains("log: 5 leaves") && report.contains("own checkpoints: 5 kept"), "{report}");
    assert!(report.ends_with("consistent\n") && !report.contains("NOT"), "{report}");
    std::fs::write(dir.path().join("node.pub"), format!("{}\n", key.public().to_hex())).expect("write");
    let signed = ok(&kairan(&["audit", "log", "--store", store_arg, "--key", "node.pub"], dir.path()));
    assert!(signed.contains("signatures checked"), "{signed}");
    std::fs::write(
        dir.path().join("other.pub"),
        format!("{}\n", SecretKey::from_seed(&[8; 32]).expect("key").public().to_hex()),
    )
    .expect("write");
    let output = kairan(&["audit", "log", "--store", store_arg, "--key", "other.pub"], dir.path());
    assert_eq!(output.status.code(), Some(1), "another key did not sign them");
    let json = ok(&kairan(&["audit", "log", "--store", store_arg, "--json"], dir.path()));
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(parsed["size"], 5);

    // A checkpoint of size 3 with a root the deliveries do not give: exit 1, named.
    DiskStore::open(&store_dir).expect("open").commit(&sign(3, leaf_hash(b"forged"))).expect("commit");
    let output = kairan(&["audit", "log", "--store", store_arg], dir.path());
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("INCONSISTENT: own checkpoint #6 signs root"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("log_inconsistent"));
    let missing =
        kairan(&["audit", "log", "--store", dir.path().join("nothing").to_str().expect("path")], dir.path());
    assert_eq!(missing.status.code(), Some(64));
}

#[test]
fn bench_clinic_measures_a_separate_clinic_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout = ok(&kairan(&["bench-clinic", "--advisories", "20"], dir.path()));
    let line = stdout.lines().find(|l| l.starts_with("kairan clinic process: ")).expect("the figures line");
    assert!(line.contains("after receiving 20 advisories"), "{line}");
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .filter(|n| *n > 1000)
        .collect();
    assert!(
        numbers.len() >= 3 && numbers.iter().all(|kib| *kib < 2_000_000),
        "plausible KiB figures: {line}"
    );
}
