//! Clinic enrollment, as an association volunteer runs it (`kairan enroll …`).
//!
//! 1. At the clinic, [`request`] makes the clinic's Ed25519 signing key and X25519 recipient
//!    key (files 0600) and an *enrollment request*: a DSSE envelope of type
//!    [`ENROLL_REQUEST_TYPE`] whose payload names the clinic id and both public keys, signed by
//!    the Ed25519 key it names (proof that whoever made the request holds that key; the
//!    signature also binds the recipient key to it). The request holds no secret: it can
//!    travel by e-mail or USB stick. The volunteer checks the printed key id by phone or in
//!    person: the signature proves possession, not who the clinic is.
//! 2. At the district, [`issue`] verifies the request, certifies the key (`clinic` role, the
//!    district's scope, subject = the clinic id, signed by the district relay's key), adds the
//!    clinic to the members file with a fresh broker password, and its recipient key to the
//!    recipients file ([`crate::recipients`]), from which the running relay publishes its
//!    signed recipient directory. Everything is checked before anything is written.
//! 3. [`remove`] takes a clinic out of both files (its certificate stays valid until revoked:
//!    `kairan revoke`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use kairan_protocol::directory::DirectoryEntry;
use kairan_protocol::sealed::RecipientKey;
use kairan_protocol::{Certificate, Envelope, PublicKey, Role, Scope, SecretKey, Timestamp};

use crate::authz::MemberKind;
use crate::clock;
use crate::error::CliError;
use crate::keyfile;
use crate::members::{MemberRow, MembersFile, PasswordHash};
use crate::rabbitmq_config::RabbitPasswordHash;
use crate::recipients::RecipientsFile;

/// Payload type of an enrollment request (not a wire object: it only travels to a district).
pub const ENROLL_REQUEST_TYPE: &str = "application/vnd.kairan.enroll-request+json";

/// Largest request file read.
const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Scope depth of a district (`jp/13/chuo`): only a district relay certifies clinics.
pub const DISTRICT_DEPTH: usize = 3;

/// The payload of an enrollment request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The clinic id asked for (certificate subject, broker username, directory id).
    pub id: String,
    /// The clinic's Ed25519 public key (signs this request).
    pub key: PublicKey,
    /// The clinic's X25519 recipient key (for sealed advisories).
    pub recipient_key: RecipientKey,
    /// When the request was made.
    pub requested_at: Timestamp,
}

/// What [`request`] wrote.
#[derive(Debug)]
pub struct RequestFiles {
    /// The Ed25519 secret key (0600).
    pub signing_key: PathBuf,
    /// The X25519 recipient key (0600).
    pub recipient_key: PathBuf,
    /// The request (JSON, DSSE envelope).
    pub request: PathBuf,
    /// The request as signed.
    pub payload: EnrollRequest,
}

/// Makes the clinic's keys and its signed request in `out`: `ID.key`, `ID.pub`, `ID.x25519`
/// and `ID.request.json`. Refuses to overwrite any of them.
pub fn request(id: &str, out: &Path) -> Result<RequestFiles, CliError> {
    kairan_protocol::advisory::check_id("--id", id).map_err(CliError::Usage)?;
    let request = out.join(format!("{id}.request.json"));
    let recipient_key = out.join(format!("{id}.x25519"));
    for path in [&request, &recipient_key, &out.join(format!("{id}.key"))] {
        if path.exists() {
            return Err(CliError::Usage(format!(
                "{} already exists; refusing to overwrite it",
                path.display()
            )));
        }
    }
    let (secret, pair) = keyfile::generate(out, id)?;
    let recipient = keyfile::generate_recipient(&recipient_key)?;
    let payload = EnrollRequest {
        id: id.to_owned(),
        key: secret.public().clone(),
        recipient_key: recipient.public().clone(),
        requested_at: clock::now(),
    };
    let bytes = serde_json::to_vec(&payload).map_err(|e| CliError::Failed(e.to_string()))?;
    let mut json = Envelope::sign(ENROLL_REQUEST_TYPE, bytes, &[&secret]).to_json();
    json.push(b'\n');
    std::fs::write(&request, json).map_err(|e| CliError::io(&request, e))?;
    Ok(RequestFiles { signing_key: pair.secret, recipient_key, request, payload })
}

/// Parses a request and checks its proof of possession: exactly one signature, by the key the
/// payload names. Errors say what is wrong with the request (exit 1 via `Rejected`).
pub fn verify_request(bytes: &[u8]) -> Result<EnrollRequest, CliError> {
    let refused = |message: String| CliError::Rejected { code: "bad_enrollment_request", message };
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(refused(format!("{} bytes; a request is at most {MAX_REQUEST_BYTES}", bytes.len())));
    }
    let envelope = Envelope::from_json(bytes).map_err(|e| refused(format!("not a request envelope: {e}")))?;
    if envelope.payload_type != ENROLL_REQUEST_TYPE {
        return Err(refused(format!(
            "payload type {:?}, expected {ENROLL_REQUEST_TYPE}",
            envelope.payload_type
        )));
    }
    // The key to check the signature with is the one the request names (a self-signed
    // request, like a CSR): parse first, then verify, then use nothing unverified.
    let claimed: EnrollRequest =
        serde_json::from_slice(&envelope.payload).map_err(|e| refused(format!("payload: {e}")))?;
    envelope.verify_by(ENROLL_REQUEST_TYPE, "enrollment request", &claimed.key).map_err(|e| {
        refused(format!(
            "proof of possession failed: the request is not signed (only) by the key it names ({}): {e}",
            claimed.key.keyid().short()
        ))
    })?;
    kairan_protocol::advisory::check_id("clinic id", &claimed.id).map_err(refused)?;
    Ok(claimed)
}

