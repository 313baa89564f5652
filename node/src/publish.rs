//! `kairan publish`: sign (or take a signed envelope) and publish to a national node's
//! ingest topic, assigning the next `seq` and `prev` from the origin's local state file.
//!
//! Success means **stored**: the national node's signed acceptance of the advisory's digest
//! (`kairan/v1/<node>/accepted/<origin>`, sent once the advisory is in a durable commit)
//! verified against the trust anchors. A broker's PUBACK is not enough — an embedded broker
//! holds the message in memory, and a crash right after it would lose the advisory. Until the
//! acceptance comes, the same bytes are published again (a copy the node holds is a
//! duplicate, answered with the acceptance again); past `--wait` the command exits 75
//! (`EX_TEMPFAIL`) and the next run publishes the same bytes first.
//!
//! Sequence numbers count per chain: one chain per scope the origin publishes to (an
//! advisory for `jp/13` is numbered after the origin's previous `jp/13` advisory, whatever it
//! published elsewhere), so that a node never learns how many advisories went to scopes it is
//! not entitled to (`docs/protocol.md` §11). After each advisory the origin signs the head of
//! that chain; `kairan publish --head` signs the heads of all its chains.
//!
//! The state file (`ORIGIN.state.json` beside the key by default, mode 0600) records, per
//! scope, the last *signed* `seq` and digest, and the delivery awaiting acceptance. A state
//! file of the earlier layout (one chain per origin: top-level `seq` and `digest`) is refused,
//! not migrated (pre-release: the numbering itself changed). It is written durably
//! (fsync of the file and its directory) **before** the first publish: a seq is never signed
//! twice with different content (that would be a fork every node records).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rumqttc::{Event, Packet, QoS, SubscribeReasonCode};
use serde::{Deserialize, Serialize};

use kairan_protocol::acceptance::verify_acceptance;
use kairan_protocol::envelope::ADVISORY_TYPE;
use kairan_protocol::{
    Advisory, Certificate, Delivery, Digest, Envelope, RevocationSet, Scope, SecretKey, TrustAnchors,
    VerifyContext,
};

use crate::clock;
use crate::draft::AdvisoryDraft;
use crate::error::CliError;
use crate::mqtt::{self, BrokerAddr, Credentials, LinkConfig};
use crate::tls::PeerCheck;

/// How long one attempt waits for the acceptance before publishing the same bytes again.
const ATTEMPT: Duration = Duration::from_secs(10);
/// Pause after a failed connection before the next attempt.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The last signed position of one chain (origin, scope).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainState {
    /// Last signed sequence number of the chain (0 before the first).
    pub seq: u64,
    /// Its digest.
    pub digest: Option<Digest>,
}

/// The origin's chains, and what awaits acceptance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginState {
    /// Each chain's last signed position, by the chain's scope.
    #[serde(default)]
    pub chains: BTreeMap<Scope, ChainState>,
    /// The delivery (JSON) signed but not yet confirmed stored by the national node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}

impl OriginState {
    /// The last signed position of the chain of `scope` (seq 0 before its first advisory).
    pub fn chain(&self, scope: &Scope) -> ChainState {
        self.chains.get(scope).copied().unwrap_or_default()
    }

    /// Records that `seq` (digest `digest`) of the chain of `scope` was signed, unless the
    /// chain is already further (a signed envelope of an older position, published again).
    pub fn signed(&mut self, scope: &Scope, seq: u64, digest: Digest) {
        let chain = self.chains.entry(scope.clone()).or_default();
        if seq > chain.seq {
            *chain = ChainState { seq, digest: Some(digest) };
        }
    }
}

/// Reads a state file (absent = nothing published yet).
pub fn read_state(path: &Path) -> Result<OriginState, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            let per_origin = serde_json::from_slice::<serde_json::Value>(&bytes)
                .is_ok_and(|value| value.get("seq").is_some());
            CliError::Usage(if per_origin {
                format!(
                    "state file {}: it numbers one chain per origin, a layout before chains per \
                     (origin, scope); it is not migrated (move it aside: the chains start again at 1)",
                    path.display()
                )
            } else {
                format!("state file {}: {e}", path.display())
            })
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(OriginState::default()),
        Err(e) => Err(CliError::io(path, e)),
    }
}

