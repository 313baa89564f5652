//! `kairan demo`: a whole hierarchy on this machine, with no install and no configuration.
//!
//! A root (3 keys, threshold 2) and an origin; a national relay, 2 prefectural relays
//! (Tokyo, Osaka), 2 districts under each and 3 clinics under each district, every relay with
//! its own embedded broker on a loopback port the OS hands out and its own store in a
//! temporary directory. Every link is TLS 1.3 exactly as in production: each broker presents
//! the certificate of its relay's key, and each child accepts it only as its parent. It
//! publishes the three sample advisories (the third scoped to Tokyo,
//! to show routing) and one forged advisory, shows what each clinic received with the
//! verified path and times, shows the forgery refused at the first hop, sends one TLP:RED
//! advisory sealed to two clinics of the first district and shows that exactly those two open
//! it ([`super::demo_sealed`]), and succeeds only if every clinic holds exactly the advisories
//! in its scope. Last, it stops one clinic and uses
//! its password the way malware on that PC would: its district's broker refuses every
//! subscription outside the clinic's row of the permission table.

use crate::progress::{Mode, Progress};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kairan_protocol::envelope::ADVISORY_TYPE;
use kairan_protocol::{Delivery, Digest, Envelope, Scope};

use super::hierarchy::{Hierarchy, HierarchyBuilder};
use crate::draft::{AdvisoryDraft, SAMPLES};
use crate::error::CliError;
use crate::inbox::jst_clock;
use crate::provenance::Provenance;
use crate::store::Store;
use crate::topics;

/// Options of `kairan demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Keep the data directory (printed) instead of removing it.
    pub keep: bool,
    /// Prefectural relays.
    pub prefectures: usize,
    /// Districts per prefecture.
    pub districts: usize,
    /// Clinics per district.
    pub clinics: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self { keep: false, prefectures: 2, districts: 2, clinics: 3 }
    }
}

/// The demo's progress: on a terminal a spinner with the current step under the report lines.
static PROGRESS: std::sync::Mutex<Option<Progress>> = std::sync::Mutex::new(None);

fn step(started: Instant, text: &str) {
    let line = format!("[{:>6.2}s] {text}", started.elapsed().as_secs_f64());
    match PROGRESS.lock().ok().as_mut().and_then(|guard| guard.as_mut()) {
        Some(progress) => {
            progress.println(&line);
            progress.step(text);
        }
        None => println!("{line}"),
    }
}

/// Runs the demo; `Ok` only if every clinic holds exactly the advisories in its scope and
/// the forgery was refused.
pub async fn run(options: DemoOptions) -> Result<(), CliError> {
    let started = Instant::now();
    // A bar only on a terminal: elsewhere the step lines on standard output are the progress.
    if Mode::detect() == Mode::Bar {
        if let Ok(mut guard) = PROGRESS.lock() {
            *guard = Some(Progress::with_mode("kairan demo", 0, Mode::Bar));
        }
    }
    let result = run_steps(options, started).await;
    if let Some(progress) = PROGRESS.lock().ok().and_then(|mut guard| guard.take()) {
        progress.finish(if result.is_ok() { "done" } else { "failed" });
    }
    result
}