/// The district relay doing the enrolling.
#[derive(Debug)]
pub struct District<'a> {
    /// Its id (the certificates' issuer).
    pub id: &'a str,
    /// Its relay key.
    pub key: &'a SecretKey,
    /// Its certificate's payload.
    pub cert: &'a Certificate,
    /// Its members file.
    pub members: &'a Path,
    /// Its recipients file.
    pub recipients: &'a Path,
}

/// What [`issue`] produced.
#[derive(Debug)]
pub struct Issued {
    /// The clinic's certificate.
    pub cert: Envelope,
    /// Its serial.
    pub serial: String,
    /// The clinic's password on the district's broker (only its hash is kept).
    pub password: String,
    /// The clinic's scope (the district's).
    pub scope: Scope,
}

/// Signs a certificate after decoding it back, so a certificate the verifiers would refuse is
/// never issued (what `kairan cert issue` does too).
pub fn sign_certificate(cert: &Certificate, signers: &[&SecretKey]) -> Result<Envelope, CliError> {
    Certificate::decode(&cert.to_payload()).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(cert.sign(signers))
}

/// Refuses a relay that is not a district (only districts certify clinics).
pub fn check_district(district: &District<'_>) -> Result<(), CliError> {
    if !district.cert.has_role(Role::Relay) || district.cert.scope.depth() != DISTRICT_DEPTH {
        return Err(CliError::Usage(format!(
            "{} is not a district relay: its certificate grants {:?} for scope {} (a district's scope has {DISTRICT_DEPTH} levels, e.g. jp/13/chuo); clinics are enrolled by their district",
            district.id, district.cert.roles, district.cert.scope
        )));
    }
    if district.cert.key != *district.key.public() {
        return Err(CliError::Usage(format!("node.key is not the key certified for {}", district.id)));
    }
    Ok(())
}

/// Enrolls a verified request at `district`: certificate, members row, recipients row. Refuses
/// an id already in either file. `rabbitmq` also stores the RabbitMQ hash of the password.
pub fn issue(
    district: &District<'_>,
    request: &EnrollRequest,
    valid_days: u32,
    rabbitmq: bool,
) -> Result<Issued, CliError> {
    check_district(district)?;
    let mut members = MembersFile::load_or_default(district.members).map_err(CliError::Usage)?;
    let scope = district.cert.scope.clone();
    let mut recipients = RecipientsFile::load(district.recipients, &scope).map_err(CliError::Usage)?;
    if members.members.iter().any(|row| row.id == request.id) || recipients.get(&request.id).is_some() {
        return Err(CliError::Usage(format!(
            "{} is already enrolled at {} (members file {} or recipients file {}); remove it first: kairan enroll remove --id {}",
            request.id,
            district.id,
            district.members.display(),
            district.recipients.display(),
            request.id
        )));
    }
    if request.id == district.id {
        return Err(CliError::Usage(format!(
            "{} is the district relay's own id; a clinic needs an id of its own",
            request.id
        )));
    }
    let now = clock::now();
    let serial = format!("{}-{}-{}", district.id, request.id, now.unix_ms());
    let window = (now, now.plus_secs(i64::from(valid_days) * 24 * 3600));
    let cert_info = Certificate::for_key(
        serial.clone(),
        district.id,
        &request.id,
        &request.key,
        Role::Clinic,
        &scope,
        window,
    );
    let cert = sign_certificate(&cert_info, &[district.key])?;
    let password = crate::relay::random_password();
    members.members.push(MemberRow {
        id: request.id.clone(),
        kind: MemberKind::Clinic,
        password_hash: PasswordHash::new(&password).to_string(),
        cert: None,
        scope: Some(scope.to_string()),
        rabbitmq_password_hash: rabbitmq.then(|| RabbitPasswordHash::new(&password).to_string()),
        password: None,
    });
    recipients.recipients.push(DirectoryEntry {
        id: request.id.clone(),
        scope: scope.clone(),
        key: request.recipient_key.clone(),
        cert: serial.clone(),
    });
    members.save(district.members).map_err(CliError::Failed)?;
    recipients.save(district.recipients).map_err(CliError::Failed)?;
    Ok(Issued { cert, serial, password, scope })
}

/// Takes clinic `id` out of the district's members and recipients files. Refuses an id that is
/// in neither, and a member that is not a clinic.
pub fn remove(district: &District<'_>, id: &str) -> Result<(), CliError> {
    kairan_protocol::advisory::check_id("--id", id).map_err(CliError::Usage)?;
    let mut members = MembersFile::load_or_default(district.members).map_err(CliError::Usage)?;
    let mut recipients =
        RecipientsFile::load(district.recipients, &district.cert.scope).map_err(CliError::Usage)?;
    if let Some(row) = members.members.iter().find(|row| row.id == id && row.kind != MemberKind::Clinic) {
        return Err(CliError::Usage(format!(
            "{id} is a {:?} member, not a clinic; kairan enroll removes clinics only",
            row.kind
        )));
    }
    let before = (members.members.len(), recipients.recipients.len());
    members.members.retain(|row| row.id != id);
    recipients.recipients.retain(|row| row.id != id);
    if before == (members.members.len(), recipients.recipients.len()) {
        return Err(CliError::Usage(format!(
            "{id} is not enrolled at {} (neither in {} nor in {})",
            district.id,
            district.members.display(),
            district.recipients.display()
        )));
    }
    members.save(district.members).map_err(CliError::Failed)?;
    recipients.save(district.recipients).map_err(CliError::Failed)?;
    Ok(())
}
