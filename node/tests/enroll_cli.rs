//! `kairan enroll`: a clinic's request, its district's issuing and removal, as a volunteer
//! runs them.

use std::path::Path;
use std::process::{Command, Output};

fn kairan(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kairan")).args(args).current_dir(dir).output().expect("run kairan")
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn issue_cert(dir: &Path, subject: &str, role: &str, scope: &str, issuer: &[&str]) {
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

/// Roots, trust file, jp → jp-13 → jp-13-chuo certificates, and the district's node.toml
/// (an empty members file, recipients = "recipients.toml"). `id` is the node to configure.
fn district(dir: &Path, id: &str, scope: &str) {
    for name in ["root-1", "root-2", "jp", "jp-13", "jp-13-chuo"] {
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
            "--out",
            "trust.toml",
        ],
        dir,
    ));
    issue_cert(
        dir,
        "jp",
        "relay",
        "jp",
        &["--issuer-key", "keys/root-1.key", "--issuer-key", "keys/root-2.key"],
    );
    issue_cert(
        dir,
        "jp-13",
        "relay",
        "jp/13",
        &["--issuer-key", "keys/jp.key", "--issuer-cert", "jp.cert.json"],
    );
    issue_cert(
        dir,
        "jp-13-chuo",
        "relay",
        "jp/13/chuo",
        &["--issuer-key", "keys/jp-13.key", "--issuer-cert", "jp-13.cert.json"],
    );
    let _ = scope;
    std::fs::write(
        dir.join("node.toml"),
        format!(
            "[node]\nid = \"{id}\"\ndata_dir = \"data\"\nkey = \"keys/{id}.key\"\ncert = \"{id}.cert.json\"\n\
             trust = \"trust.toml\"\nrecipients = \"recipients.toml\"\n\n[upstream]\nurl = \"mqtt://127.0.0.1:1883\"\n\
             parent = \"jp\"\npassword = \"unused-password\"\n\n[broker]\nmembers = \"members.toml\"\n"
        ),
    )
    .expect("node.toml");
    let members = dir.join("members.toml");
    std::fs::write(&members, "").expect("members");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&members, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

#[test]
fn a_clinic_is_enrolled_from_its_request_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    district(root, "jp-13-chuo", "jp/13/chuo");
    let printed = ok(&kairan(&["enroll", "request", "--id", "chuo-clinic-1", "--out", "clinic"], root));
    assert!(printed.contains("clinic/chuo-clinic-1.request.json"), "{printed}");
    #[cfg(unix)]
    for secret in ["clinic/chuo-clinic-1.key", "clinic/chuo-clinic-1.x25519"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join(secret)).expect("secret").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
    let public = std::fs::read_to_string(root.join("clinic/chuo-clinic-1.pub")).expect("pub");
    let recipient_line = printed.lines().find(|l| l.starts_with("recipient kid")).expect("kid line");
    let kid = recipient_line.split_whitespace().last().expect("kid");

    let issued = ok(&kairan(
        &[
            "enroll",
            "issue",
            "--config",
            "node.toml",
            "--request",
            "clinic/chuo-clinic-1.request.json",
            "--out",
            "for-clinic",
        ],
        root,
    ));
    assert!(issued.contains("enrolled       chuo-clinic-1 at jp-13-chuo"), "{issued}");
    let members = std::fs::read_to_string(root.join("members.toml")).expect("members");
    assert!(members.contains("id = \"chuo-clinic-1\"") && members.contains("kind = \"clinic\""), "{members}");
    assert!(
        members.contains("scope = \"jp/13/chuo\"") && members.contains("password_hash = \"$7$"),
        "{members}"
    );
    let recipients = std::fs::read_to_string(root.join("recipients.toml")).expect("recipients");
    assert!(recipients.contains("id = \"chuo-clinic-1\""), "{recipients}");
    // The recipients file lists the X25519 key the clinic made (its kid is a prefix of a hash
    // of it: check through the loaded key instead).
    let row: toml::Value = toml::from_str(&recipients).expect("toml");
    let key_hex = row["recipients"][0]["key"].as_str().expect("key").to_owned();
    let key = kairan_protocol::sealed::RecipientKey::from_hex(&key_hex).expect("key");
    assert_eq!(key.kid(), kid);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("for-clinic/chuo-clinic-1.password"))
            .expect("pw")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The certificate verifies up to the anchors, for the clinic's key, role clinic.
    let verified = ok(&kairan(
        &[
            "verify",
            "--trust",
            "trust.toml",
            "--json",
            "--cert",
            "jp-13-chuo.cert.json",
            "--cert",
            "jp-13.cert.json",
            "--cert",
            "jp.cert.json",
            "for-clinic/chuo-clinic-1.cert.json",
        ],
        root,
    ));
    assert!(verified.contains("\"verified\":true") || verified.contains("\"verified\": true"), "{verified}");
    let cert_text = std::fs::read(root.join("for-clinic/chuo-clinic-1.cert.json")).expect("cert");
    let envelope = kairan_protocol::Envelope::from_json(&cert_text).expect("envelope");
    let cert = kairan_protocol::Certificate::decode(&envelope.payload).expect("cert");
    assert_eq!((cert.subject.as_str(), cert.issuer.as_str()), ("chuo-clinic-1", "jp-13-chuo"));
    assert_eq!(cert.key.to_hex(), public.trim());
    assert!(cert.has_role(kairan_protocol::Role::Clinic));
    assert_eq!(cert.scope.to_string(), "jp/13/chuo");
    let serial = row["recipients"][0]["cert"].as_str().expect("serial");
    assert_eq!(serial, cert.serial);

    // Enrolled twice: refused, nothing changes.
    let again = kairan(
        &[
            "enroll",
            "issue",
            "--config",
            "node.toml",
            "--request",
            "clinic/chuo-clinic-1.request.json",
            "--out",
            "again",
        ],
        root,
    );
    assert_eq!(again.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("chuo-clinic-1 is already enrolled"),
        "{again:?}"
    );

    // A forged request: the payload names another key than the one that signed it.
    ok(&kairan(&["enroll", "request", "--id", "chuo-clinic-2", "--out", "clinic2"], root));
    let text = std::fs::read_to_string(root.join("clinic2/chuo-clinic-2.request.json")).expect("request");
    let mut envelope: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut payload: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            envelope["payload"].as_str().expect("p"),
        )
        .expect("b64"),
    )
    .expect("payload");
    payload["key"] = public.trim().into();
    envelope["payload"] =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, payload.to_string()).into();
    std::fs::write(root.join("forged.json"), envelope.to_string()).expect("write");
    let before = (
        std::fs::read(root.join("members.toml")).expect("members"),
        std::fs::read(root.join("recipients.toml")).expect("recipients"),
    );
    let forged = kairan(
        &["enroll", "issue", "--config", "node.toml", "--request", "forged.json", "--out", "forged-out"],
        root,
    );
    assert_eq!(forged.status.code(), Some(1), "{forged:?}");
    let stderr = String::from_utf8_lossy(&forged.stderr);
    assert!(
        stderr.contains("bad_enrollment_request") && stderr.contains("proof of possession failed"),
        "{stderr}"
    );
    let after = (
        std::fs::read(root.join("members.toml")).expect("members"),
        std::fs::read(root.join("recipients.toml")).expect("recipients"),
    );
    assert_eq!(before, after, "nothing written");
    assert!(!root.join("forged-out").join("chuo-clinic-2.cert.json").exists());

    // Removal, then removing again names the clinic.
    let removed = ok(&kairan(&["enroll", "remove", "--config", "node.toml", "--id", "chuo-clinic-1"], root));
    assert!(removed.contains("removed        chuo-clinic-1"), "{removed}");
    assert!(!std::fs::read_to_string(root.join("members.toml")).expect("m").contains("chuo-clinic-1"));
    assert!(!std::fs::read_to_string(root.join("recipients.toml")).expect("r").contains("chuo-clinic-1"));
    let twice = kairan(&["enroll", "remove", "--config", "node.toml", "--id", "chuo-clinic-1"], root);
    assert_eq!(twice.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("chuo-clinic-1 is not enrolled at jp-13-chuo"));
}

#[test]
fn only_a_district_enrolls_and_its_config_must_name_the_recipients_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    district(root, "jp-13", "jp/13");
    ok(&kairan(&["enroll", "request", "--id", "c1", "--out", "clinic"], root));
    let refused = kairan(
        &["enroll", "issue", "--config", "node.toml", "--request", "clinic/c1.request.json", "--out", "out"],
        root,
    );
    assert_eq!(refused.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("jp-13 is not a district relay"),
        "{refused:?}"
    );
    let bad_id = kairan(&["enroll", "request", "--id", "no/slash", "--out", "x"], root);
    assert_eq!(bad_id.status.code(), Some(64));
    let text = std::fs::read_to_string(root.join("node.toml")).expect("toml");
    std::fs::write(root.join("node.toml"), text.replace("recipients = \"recipients.toml\"\n", ""))
        .expect("write");
    let missing = kairan(
        &["enroll", "issue", "--config", "node.toml", "--request", "clinic/c1.request.json", "--out", "out"],
        root,
    );
    assert_eq!(missing.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("node.recipients: missing"), "{missing:?}");
}