/// Writes a state file durably (0600, fsync of the file and its directory, then rename).
pub fn write_state(path: &Path, state: &OriginState) -> Result<(), CliError> {
    let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
    crate::secrets::write_private(path, &bytes).map_err(|e| CliError::io(path, e))
}

/// Signs an advisory as the next link of the origin's chain of the draft's scope.
pub fn sign_next(
    draft: AdvisoryDraft,
    key: &SecretKey,
    state: &OriginState,
) -> Result<(Advisory, Envelope), CliError> {
    let chain = state.chain(&draft.scope);
    let advisory =
        draft.into_advisory(clock::now(), Some((chain.seq + 1, chain.digest))).map_err(CliError::Usage)?;
    let envelope = Envelope::sign(ADVISORY_TYPE, advisory.to_payload(), &[key]);
    Ok((advisory, envelope))
}

/// Publishes `payload` to `topic` with QoS 1 and waits for the broker's PUBACK. The client id
/// is the username (brokers bind them). A broker that answers "service unavailable" (rmqtt
/// does while the previous connection of the same client id is being torn down) is asked
/// again until `timeout`. An `mqtts://` broker must pass `peer`.
pub async fn publish_acked(
    addr: &BrokerAddr,
    peer: Option<&PeerCheck>,
    credentials: Option<&Credentials>,
    topic: &str,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match publish_once(addr, peer, credentials, topic, payload.clone(), left).await {
            Err(Busy) if Instant::now() < deadline => tokio::time::sleep(RETRY_PAUSE / 5).await,
            Err(Busy) => {
                return Err(refused_connection(addr, rumqttc::ConnectReturnCode::ServiceUnavailable));
            }
            Ok(result) => return result,
        }
    }
}

/// The broker is busy with the client id: try again.
struct Busy;

async fn publish_once(
    addr: &BrokerAddr,
    peer: Option<&PeerCheck>,
    credentials: Option<&Credentials>,
    topic: &str,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<Result<(), CliError>, Busy> {
    let client_id = credentials.map_or("kairan-publish", |c| c.username.as_str());
    let link = LinkConfig {
        addr: addr.clone(),
        peer: peer.cloned(),
        credentials: credentials.cloned(),
        client_id: client_id.to_owned(),
    };
    let connection = match mqtt::connect(&link, true, false, 10) {
        Ok(connection) => connection,
        Err(e) => return Ok(Err(CliError::Failed(e.to_string()))),
    };
    let explain = |error: &rumqttc::ConnectionError| {
        connection
            .tunnel
            .as_ref()
            .and_then(crate::tls::Tunnel::last_error)
            .unwrap_or_else(|| error.to_string())
    };
    let client = connection.client.clone();
    let mut eventloop = connection.eventloop;
    // Queued before polling starts: the request channel has room, and the event loop sends
    // it right after CONNACK.
    if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
        return Ok(Err(CliError::Failed(format!("queue publish: {e}"))));
    }
    let waited = tokio::time::timeout(timeout, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(Ok(())),
                Ok(Event::Incoming(Packet::ConnAck(ack)))
                    if ack.code != rumqttc::ConnectReturnCode::Success =>
                {
                    if ack.code == rumqttc::ConnectReturnCode::ServiceUnavailable {
                        return Err(Busy);
                    }
                    return Ok(Err(refused_connection(addr, ack.code)));
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(
                    rumqttc::ConnectReturnCode::ServiceUnavailable,
                )) => {
                    return Err(Busy);
                }
                Err(error) => {
                    return Ok(Err(CliError::Failed(format!("broker {}: {}", addr.url(), explain(&error)))));
                }
            }
        }
    })
    .await;
    let result = waited.unwrap_or_else(|_| {
        Ok(Err(CliError::Failed(format!("no acknowledgement from {} within {timeout:?}", addr.url()))))
    });
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await;
    drop(connection.tunnel);
    result
}

