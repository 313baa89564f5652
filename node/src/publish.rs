//! `kairan publish`: sign (or take a signed envelope) and publish to a national node's
//! ingest topic, assigning the next `seq` and `prev` from the origin's local state file.
//! Success is reported only after the broker acknowledged the publish (QoS 1).
//!
//! The state file (`ORIGIN.state.json` beside the key by default) records the last published
//! `seq` and digest. It is updated only after the broker's acknowledgement, written to a
//! temporary file and renamed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde::{Deserialize, Serialize};

use kairan_protocol::envelope::ADVISORY_TYPE;
use kairan_protocol::{Advisory, Certificate, Delivery, Digest, Envelope, SecretKey};

use crate::clock;
use crate::draft::AdvisoryDraft;
use crate::error::CliError;
use crate::mqtt::{self, BrokerAddr, Credentials};

/// The origin's chain state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginState {
    /// Last published sequence number (0 before the first).
    pub seq: u64,
    /// Its digest.
    pub digest: Option<Digest>,
}

/// Reads a state file (absent = nothing published yet).
pub fn read_state(path: &Path) -> Result<OriginState, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| CliError::Usage(format!("state file {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(OriginState::default()),
        Err(e) => Err(CliError::io(path, e)),
    }
}

/// Writes a state file atomically.
pub fn write_state(path: &Path, state: &OriginState) -> Result<(), CliError> {
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(state).unwrap_or_default())
        .map_err(|e| CliError::io(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| CliError::io(path, e))
}

/// Signs an advisory as the next link of the origin's chain.
pub fn sign_next(
    draft: AdvisoryDraft,
    key: &SecretKey,
    state: &OriginState,
) -> Result<(Advisory, Envelope), CliError> {
    let advisory =
        draft.into_advisory(clock::now(), Some((state.seq + 1, state.digest))).map_err(CliError::Usage)?;
    let envelope = Envelope::sign(ADVISORY_TYPE, advisory.to_payload(), &[key]);
    Ok((advisory, envelope))
}

/// Connection attempts when the broker answers "service unavailable".
const BUSY_ATTEMPTS: u32 = 6;

/// Why one publish attempt failed.
#[derive(Debug)]
enum Attempt {
    /// The broker refused the connection as busy: nothing was sent, try again. The embedded
    /// broker (rmqtt) answers this when the same client id connects again while its previous
    /// connection is still being closed (it holds a lock per client id meanwhile) — which
    /// `kairan publish` run twice in a row, or a script pushing several bundles, does.
    Busy(String),
    /// Anything else: final.
    Failed(CliError),
}

