//! Receipts and coverage at the scale of the national tree (issue 9): every clinic of a
//! simulated tree signs its receipts with its own certified key, every district verifies its
//! clinics' receipts with its own chain and signs its coverage statement, the national node
//! verifies every district's statement and answers the auditor's question — who received and
//! opened this advisory, per prefecture and district, and which clinics did not — from its
//! [`CoverageTable`]. Real keys, certificates, signatures and verification; the network is
//! counted in bytes, not simulated.
//!
//! The default test runs a small tree and checks every count and missing id exactly. The
//! ignored one runs the full tree of `docs/simulation.md` (47 prefectures × 19 districts × 112
//! clinics = 100,016 clinics) and prints the figures `docs/performance.md` quotes:
//! `cargo test --release --workspace --test coverage_scale -- --ignored --nocapture`
//! (`KAIRAN_SIM_SCALE=PxDxC` for another size).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kairan_protocol::cert::{Certificate, ROOT_ISSUER, Role};
use kairan_protocol::coverage::{CoverageRow, CoverageTable, Tally, verify_coverage};
use kairan_protocol::fixtures::key;
use kairan_protocol::receipt::{Receipt, verify_receipt};
use kairan_protocol::{
    Digest, Envelope, RevocationSet, Scope, SecretKey, Timestamp, TrustAnchors, VerifyContext,
};

/// One simulated district: its relay key and chain, and its clinics with key and certificate.
struct District {
    id: String,
    scope: Scope,
    key: SecretKey,
    chain: Vec<Envelope>,
    clinics: Vec<(String, SecretKey, Envelope)>,
}

/// Per district: clinics that received, that opened, and the ids of those that did not receive.
type Expected = BTreeMap<String, (usize, usize, Vec<String>)>;

/// What one run measured.
#[derive(Debug, Default)]
struct Figures {
    clinics: usize,
    districts: usize,
    receipts: usize,
    receipt_bytes: usize,
    statement_bytes: usize,
    statement_parts: usize,
    max_prefecture_link_bytes: usize,
    sign_receipts: Duration,
    verify_receipts: Duration,
    slowest_district: Duration,
    sign_statements: Duration,
    national_verify: Duration,
    audit_query: Duration,
}

fn build(
    prefectures: usize,
    districts: usize,
    clinics: usize,
    now: Timestamp,
) -> (TrustAnchors, Vec<District>) {
    let roots: Vec<SecretKey> = (1..=3).map(|i| key(&format!("scale-root-{i}"))).collect();
    let anchors = TrustAnchors::numbered(2, roots.iter().map(SecretKey::public)).expect("anchors");
    let window = (now.plus_secs(-3600), now.plus_secs(365 * 24 * 3600));
    let national_key = key("scale-jp");
    let jp = Scope::parse("jp").expect("scope");
    let national =
        Certificate::for_key("root-n", ROOT_ISSUER, "jp", national_key.public(), Role::Relay, &jp, window)
            .sign(&[&roots[0], &roots[1]]);
    let mut out = Vec::new();
    for p in 1..=prefectures {
        let p_id = format!("jp-{p:02}");
        let p_scope = jp.child(&format!("{p:02}")).expect("scope");
        let p_key = key(&format!("scale-{p_id}"));
        let p_cert = Certificate::for_key(
            format!("jp-{p}"),
            "jp",
            &p_id,
            p_key.public(),
            Role::Relay,
            &p_scope,
            window,
        )
        .sign(&[&national_key]);
        for d in 1..=districts {
            let d_id = format!("{p_id}-d{d:02}");
            let d_scope = p_scope.child(&format!("d{d:02}")).expect("scope");
            let d_key = key(&format!("scale-{d_id}"));
            let d_cert = Certificate::for_key(
                format!("{p_id}-{d}"),
                &p_id,
                &d_id,
                d_key.public(),
                Role::Relay,
                &d_scope,
                window,
            )
            .sign(&[&p_key]);
            let clinics = (1..=clinics)
                .map(|c| {
                    let c_id = format!("{d_id}-c{c:04}");
                    let c_key = key(&format!("scale-{c_id}"));
                    let c_cert = Certificate::for_key(
                        format!("{d_id}-{c}"),
                        &d_id,
                        &c_id,
                        c_key.public(),
                        Role::Clinic,
                        &d_scope,
                        window,
                    )
                    .sign(&[&d_key]);
                    (c_id, c_key, c_cert)
                })
                .collect();
            out.push(District {
                id: d_id,
                scope: d_scope,
                key: d_key,
                chain: vec![d_cert, p_cert.clone(), national.clone()],
                clinics,
            });
        }
    }
    (anchors, out)
}