async fn run_steps(options: DemoOptions, started: Instant) -> Result<(), CliError> {
    let temp = tempfile::Builder::new()
        .prefix("kairan-demo-")
        .tempdir()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let dir: PathBuf = temp.path().to_owned();
    step(started, &format!("data directory {}", dir.display()));
    step(started, "creating root keys (2 of 3), origin mhlw, relay and clinic identities, certificates");
    let mut tree = HierarchyBuilder::new(&dir)
        .prefectures(options.prefectures)
        .districts_per_prefecture(options.districts)
        .clinics_per_district(options.clinics)
        .start()
        .await?;
    step(
        started,
        &format!(
            "started {} relays (each with its embedded broker on 127.0.0.1, TLS 1.3 with the relay's key) and {} clinics",
            tree.relays.len(),
            tree.clinics.len()
        ),
    );
    for relay in &tree.relays {
        if let Some(handle) = &relay.handle {
            println!(
                "          {:<14} scope {:<14} broker {}",
                handle.id,
                relay.scope.to_string(),
                handle.broker.as_ref().map(|b| b.url()).unwrap_or_default()
            );
        }
    }
    tree.wait_subscribed(Duration::from_secs(20)).await?;
    step(
        started,
        "every relay and clinic is connected over TLS 1.3 to the parent it is configured for, and subscribed",
    );

    // The three samples, re-dated to now; the third scoped to the first prefecture.
    let first_prefecture = tree
        .relays
        .get(1)
        .map(|r| r.scope.clone())
        .ok_or_else(|| CliError::Failed("no prefecture".into()))?;
    let mut published: Vec<(Digest, Scope, String)> = Vec::new();
    for (index, (name, text)) in SAMPLES.iter().enumerate() {
        let mut draft =
            AdvisoryDraft::parse(text).map_err(|e| CliError::Failed(format!("sample {name}: {e}")))?;
        draft.issued_at = None;
        draft.expires_at = None;
        draft.valid_days = Some(30);
        if index == 2 {
            draft.scope = first_prefecture.clone();
        }
        let advisory = draft
            .into_advisory(crate::clock::now(), None)
            .map_err(|e| CliError::Failed(format!("sample {name}: {e}")))?;
        let title = advisory.title.get("ja").to_owned();
        let scope = advisory.scope.clone();
        let (bytes, digest) = tree.sign_next(advisory);
        tree.publish_raw(bytes).await?;
        step(started, &format!("published {name} (scope {scope}) {digest}"));
        published.push((digest, scope, title));
    }

    // A forgery: the origin's name and certificate, signed by a key the root never certified.
    let forged_draft = AdvisoryDraft::parse(SAMPLES[0].1).map_err(CliError::Failed)?;
    let chain = tree.origin.state.chain(&forged_draft.scope);
    let mut forged_advisory = forged_draft
        .into_advisory(crate::clock::now(), Some((chain.seq + 1, chain.digest)))
        .map_err(CliError::Failed)?;
    forged_advisory.id = "FORGED-0001".into();
    forged_advisory.title =
        kairan_protocol::Localized::new("ja", "【至急】VPN機器のパスワードを下記サイトで再設定してください")
            .with("en", "[Urgent] Reset your VPN password on the site below");
    let mut attacker_seed = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut attacker_seed);
    let attacker =
        kairan_protocol::SecretKey::from_seed(&attacker_seed).map_err(|e| CliError::Failed(e.to_string()))?;
    let forged_envelope = Envelope::sign(ADVISORY_TYPE, forged_advisory.to_payload(), &[&attacker]);
    let forged_digest = Digest::of(&forged_envelope.payload);
    let forged =
        Delivery { advisory: forged_envelope, certs: vec![tree.origin.cert.clone()], hops: Vec::new() };
    tree.publish_raw(forged.to_json()).await?;
    step(started, &format!("published a FORGED advisory claiming to be from mhlw {forged_digest}"));

    let expected = |clinic: usize| -> BTreeSet<Digest> {
        published
            .iter()
            .filter(|(_, scope, _)| tree.clinics[clinic].config.scope.overlaps(scope))
            .map(|(digest, _, _)| *digest)
            .collect()
    };
    let converged = tree.wait_for_inboxes(expected, Duration::from_secs(20)).await;
    // Give stray deliveries (there must be none) a moment to show up before checking again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    step(started, "deliveries settled; checking every inbox");
    println!();

    let mut all_ok = converged.is_ok();
    for (index, clinic) in tree.clinics.iter().enumerate() {
        let held = tree.inbox(index)?;
        let wanted = expected(index);
        let ok = held == wanted;
        all_ok &= ok;
        println!(
            "{} {:<18} scope {:<14} holds {} of {} expected advisories",
            if ok { "OK  " } else { "FAIL" },
            clinic.config.id,
            clinic.config.scope.to_string(),
            held.len(),
            wanted.len()
        );
        let Some(handle) = &clinic.handle else { continue };
        for record in handle.store().all().map_err(|e| CliError::Failed(e.to_string()))? {
            let verified = kairan_protocol::verify_delivery(
                &record.delivery,
                kairan_protocol::VerifyContext {
                    anchors: &tree.anchors,
                    revocations: &kairan_protocol::RevocationSet::default(),
                    now: record.received_at,
                },
            )
            .map_err(|e| CliError::Failed(format!("stored delivery no longer verifies: {e}")))?;
            let provenance = Provenance::of(&verified, &tree.anchors, record.received_at);
            let path: Vec<String> =
                std::iter::once(format!("{} {}", provenance.origin, jst_clock(provenance.issued_at)))
                    .chain(
                        provenance.hops.iter().map(|h| format!("{} {}", h.relay, jst_clock(h.forwarded_at))),
                    )
                    .chain(std::iter::once(format!("{} {}", clinic.config.id, jst_clock(record.received_at))))
                    .collect();
            println!("       {} {} {}", provenance.tlp, &provenance.digest[..19], provenance.title);
            println!("         path (JST): {}", path.join(" → "));
        }
    }
    println!();

    // The forgery: refused at the first hop, with its reason, and nowhere stored.
    let national =
        tree.relays[0].handle.as_ref().ok_or_else(|| CliError::Failed("national stopped".into()))?;
    let rejections = national.store().rejections().map_err(|e| CliError::Failed(e.to_string()))?;
    let forged_rejection = rejections.iter().find(|r| r.claimed_digest == Some(forged_digest));
    match forged_rejection {
        Some(rejection) => println!(
            "OK   forgery {} refused at the first hop (national relay jp): {} — {}",
            &forged_digest.to_string()[..19],
            rejection.code,
            rejection.message
        ),
        None => {
            all_ok = false;
            println!("FAIL forgery was not recorded as rejected at the national relay");
        }
    }
    let forged_anywhere = tree
        .relays
        .iter()
        .filter_map(|r| r.handle.as_ref())
        .any(|h| h.store().contains(&forged_digest).unwrap_or(true))
        || (0..tree.clinics.len()).any(|i| tree.inbox(i).map(|s| s.contains(&forged_digest)).unwrap_or(true));
    if forged_anywhere {
        all_ok = false;
        println!("FAIL the forgery was stored somewhere");
    } else {
        println!("OK   the forgery is in no store and no inbox");
    }
    let mut red = AdvisoryDraft::parse(SAMPLES[0].1).map_err(CliError::Failed)?;
    red.issued_at = None;
    red.expires_at = None;
    red.valid_days = Some(30);
    let red = red.into_advisory(crate::clock::now(), None).map_err(CliError::Failed)?;
    all_ok &= super::demo_sealed::red_reaches_exactly_its_recipients(&mut tree, red).await?;
    let mut audited = None;
    if let Some(first) = tree.clinics.first().and_then(|c| c.handle.as_ref()) {
        if let Some(record) = first.store().all().map_err(|e| CliError::Failed(e.to_string()))?.first() {
            audited = Some(record.digest);
            let verified = kairan_protocol::verify_delivery(
                &record.delivery,
                kairan_protocol::VerifyContext {
                    anchors: &tree.anchors,
                    revocations: &kairan_protocol::RevocationSet::default(),
                    now: record.received_at,
                },
            )
            .map_err(|e| CliError::Failed(e.to_string()))?;
            println!("\nFull provenance of one delivery, as `kairan verify` prints it:\n");
            print!("{}", Provenance::of(&verified, &tree.anchors, record.received_at).render_text());
        }
    }
    println!();
    all_ok &= rows_are_enforced(&mut tree).await?;
    let stores: Vec<std::path::PathBuf> = tree
        .clinics
        .first()
        .map(|clinic| clinic.config.data_dir.join("store"))
        .into_iter()
        .chain(tree.relays.iter().map(|relay| relay.config_parts.data_dir.clone()))
        .collect();
    let anchors = tree.anchors.clone();
    tree.shutdown().await?;
    if let Some(digest) = audited {
        all_ok &= audit_one(&stores, &digest.to_string(), &anchors);
    }
    let elapsed = started.elapsed();
    if options.keep {
        let kept = temp.keep();
        println!("\ndata kept in {}", kept.display());
    }
    if let Err(error) = converged {
        println!("{error}");
    }
    if all_ok {
        println!(
            "\ndemo passed: every clinic holds exactly the advisories in its scope ({:.1}s)",
            elapsed.as_secs_f64()
        );
        Ok(())
    } else {
        Err(CliError::Failed("demo FAILED: see the lines marked FAIL above".into()))
    }
}