/// Publishes `payload` to `topic` with QoS 1 and waits for the broker's PUBACK. The client id
/// is the username (brokers bind them). A connection refused as busy (nothing sent) is tried
/// again a few times, 50 ms apart and doubling.
pub async fn publish_acked(
    addr: &BrokerAddr,
    credentials: Option<&Credentials>,
    topic: &str,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<(), CliError> {
    let mut delay = Duration::from_millis(50);
    for _ in 1..BUSY_ATTEMPTS {
        match publish_once(addr, credentials, topic, payload.clone(), timeout).await {
            Ok(()) => return Ok(()),
            Err(Attempt::Failed(error)) => return Err(error),
            Err(Attempt::Busy(_)) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    publish_once(addr, credentials, topic, payload, timeout).await.map_err(|attempt| match attempt {
        Attempt::Failed(error) => error,
        Attempt::Busy(text) => CliError::Failed(text),
    })
}

async fn publish_once(
    addr: &BrokerAddr,
    credentials: Option<&Credentials>,
    topic: &str,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<(), Attempt> {
    let client_id = credentials.map_or("kairan-publish", |c| c.username.as_str());
    let options = mqtt::client::client_options(client_id, addr, credentials, true, false);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    // Queued before polling starts: the request channel has room, and the event loop sends
    // it right after CONNACK.
    client
        .try_publish(topic, QoS::AtLeastOnce, false, payload)
        .map_err(|e| Attempt::Failed(CliError::Failed(format!("queue publish: {e}"))))?;
    let refused = |code: rumqttc::ConnectReturnCode| {
        let text = format!("broker {} refused the connection: {code:?}", addr.url());
        if code == rumqttc::ConnectReturnCode::ServiceUnavailable {
            Attempt::Busy(text)
        } else {
            Attempt::Failed(CliError::Failed(text))
        }
    };
    let waited = tokio::time::timeout(timeout, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(Event::Incoming(Packet::ConnAck(ack)))
                    if ack.code != rumqttc::ConnectReturnCode::Success =>
                {
                    return Err(refused(ack.code));
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Err(refused(code)),
                Err(error) => {
                    return Err(Attempt::Failed(CliError::Failed(format!("broker {}: {error}", addr.url()))));
                }
            }
        }
    })
    .await;
    let result = waited.unwrap_or_else(|_| {
        Err(Attempt::Failed(CliError::Failed(format!(
            "no acknowledgement from {} within {timeout:?}",
            addr.url()
        ))))
    });
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await;
    result
}

/// Everything `kairan publish` needs.
#[derive(Debug)]
pub struct PublishRequest {
    /// Origin key.
    pub key: SecretKey,
    /// Origin certificate envelope.
    pub cert: Envelope,
    /// National node's broker.
    pub addr: BrokerAddr,
    /// National node id (ingest topic).
    pub node: String,
    /// Credentials on that broker.
    pub credentials: Option<Credentials>,
    /// State file.
    pub state_path: PathBuf,
}

/// Publishes a draft (signing it as the next link) or a signed envelope. Returns the digest.
pub async fn publish(request: &PublishRequest, input: &[u8]) -> Result<(Digest, u64), CliError> {
    let cert =
        Certificate::decode(&request.cert.payload).map_err(|e| CliError::Usage(format!("--cert: {e}")))?;
    if cert.key != *request.key.public() {
        return Err(CliError::Usage("--cert does not certify --key".into()));
    }
    let state = read_state(&request.state_path)?;
    let envelope = if input.first() == Some(&b'{') {
        // Already signed: publish untouched.
        Envelope::from_json(input).map_err(|e| CliError::Usage(format!("envelope: {e}")))?
    } else {
        let text =
            std::str::from_utf8(input).map_err(|_| CliError::Usage("authoring file is not UTF-8".into()))?;
        let draft = AdvisoryDraft::parse(text).map_err(CliError::Usage)?;
        if draft.origin != cert.subject {
            return Err(CliError::Usage(format!(
                "origin {:?} in the file, but the certificate is for {:?}",
                draft.origin, cert.subject
            )));
        }
        sign_next(draft, &request.key, &state)?.1
    };
    let advisory: Advisory = serde_json::from_slice(&envelope.payload)
        .map_err(|e| CliError::Usage(format!("envelope payload: {e}")))?;
    // Refuse here, precisely, what the national node would refuse for a reason the origin
    // controls: a date outside its certificate's validity, or an expired advisory.
    cert.check_validity(advisory.issued_at).map_err(|e| {
        CliError::Usage(format!(
            "issued_at {} is outside the origin certificate's validity ({e}); omit issued_at to use now",
            advisory.issued_at
        ))
    })?;
    if advisory.expires_at <= clock::now() {
        return Err(CliError::Usage(format!(
            "the advisory expired at {}; nothing to publish",
            advisory.expires_at
        )));
    }
    let digest = Digest::of(&envelope.payload);
    let delivery = Delivery { advisory: envelope, certs: vec![request.cert.clone()], hops: Vec::new() };
    publish_acked(
        &request.addr,
        request.credentials.as_ref(),
        &crate::topics::ingest_of(&request.node, &cert.subject),
        delivery.to_json(),
        Duration::from_secs(30),
    )
    .await?;
    if advisory.seq > state.seq {
        write_state(&request.state_path, &OriginState { seq: advisory.seq, digest: Some(digest) })?;
    }
    // A signed head with the new chain position, so children notice if this advisory is
    // withheld from them; origins also publish heads periodically (`kairan publish --head`).
    publish_head(request, &read_state(&request.state_path)?).await?;
    Ok((digest, advisory.seq))
}

/// How long a published head stays fresh: origins publish one at least this often.
pub const HEAD_VALIDITY_HOURS: i64 = 24;

/// Publishes a signed head of the origin's chain state to the national node.
pub async fn publish_head(request: &PublishRequest, state: &OriginState) -> Result<(), CliError> {
    let cert =
        Certificate::decode(&request.cert.payload).map_err(|e| CliError::Usage(format!("--cert: {e}")))?;
    let now = clock::now();
    let head = kairan_protocol::head::Head {
        origin: cert.subject.clone(),
        seq: state.seq,
        digest: state.digest,
        issued_at: now,
        expires_at: now.plus_secs(HEAD_VALIDITY_HOURS * 3600),
    };
    let message = head.sign(&request.key, &request.cert).to_json();
    publish_acked(
        &request.addr,
        request.credentials.as_ref(),
        &crate::topics::ingest_heads_of(&request.node, &cert.subject),
        message,
        Duration::from_secs(30),
    )
    .await
}