fn refused_connection(addr: &BrokerAddr, code: rumqttc::ConnectReturnCode) -> CliError {
    CliError::Failed(format!("broker {} refused the connection: {code:?}", addr.url()))
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
    /// Whom the broker must prove to be (the national relay, checked with the trust anchors);
    /// used for `mqtts://`.
    pub peer: Option<PeerCheck>,
    /// State file.
    pub state_path: PathBuf,
    /// The trust anchors the national node's acceptance must chain to.
    pub anchors: TrustAnchors,
    /// How long to keep publishing until the national node confirms it stored the advisory.
    pub wait: Duration,
    /// Seal the advisory to these recipients (`--seal-to`, `--seal-to-scope`; TLP:RED and
    /// TLP:AMBER+STRICT authoring files only).
    pub seal: Option<crate::sealing::SealTo>,
}

/// What happened to a published advisory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Its digest.
    pub digest: Digest,
    /// Its seq.
    pub seq: u64,
    /// Publishes it took (more than one: the first was not confirmed in time).
    pub attempts: u32,
    /// The clinics it was sealed to (`--seal-to`, `--seal-to-scope`; empty: not sealed here).
    pub sealed_to: Vec<String>,
}

/// Publishes a draft (signing it as the next link) or a signed envelope, and waits until the
/// national node confirms it stored it. An advisory left unconfirmed by an earlier run goes
/// first. `CliError::Unconfirmed` (exit 75) when the confirmation did not come within `wait`.
pub async fn publish(request: &PublishRequest, input: &[u8]) -> Result<Published, CliError> {
    let cert =
        Certificate::decode(&request.cert.payload).map_err(|e| CliError::Usage(format!("--cert: {e}")))?;
    if cert.key != *request.key.public() {
        return Err(CliError::Usage("--cert does not certify --key".into()));
    }
    let state = read_state(&request.state_path)?;
    if let Some(pending) = &state.pending {
        // An earlier run signed this and did not see it confirmed: the same bytes go first,
        // so the chain has no hole and no seq is signed twice.
        let earlier = confirm(request, &cert.subject, pending).await?;
        eprintln!("an advisory left unconfirmed by an earlier run (seq {}) is now stored", earlier.seq);
        let mut confirmed = read_state(&request.state_path)?;
        confirmed.pending = None;
        write_state(&request.state_path, &confirmed)?;
    }
    let state = read_state(&request.state_path)?;
    let mut sealed_to = Vec::new();
    let envelope = if input.first() == Some(&b'{') {
        if request.seal.is_some() {
            return Err(CliError::Usage(
                "--seal-to/--seal-to-scope seal an authoring file (TOML); this input is already signed"
                    .into(),
            ));
        }
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
        match &request.seal {
            Some(seal) => {
                let recipients = crate::sealing::resolve(request, seal, draft.tlp, &draft.scope).await?;
                sealed_to = recipients.iter().map(|(id, _)| id.clone()).collect();
                crate::sealing::sign_next_sealed(draft, &request.key, &state, &recipients)?.1
            }
            None => sign_next(draft, &request.key, &state)?.1,
        }
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
    let json =
        String::from_utf8(delivery.to_json()).map_err(|e| CliError::Failed(format!("delivery: {e}")))?;
    // Durable before the first publish: what may be stored at the national node is never
    // forgotten here.
    let mut next = state.clone();
    next.signed(&advisory.scope, advisory.seq, digest);
    next.pending = Some(json.clone());
    write_state(&request.state_path, &next)?;
    let mut published = confirm(request, &cert.subject, &json).await?;
    published.sealed_to = sealed_to;
    next.pending = None;
    write_state(&request.state_path, &next)?;
    // A signed head of this chain's new position, so children entitled to it notice if this
    // advisory is withheld from them; origins also publish heads periodically
    // (`kairan publish --head`).
    publish_head(request, &advisory.scope, next.chain(&advisory.scope)).await?;
    Ok(published)
}

/// Publishes the delivery `json` until the national node's signed acceptance of its digest
/// arrives, for at most `request.wait`.
async fn confirm(request: &PublishRequest, origin: &str, json: &str) -> Result<Published, CliError> {
    let delivery = Delivery::from_json(json.as_bytes())
        .map_err(|e| CliError::Usage(format!("pending delivery: {e}")))?;
    let digest = delivery.claimed_digest();
    let seq = serde_json::from_slice::<Advisory>(&delivery.advisory.payload).map(|a| a.seq).unwrap_or(0);
    let deadline = Instant::now() + request.wait;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        if attempt(request, origin, json.as_bytes(), &digest, left.min(ATTEMPT)).await? {
            return Ok(Published { digest, seq, attempts, sealed_to: Vec::new() });
        }
        if Instant::now() >= deadline {
            return Err(CliError::Unconfirmed(format!(
                "{digest} (seq {seq}) published {attempts} time(s) to {} but the national node {} did not confirm \
                 it stored it within {:?}; run kairan publish again: it publishes the same bytes first",
                request.addr.url(),
                request.node,
                request.wait
            )));
        }
        tokio::time::sleep(RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// One connection: subscribe to the acceptances, publish, wait up to `timeout` for the
/// acceptance of `digest`. `Ok(false)` when it did not come (or the connection failed);
/// errors only for what another attempt cannot fix (refused credentials or subscription).
async fn attempt(
    request: &PublishRequest,
    origin: &str,
    payload: &[u8],
    digest: &Digest,
    timeout: Duration,
) -> Result<bool, CliError> {
    let credentials = request.credentials.as_ref();
    let client_id = credentials.map_or("kairan-publish", |c| c.username.as_str());
    let link = LinkConfig {
        addr: request.addr.clone(),
        peer: request.peer.clone(),
        credentials: credentials.cloned(),
        client_id: client_id.to_owned(),
    };
    // A TLS setup error (a certificate that cannot be parsed, say) does not go away on retry.
    let connection = mqtt::connect(&link, true, false, 10).map_err(|e| CliError::Failed(e.to_string()))?;
    let client = connection.client.clone();
    let mut eventloop = connection.eventloop;
    let accepted = crate::topics::accepted(&request.node, origin);
    let ingest = crate::topics::ingest_of(&request.node, origin);
    client
        .try_subscribe(&accepted, QoS::AtMostOnce)
        .map_err(|e| CliError::Failed(format!("queue subscribe: {e}")))?;
    let anchors = &request.anchors;
    let revocations = RevocationSet::default();
    let outcome = tokio::time::timeout(timeout, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack)))
                    if ack.code != rumqttc::ConnectReturnCode::Success
                        && ack.code != rumqttc::ConnectReturnCode::ServiceUnavailable =>
                {
                    return Err(refused_connection(&request.addr, ack.code));
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.iter().any(|code| matches!(code, SubscribeReasonCode::Failure)) {
                        return Err(CliError::Failed(format!(
                            "broker {} refused the subscription to {accepted}: regenerate its members/ACL files \
                             (origins read their acceptances)",
                            request.addr.url()
                        )));
                    }
                    // Subscribed first, so the acceptance cannot pass before we listen.
                    client
                        .try_publish(&ingest, QoS::AtLeastOnce, false, payload.to_vec())
                        .map_err(|e| CliError::Failed(format!("queue publish: {e}")))?;
                }
                Ok(Event::Incoming(Packet::Publish(message))) if message.topic == accepted => {
                    let ctx = VerifyContext { anchors, revocations: &revocations, now: clock::now() };
                    match verify_acceptance(&message.payload, &request.node, ctx) {
                        Ok(verified) if verified.value().digest == *digest => return Ok(true),
                        Ok(_) => {}
                        Err(error) => eprintln!("warning: an acceptance on {accepted} was refused: {}: {error}", error.code()),
                    }
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code))
                    if code != rumqttc::ConnectReturnCode::ServiceUnavailable =>
                {
                    return Err(refused_connection(&request.addr, code));
                }
                // The national node is down or restarting: the next attempt reconnects.
                Err(_) => return Ok(false),
            }
        }
    })
    .await
    .unwrap_or(Ok(false));
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await;
    drop(connection.tunnel);
    outcome
}