/// The auditor's view of one advisory, from the stores of the stopped tree, as
/// `kairan audit advisory` prints it. `false` when the evidence does not verify.
fn audit_one(stores: &[std::path::PathBuf], digest: &str, anchors: &kairan_protocol::TrustAnchors) -> bool {
    use crate::audit_bundle::{collect, verify_bundle};
    println!("\nAudit of that advisory from the stores on its path, as `kairan audit advisory` prints it:\n");
    let mut quiet = crate::progress::Progress::with_mode("audit", 0, crate::progress::Mode::Quiet);
    match collect(stores, digest, anchors, &mut quiet).and_then(|bundle| verify_bundle(&bundle, anchors)) {
        Ok(report) if report.unlogged.is_empty() => {
            print!("{}", report.render_text());
            println!("OK   every relay on its path proves it logged the advisory");
            true
        }
        Ok(report) => {
            print!("{}", report.render_text());
            println!("FAIL no log evidence from {}", report.unlogged.join(", "));
            false
        }
        Err(error) => {
            println!("FAIL the audit of {digest}: {error}");
            false
        }
    }
}

/// The permission table at work: the first clinic's node stops and its password asks its
/// district's broker for what is not its row (refused, SUBACK failure) and for its own row
/// (granted). `Ok(false)` when the broker answered otherwise.
async fn rows_are_enforced(tree: &mut Hierarchy) -> Result<bool, CliError> {
    use rumqttc::{Event, Packet, QoS, SubscribeReasonCode};
    let Some(clinic) = tree.clinics.first() else { return Ok(true) };
    let (id, addr, district_index) = (clinic.config.id.clone(), clinic.config.addr.clone(), clinic.district);
    let district = tree.relays[district_index].config_parts.id.clone();
    let sibling =
        tree.clinics.iter().skip(1).find(|c| c.district == district_index).map(|c| c.config.id.clone());
    let credentials = tree.credentials_of(&id)?;
    tree.stop_clinic(0).await?;
    let mut probes = vec![
        ("every delivery of its district", format!("{}/#", topics::deliveries_root(&district)), false),
        ("every topic", "#".to_owned(), false),
    ];
    if let Some(sibling) = sibling {
        probes.push(("another clinic's catch-up answers", topics::sync_response(&district, &sibling), false));
    }
    probes.push(("its own catch-up answers", topics::sync_response(&district, &id), true));
    // Over the same TLS link the clinic uses: the broker must prove it is the district's.
    let link = crate::mqtt::LinkConfig {
        addr,
        peer: addr_tls_peer(tree, district_index),
        credentials: Some(credentials),
        client_id: id.clone(),
    };
    let connection =
        crate::mqtt::connect(&link, true, false, 16).map_err(|e| CliError::Failed(e.to_string()))?;
    let (client, mut eventloop, _tunnel) = (connection.client, connection.eventloop, connection.tunnel);
    for (_, filter, _) in &probes {
        client
            .try_subscribe(filter.as_str(), QoS::AtLeastOnce)
            .map_err(|e| CliError::Failed(e.to_string()))?;
    }
    let mut granted = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while granted.len() < probes.len() {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .map_err(|_| CliError::Failed("the district's broker did not answer the subscriptions".into()))?
            .map_err(|e| CliError::Failed(format!("the district's broker: {e}")))?;
        if let Event::Incoming(Packet::SubAck(ack)) = event {
            granted.push(matches!(ack.return_codes.first(), Some(SubscribeReasonCode::Success(_))));
        }
    }
    let _ = client.try_disconnect();
    let mut all_ok = true;
    for ((what, filter, allowed), granted) in probes.iter().zip(granted) {
        let ok = granted == *allowed;
        all_ok &= ok;
        println!(
            "{} clinic {id}'s password on {district}'s broker, {what} ({filter}): {}",
            if ok { "OK  " } else { "FAIL" },
            if granted { "granted" } else { "refused" }
        );
    }
    Ok(all_ok)
}

/// What the clinic's link checks its district's broker with (`None` on a plaintext tree).
fn addr_tls_peer(tree: &Hierarchy, district_index: usize) -> Option<crate::tls::PeerCheck> {
    tree.clinics.first().filter(|c| c.config.addr.tls).map(|_| tree.peer_of(district_index))
}
