//! The demo's TLP:RED step (issue 8): one advisory sealed to two named clinics of the first
//! district travels the whole tree like any other — every relay verifies, stores and forwards
//! it, every clinic of that district stores it — and exactly the two named clinics open it with
//! their recipient keys; the third says it is not a recipient.
//!
//! The recipient keys are the protocol's fixture keys for each clinic id (demo keys, derived
//! from the id; never production keys), as the demo's other identities are made for the run.

use std::time::{Duration, Instant};

use kairan_protocol::fixtures::sealed::recipient;
use kairan_protocol::sealed::open_sealed;
use kairan_protocol::{Advisory, Localized, RevocationSet, Tlp, VerifyContext, verify_delivery};

use super::hierarchy::Hierarchy;
use crate::error::CliError;
use crate::store::Store;

/// How long the sealed advisory may take to reach the district's clinics.
const SETTLE: Duration = Duration::from_secs(20);

/// Seals `advisory` (made RED) to the first two clinics of the first clinic's district,
/// publishes it, and prints what each clinic of that district can read. `Ok(false)` when a
/// clinic did not store it or the wrong clinics could open it.
pub async fn red_reaches_exactly_its_recipients(
    tree: &mut Hierarchy,
    mut advisory: Advisory,
) -> Result<bool, CliError> {
    let district_scope = tree.clinics.first().map(|clinic| clinic.config.scope.clone());
    let Some(district_scope) = district_scope else { return Ok(true) };
    let district: Vec<usize> =
        (0..tree.clinics.len()).filter(|&i| tree.clinics[i].config.scope == district_scope).collect();
    let ids: Vec<String> = district.iter().map(|&i| tree.clinics[i].config.id.clone()).collect();
    let named: Vec<&String> = ids.iter().take(2).collect();
    let keys: Vec<_> = named.iter().map(|id| recipient(id)).collect();
    advisory.id = "DEMO-RED-0001".into();
    advisory.scope = district_scope.clone();
    advisory.tlp = Tlp::Red;
    advisory.handling = "指定された受信者限り / named recipients only".into();
    advisory.title =
        Localized::new("ja", "【TLP:RED】院内ネットワーク侵入の調査結果（指定された受信者限り）")
            .with("en", "[TLP:RED] Findings of a hospital network intrusion (named recipients only)");
    let to: Vec<(&str, &kairan_protocol::sealed::RecipientKey)> =
        named.iter().zip(&keys).map(|(id, key)| (id.as_str(), key.public())).collect();
    let (bytes, digest) = tree.sign_next_sealed_to(advisory, &to);
    tree.publish_raw(bytes).await?;
    println!(
        "\nOne TLP:RED advisory {}, sealed to {} (HPKE X25519, ChaCha20-Poly1305); relays carry only ciphertext:",
        &digest.to_string()[..19],
        named.iter().map(|id| id.as_str()).collect::<Vec<_>>().join(" and ")
    );

    let deadline = Instant::now() + SETTLE;
    let mut all_ok = true;
    for (position, &index) in district.iter().enumerate() {
        let id = &ids[position];
        let Some(handle) = tree.clinics[index].handle.as_ref() else { continue };
        let record = loop {
            match handle.store().get(&digest).map_err(|e| CliError::Failed(e.to_string()))? {
                Some(record) => break Some(record),
                None if Instant::now() > deadline => break None,
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let Some(record) = record else {
            all_ok = false;
            println!("FAIL {id:<18} did not receive the sealed advisory within {SETTLE:?}");
            continue;
        };
        let context = VerifyContext {
            anchors: &tree.anchors,
            revocations: &RevocationSet::default(),
            now: record.received_at,
        };
        let verified =
            verify_delivery(&record.delivery, context).map_err(|e| CliError::Failed(e.to_string()))?;
        let opened = open_sealed(&verified, id, &recipient(id));
        let is_named = position < named.len();
        match (&opened, is_named) {
            (Ok(content), true) => println!("OK   {id:<18} opens it: {}", content.title.get("ja")),
            (Err(error), false) => println!("OK   {id:<18} stores it, cannot open it: {}", error.code()),
            (Ok(_), false) => {
                all_ok = false;
                println!("FAIL {id:<18} opened an advisory it was not named in");
            }
            (Err(error), true) => {
                all_ok = false;
                println!("FAIL {id:<18} is named but could not open it: {error}");
            }
        }
    }
    Ok(all_ok)
}