/// How long a published head stays fresh: origins publish one at least this often.
pub const HEAD_VALIDITY_HOURS: i64 = 24;

/// Publishes a signed head of the origin's chain of `scope` at `chain` to the national node.
pub async fn publish_head(
    request: &PublishRequest,
    scope: &Scope,
    chain: ChainState,
) -> Result<(), CliError> {
    let cert =
        Certificate::decode(&request.cert.payload).map_err(|e| CliError::Usage(format!("--cert: {e}")))?;
    let now = clock::now();
    let head = kairan_protocol::head::Head {
        origin: cert.subject.clone(),
        scope: scope.clone(),
        seq: chain.seq,
        digest: chain.digest,
        issued_at: now,
        expires_at: now.plus_secs(HEAD_VALIDITY_HOURS * 3600),
    };
    let message = head.sign(&request.key, &request.cert).to_json();
    publish_acked(
        &request.addr,
        request.peer.as_ref(),
        request.credentials.as_ref(),
        &crate::topics::ingest_heads_of(&request.node, &cert.subject),
        message,
        Duration::from_secs(30),
    )
    .await
}

/// The chains whose heads the periodic publication signs: every chain of `state`, or, before
/// the origin's first advisory, the (empty) chain of its certified scope, so that its feed
/// can be watched for freshness from the start.
pub fn chains_to_head(state: &OriginState, origin_scope: &Scope) -> Vec<(Scope, ChainState)> {
    if state.chains.is_empty() {
        return vec![(origin_scope.clone(), ChainState::default())];
    }
    state.chains.iter().map(|(scope, chain)| (scope.clone(), *chain)).collect()
}

