//! `kairan publish --seal-to-scope` / `--seal-to` against running `kairan node` processes: a
//! national node and a district under it whose clinics were enrolled with `kairan enroll`; the
//! district's directory reaches the national broker and the origin seals to its clinics.

#![cfg(unix)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kairan(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kairan")).args(args).current_dir(dir).output().expect("run kairan")
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port()
}

fn cert(dir: &Path, subject: &str, role: &str, scope: &str, issuer: &[&str]) {
    let key = format!("keys/{subject}.pub");
    let out = format!("{subject}.cert.json");
    let mut args = vec![
        "cert",
        "issue",
        "--subject",
        subject,
        "--subject-key",
        &key,
        "--role",
        role,
        "--scope",
        scope,
        "--out",
        &out,
    ];
    args.extend_from_slice(issuer);
    ok(&kairan(&args, dir));
}

fn secret(dir: &Path, name: &str, text: &str) {
    kairan_node::secrets::write_private(&dir.join(name), text.as_bytes()).expect("secret");
}

fn start_node(dir: &Path, config: &str, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_kairan"))
        .args(["node", "--config", config])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{config} did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn stop(child: Child) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn an_origin_seals_to_every_clinic_of_a_district_from_its_directory_on_the_national_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for name in ["root-1", "root-2", "mhlw", "jp", "jp-13-chuo"] {
        ok(&kairan(&["keygen", "--name", name, "--out", "keys"], root));
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
            "--out",
            "trust.toml",
        ],
        root,
    ));
    let roots = ["--issuer-key", "keys/root-1.key", "--issuer-key", "keys/root-2.key"];
    cert(root, "mhlw", "origin", "jp", &roots);
    cert(root, "jp", "relay", "jp", &roots);
    cert(
        root,
        "jp-13-chuo",
        "relay",
        "jp/13/chuo",
        &["--issuer-key", "keys/jp.key", "--issuer-cert", "jp.cert.json"],
    );

    // The national node: the origin and the district are its members.
    secret(root, "mhlw.secret", "origin-password-1\n");
    secret(root, "chuo.secret", "district-password-1\n");
    let add = |args: &[&str]| {
        ok(&kairan(&[&["members", "add", "--members", "national-members.toml"], args].concat(), root))
    };
    add(&["--id", "mhlw", "--kind", "origin", "--password-file", "mhlw.secret"]);
    add(&[
        "--id",
        "jp-13-chuo",
        "--kind",
        "relay",
        "--cert",
        "jp-13-chuo.cert.json",
        "--password-file",
        "chuo.secret",
    ]);
    let (national_port, district_port) = (free_port(), free_port());
    std::fs::write(
        root.join("national.toml"),
        format!(
            "[node]\nid = \"jp\"\ndata_dir = \"national\"\nkey = \"keys/jp.key\"\ncert = \"jp.cert.json\"\ntrust = \"trust.toml\"\n\
             [upstream]\ningest = true\n[broker]\nlisten = \"127.0.0.1:{national_port}\"\nmembers = \"national-members.toml\"\n"
        ),
    )
    .expect("national.toml");
    // The district, with two clinics enrolled as a volunteer enrolls them.
    std::fs::write(
        root.join("district.toml"),
        format!(
            "[node]\nid = \"jp-13-chuo\"\ndata_dir = \"district\"\nkey = \"keys/jp-13-chuo.key\"\ncert = \"jp-13-chuo.cert.json\"\n\
             trust = \"trust.toml\"\nchain = [\"jp.cert.json\"]\nrecipients = \"recipients.toml\"\n\
             [upstream]\nurl = \"mqtts://127.0.0.1:{national_port}\"\nparent = \"jp\"\npassword_file = \"chuo.secret\"\n\
             [broker]\nlisten = \"127.0.0.1:{district_port}\"\nmembers = \"district-members.toml\"\n"
        ),
    )
    .expect("district.toml");
    secret(root, "district-members.toml", "");
    for clinic in ["chuo-c1", "chuo-c2"] {
        ok(&kairan(&["enroll", "request", "--id", clinic, "--out", "clinics"], root));
        let request = format!("clinics/{clinic}.request.json");
        ok(&kairan(
            &["enroll", "issue", "--config", "district.toml", "--request", &request, "--out", "for-clinics"],
            root,
        ));
    }
    let national = start_node(root, "national.toml", national_port);
    let district = start_node(root, "district.toml", district_port);

    let template = ok(&kairan(&["advisory", "template"], root));
    let strict = template.replacen("tlp = \"AMBER\"", "tlp = \"AMBER+STRICT\"", 1).replacen(
        "scope = \"jp\"",
        "scope = \"jp/13/chuo\"",
        1,
    );
    assert_ne!(strict, template);
    std::fs::write(root.join("strict.toml"), &strict).expect("write");
    std::fs::write(root.join("amber.toml"), &template).expect("write");
    std::fs::write(root.join("red.toml"), template.replacen("tlp = \"AMBER\"", "tlp = \"RED\"", 1))
        .expect("write");
    let to = format!("mqtts://127.0.0.1:{national_port}");
    let publish = |extra: &[&str]| {
        let base = [
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
            "--wait",
            "20",
        ];
        kairan(&[&base[..], extra].concat(), root)
    };

    // Refused before anything is read or signed: a label that travels in clear, RED to a scope.
    let amber = publish(&["--seal-to", "chuo-c1", "amber.toml"]);
    assert_eq!(amber.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&amber.stderr).contains("this one is TLP:AMBER"), "{amber:?}");
    let red_scope = publish(&["--seal-to-scope", "jp/13/chuo", "red.toml"]);
    assert_eq!(red_scope.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&red_scope.stderr).contains("TLP:RED names each of its recipients"));

    // The district's directory reaches the national broker shortly after both nodes are up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let sealed = loop {
        let output = publish(&["--seal-to-scope", "jp/13/chuo", "strict.toml"]);
        if output.status.success() {
            break String::from_utf8_lossy(&output.stdout).into_owned();
        }
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains("no verified recipient directory for jp/13/chuo"), "{stderr}");
        assert!(Instant::now() < deadline, "the directory never reached the national broker: {stderr}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(sealed.contains("sealed to 2 clinic(s): chuo-c1, chuo-c2"), "{sealed}");
    assert!(sealed.contains("seq 1)"), "{sealed}");

    let unknown = publish(&["--seal-to", "chuo-c9", "red.toml"]);
    assert_eq!(unknown.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("--seal-to chuo-c9: no verified recipient directory lists chuo-c9"), "{stderr}");
    assert!(stderr.contains("jp/13/chuo v1"), "names the directories held: {stderr}");
    let red = ok(&publish(&["--seal-to", "chuo-c2", "red.toml"]));
    // The RED advisory's scope is jp: the first link of the origin's chain for jp (chains are
    // per origin and scope).
    assert!(red.contains("sealed to 1 clinic(s): chuo-c2") && red.contains("seq 1)"), "{red}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("keys/mhlw.state.json")).expect("state"))
            .expect("json");
    assert_eq!(state["chains"]["jp/13/chuo"]["seq"], 1, "{state}");
    assert_eq!(state["chains"]["jp"]["seq"], 1, "{state}");
    assert!(state.get("pending").is_none(), "both confirmed stored: {state}");
    stop(district);
    stop(national);
}
