//! Sealing from the command line (`kairan publish --seal-to ID --seal-to-scope SCOPE`): the
//! recipients' keys come from the recipient directories on the national broker, verified with
//! the origin's trust anchors ([`crate::directory::read`]); the content key and the HPKE
//! ephemeral keys come from the operating system's RNG ([`OsRng09`]).

use std::time::Duration;

use kairan_protocol::sealed::{RecipientKey, To};
use kairan_protocol::{Advisory, Envelope, Scope, SecretKey, Tlp};

use crate::clock;
use crate::directory::read::{self, NationalBroker};
use crate::draft::AdvisoryDraft;
use crate::error::CliError;
use crate::publish::{OriginState, PublishRequest};

/// How long reading the directories may take.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// The operating system's RNG under the protocol's `rand_core` 0.9 traits (this crate's `rand`
/// 0.8 `OsRng` implements the older `rand_core`). Each call asks the OS (getrandom).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRng09;

impl rand_core::RngCore for OsRng09 {
    fn next_u32(&mut self) -> u32 {
        rand::RngCore::next_u32(&mut rand::rngs::OsRng)
    }

    fn next_u64(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut rand::rngs::OsRng)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, dst);
    }
}

impl rand_core::CryptoRng for OsRng09 {}

/// Whom `kairan publish` seals to.
#[derive(Debug, Clone, Default)]
pub struct SealTo {
    /// Named clinics (`--seal-to`).
    pub ids: Vec<String>,
    /// Every clinic of these directories (`--seal-to-scope`).
    pub scopes: Vec<Scope>,
}

/// Reads the directories on the national broker and resolves `seal` for an advisory labelled
/// `tlp`: TLP:RED names its clinics (`--seal-to` only).
pub async fn resolve(
    request: &PublishRequest,
    seal: &SealTo,
    tlp: Tlp,
    scope: &Scope,
) -> Result<Vec<(String, RecipientKey)>, CliError> {
    if !tlp.must_be_sealed() {
        return Err(CliError::Usage(format!(
            "--seal-to/--seal-to-scope seal TLP:RED and TLP:AMBER+STRICT advisories; this one is {tlp}"
        )));
    }
    if tlp == Tlp::Red && !seal.scopes.is_empty() {
        return Err(CliError::Usage(
            "TLP:RED names each of its recipients: use --seal-to CLINIC_ID, not --seal-to-scope".into(),
        ));
    }
    let broker = NationalBroker {
        addr: &request.addr,
        peer: request.peer.as_ref(),
        credentials: request.credentials.as_ref(),
        node: &request.node,
    };
    let directories = read::fetch(broker, &request.anchors, READ_TIMEOUT).await?;
    for (topic, reason) in &directories.refused {
        eprintln!("warning: directory part on {topic} refused: {reason}");
    }
    let entries = directories.resolve_entries(&seal.ids, &seal.scopes)?;
    // A clinic outside the advisory's scope would never receive it: say so now.
    if let Some(outside) = entries.iter().find(|entry| !scope.overlaps(&entry.scope)) {
        return Err(CliError::Usage(format!(
            "clinic {} (scope {}) would never receive an advisory for scope {scope}; widen the advisory's scope or leave it out",
            outside.id, outside.scope
        )));
    }
    Ok(entries.into_iter().map(|entry| (entry.id, entry.key)).collect())
}

/// Signs a draft as the next link of the origin's chain for its scope, sealed to `recipients`.
pub fn sign_next_sealed(
    draft: AdvisoryDraft,
    key: &SecretKey,
    state: &OriginState,
    recipients: &[(String, RecipientKey)],
) -> Result<(Advisory, Envelope), CliError> {
    let to: Vec<To<'_>> = recipients.iter().map(|(id, key)| To::Clinic(id, key)).collect();
    // The next link of the advisory's own chain (origin, scope), as `publish::sign_next` does.
    let chain = state.chain(&draft.scope);
    let advisory = draft
        .into_sealed_advisory(clock::now(), Some((chain.seq + 1, chain.digest)), &to, &mut OsRng09)
        .map_err(CliError::Usage)?;
    let envelope = Envelope::sign(kairan_protocol::envelope::ADVISORY_TYPE, advisory.to_payload(), &[key]);
    Ok((advisory, envelope))
}