/// Which clinics received and opened: deterministic, about 1 % never receive (offline), and
/// about 30 % of those that do open it.
fn behaviour(clinic: usize) -> (bool, bool) {
    let mixed = (clinic as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    (mixed % 100 != 0, mixed % 10 < 3)
}

fn run(prefectures: usize, districts: usize, clinics: usize) -> (Figures, Vec<CoverageRow>, Expected) {
    let now = Timestamp::from_unix_ms(1_796_000_000_000);
    let (anchors, tree) = build(prefectures, districts, clinics, now);
    let advisory = Digest::of(b"MHLW-CS-2026-0042");
    let revocations = RevocationSet::default();
    let later = now.plus_secs(600);
    let ctx = VerifyContext { anchors: &anchors, revocations: &revocations, now: later };
    let mut figures = Figures { districts: tree.len(), ..Figures::default() };
    let mut expected = Expected::new();
    let mut table = CoverageTable::default();
    let mut per_prefecture_bytes: BTreeMap<String, usize> = BTreeMap::new();
    let mut serial = 0usize;
    for district in &tree {
        // Clinics sign (stored, then opened for some): the bytes each sends its district.
        let started = Instant::now();
        let mut messages = Vec::new();
        let entry = expected.entry(district.id.clone()).or_default();
        for (id, clinic_key, cert) in &district.clinics {
            serial += 1;
            let (receives, opens) = behaviour(serial);
            if !receives {
                entry.2.push(id.clone());
                continue;
            }
            let mut receipt =
                Receipt { clinic: id.clone(), advisory, received_at: now.plus_secs(2), opened_at: None };
            messages.push(receipt.sign(clinic_key, std::slice::from_ref(cert)).to_json());
            entry.0 += 1;
            if opens {
                receipt.opened_at = Some(now.plus_secs(300));
                messages.push(receipt.sign(clinic_key, std::slice::from_ref(cert)).to_json());
                entry.1 += 1;
            }
        }
        figures.sign_receipts += started.elapsed();
        figures.clinics += district.clinics.len();
        figures.receipts += messages.len();
        figures.receipt_bytes += messages.iter().map(Vec::len).sum::<usize>();
        // The district verifies each with its own chain and counts it.
        let started = Instant::now();
        let mut tally = Tally::new(district.clinics.iter().map(|(id, ..)| id.clone()));
        for message in &messages {
            let verified = verify_receipt(message, &district.chain, ctx).expect("a genuine receipt verifies");
            assert!(district.scope.contains(verified.facts().scope()), "a clinic of this district");
            tally.record(verified.facts().receipt.clone());
        }
        let took = started.elapsed();
        figures.verify_receipts += took;
        figures.slowest_district = figures.slowest_district.max(took);
        // …and states its coverage once, for its parent.
        let started = Instant::now();
        let parts: Vec<Vec<u8>> = tally
            .statements(&district.id, &district.scope, &advisory, now.plus_secs(400))
            .iter()
            .map(|part| part.sign(&district.key, &district.chain).to_json())
            .collect();
        figures.sign_statements += started.elapsed();
        figures.statement_parts += parts.len();
        let bytes: usize = parts.iter().map(Vec::len).sum();
        figures.statement_bytes += bytes;
        let prefecture = district.id.rsplit_once('-').map(|(p, _)| p.to_owned()).unwrap_or_default();
        *per_prefecture_bytes.entry(prefecture).or_default() += bytes;
        // The national node verifies every statement forwarded to it, unchanged.
        let started = Instant::now();
        for part in &parts {
            let verified = verify_coverage(part, ctx).expect("a genuine statement verifies");
            table.insert(&verified);
        }
        figures.national_verify += started.elapsed();
    }
    figures.max_prefecture_link_bytes = per_prefecture_bytes.values().copied().max().unwrap_or(0);
    // The auditor's question at the national node.
    let started = Instant::now();
    let rows = table.rows(&advisory);
    let mut by_prefecture: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for row in &rows {
        let prefecture = row.relay.rsplit_once('-').map(|(p, _)| p.to_owned()).unwrap_or_default();
        let totals = by_prefecture.entry(prefecture).or_default();
        totals.0 += u64::from(row.clinics);
        totals.1 += u64::from(row.received);
        totals.2 += u64::from(row.opened);
    }
    figures.audit_query = started.elapsed();
    assert_eq!(by_prefecture.len(), prefectures);
    (figures, rows, expected)
}

fn check(rows: &[CoverageRow], expected: &Expected) {
    assert_eq!(rows.len(), expected.len(), "one row per district");
    for row in rows {
        let (received, opened, missing) = &expected[&row.relay];
        assert_eq!((row.received as usize, row.opened as usize), (*received, *opened), "{}", row.relay);
        assert_eq!(&row.missing, missing, "{}: exactly the clinics without a receipt", row.relay);
    }
}

#[test]
fn coverage_counts_every_receipt_and_names_every_missing_clinic() {
    let (figures, rows, expected) = run(2, 2, 150);
    check(&rows, &expected);
    assert_eq!(figures.clinics, 600);
    assert!(rows.iter().any(|row| !row.missing.is_empty()), "some clinic is missing");
    assert!(rows.iter().all(|row| row.clinics == 150));
}

#[test]
#[ignore = "national scale: about a minute in release; prints the figures of docs/performance.md"]
fn receipts_and_coverage_at_national_scale() {
    let scale = std::env::var("KAIRAN_SIM_SCALE").unwrap_or_else(|_| "47x19x112".into());
    let scale = if scale == "full" { "47x19x112".to_owned() } else { scale };
    let dims: Vec<usize> = scale.split('x').map(|n| n.parse().expect("PxDxC")).collect();
    let started = Instant::now();
    let (figures, rows, expected) = run(dims[0], dims[1], dims[2]);
    check(&rows, &expected);
    let per = |total: usize, count: usize| total as f64 / count.max(1) as f64;
    println!(
        "scale {scale}: {} clinics in {} districts ({:?} in all)",
        figures.clinics,
        figures.districts,
        started.elapsed()
    );
    println!(
        "clinic → district: {} receipts, {:.0} bytes each, {:.1} MB in all",
        figures.receipts,
        per(figures.receipt_bytes, figures.receipts),
        figures.receipt_bytes as f64 / 1e6
    );
    println!(
        "district → prefecture: {} statement parts, {:.0} bytes per district, {:.2} MB in all",
        figures.statement_parts,
        per(figures.statement_bytes, figures.districts),
        figures.statement_bytes as f64 / 1e6
    );
    println!(
        "prefecture → national: at most {} bytes on one link ({:.2} MB at the national node in all)",
        figures.max_prefecture_link_bytes,
        figures.statement_bytes as f64 / 1e6
    );
    println!(
        "if receipts travelled up instead: {:.1} MB at the national node",
        figures.receipt_bytes as f64 / 1e6
    );
    println!(
        "time: clinics sign {:?} (all), districts verify {:?} (all; slowest district {:?}), districts sign {:?}, national verifies {:?}, audit query {:?}",
        figures.sign_receipts,
        figures.verify_receipts,
        figures.slowest_district,
        figures.sign_statements,
        figures.national_verify,
        figures.audit_query
    );
}