/// Publishes a signed head of each of the origin's chains ([`chains_to_head`]); returns them.
pub async fn publish_heads(
    request: &PublishRequest,
    state: &OriginState,
) -> Result<Vec<(Scope, ChainState)>, CliError> {
    let cert =
        Certificate::decode(&request.cert.payload).map_err(|e| CliError::Usage(format!("--cert: {e}")))?;
    let chains = chains_to_head(state, &cert.scope);
    for (scope, chain) in &chains {
        publish_head(request, scope, *chain).await?;
    }
    Ok(chains)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> Scope {
        Scope::parse(text).expect("scope")
    }

    #[test]
    fn each_scope_is_numbered_on_its_own() {
        let mut state = OriginState::default();
        state.signed(&scope("jp/13"), 1, Digest::of(b"a"));
        state.signed(&scope("jp/13"), 2, Digest::of(b"b"));
        state.signed(&scope("jp/27"), 1, Digest::of(b"c"));
        state.signed(&scope("jp/13"), 1, Digest::of(b"a"));
        assert_eq!(state.chain(&scope("jp/13")), ChainState { seq: 2, digest: Some(Digest::of(b"b")) });
        assert_eq!(state.chain(&scope("jp/27")).seq, 1);
        assert_eq!(state.chain(&scope("jp")), ChainState::default(), "a scope never published to");
        let heads: Vec<String> =
            chains_to_head(&state, &scope("jp")).iter().map(|(s, _)| s.to_string()).collect();
        assert_eq!(heads, ["jp/13", "jp/27"]);
        let fresh = chains_to_head(&OriginState::default(), &scope("jp"));
        assert_eq!(fresh, [(scope("jp"), ChainState::default())], "an empty chain of its own scope");
    }

    #[test]
    fn a_state_file_round_trips_and_the_per_origin_layout_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("o.state.json");
        let mut state = OriginState::default();
        state.signed(&scope("jp/13"), 3, Digest::of(b"x"));
        write_state(&path, &state).expect("write");
        assert_eq!(read_state(&path).expect("read"), state);
        std::fs::write(&path, br#"{"seq": 3, "digest": null}"#).expect("old layout");
        let error = read_state(&path).expect_err("refused").to_string();
        assert!(error.contains("not migrated"), "{error}");
    }
}
