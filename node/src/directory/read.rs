//! What an origin reads of the recipient directories: the retained parts on the national
//! broker (`<national>/directory/#`), each verified with the origin's trust anchors, the
//! newest version of each scope kept; then the recipients of a sealed advisory resolved from
//! them (`kairan publish --seal-to ID --seal-to-scope SCOPE`).

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::{Event, Packet, QoS, SubscribeReasonCode};
use tokio::time::Instant;

use kairan_protocol::directory::{DirectoryEntry, verify_directory};
use kairan_protocol::limits::MAX_SEALED_RECIPIENTS;
use kairan_protocol::sealed::RecipientKey;
use kairan_protocol::{RevocationSet, Scope, TrustAnchors, VerifyContext};

use crate::clock;
use crate::error::CliError;
use crate::mqtt::{self, BrokerAddr, Credentials, LinkConfig};
use crate::tls::PeerCheck;

/// After the subscription is acknowledged, retained parts arrive at once: stop reading after
/// this long without a new one.
const QUIET: Duration = Duration::from_millis(700);

/// The verified directories held, by scope.
#[derive(Debug, Default, Clone)]
pub struct Directories {
    by_scope: BTreeMap<String, ScopeDirectory>,
    /// Parts refused (topic, reason), for the operator.
    pub refused: Vec<(String, String)>,
}

/// The newest version of one scope's directory.
#[derive(Debug, Default, Clone)]
struct ScopeDirectory {
    version: u64,
    parts: u32,
    entries: BTreeMap<u32, Vec<DirectoryEntry>>,
}

impl Directories {
    /// Adds one part (message bytes), verified with `ctx`. Older versions than the newest held
    /// are ignored; a newer one replaces what was held for its scope.
    pub fn add(&mut self, topic: &str, bytes: &[u8], ctx: VerifyContext<'_>) {
        if bytes.is_empty() {
            return;
        }
        let verified = match verify_directory(bytes, ctx) {
            Ok(verified) => verified,
            Err(error) => {
                self.refused.push((topic.to_owned(), format!("{}: {error}", error.code())));
                return;
            }
        };
        let held = self.by_scope.entry(verified.scope.to_string()).or_default();
        if verified.version < held.version {
            return;
        }
        if verified.version > held.version {
            *held =
                ScopeDirectory { version: verified.version, parts: verified.parts, entries: BTreeMap::new() };
        }
        held.entries.insert(verified.part, verified.recipients.clone());
    }

    /// The scopes held, with their version and whether every part is present.
    pub fn scopes(&self) -> Vec<(String, u64, bool)> {
        self.by_scope
            .iter()
            .map(|(scope, held)| (scope.clone(), held.version, held.entries.len() == held.parts as usize))
            .collect()
    }

    /// The recipients of a sealed advisory: each id of `ids` (from any directory held) and every
    /// clinic of each scope of `scopes` (a directory held for exactly that scope, complete),
    /// each once. Refuses, naming it, an id no verified directory lists, a scope without a
    /// (complete) directory, and more than [`MAX_SEALED_RECIPIENTS`] clinics.
    pub fn resolve(&self, ids: &[String], scopes: &[Scope]) -> Result<Vec<(String, RecipientKey)>, CliError> {
        Ok(self.resolve_entries(ids, scopes)?.into_iter().map(|entry| (entry.id, entry.key)).collect())
    }

    /// [`Self::resolve`], with each clinic's whole directory entry (its scope, its certificate
    /// serial).
    pub fn resolve_entries(&self, ids: &[String], scopes: &[Scope]) -> Result<Vec<DirectoryEntry>, CliError> {
        let mut chosen: BTreeMap<String, DirectoryEntry> = BTreeMap::new();
        for scope in scopes {
            let held = self.by_scope.get(&scope.to_string()).ok_or_else(|| {
                CliError::Usage(format!(
                    "--seal-to-scope {scope}: no verified recipient directory for {scope} on the national broker \
                     (held: {}); a district publishes its directory once its config names a recipients file",
                    self.held_list()
                ))
            })?;
            if held.entries.len() != held.parts as usize {
                return Err(CliError::Usage(format!(
                    "--seal-to-scope {scope}: directory version {} is incomplete ({} of {} parts); try again shortly",
                    held.version,
                    held.entries.len(),
                    held.parts
                )));
            }
            for entry in held.entries.values().flatten() {
                chosen.insert(entry.id.clone(), entry.clone());
            }
        }
        for id in ids {
            let entry = self
                .by_scope
                .values()
                .flat_map(|held| held.entries.values().flatten())
                .find(|entry| entry.id == *id)
                .cloned()
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "--seal-to {id}: no verified recipient directory lists {id} (directories held: {})",
                        self.held_list()
                    ))
                })?;
            chosen.insert(id.clone(), entry);
        }
        if chosen.is_empty() {
            return Err(CliError::Usage("no recipients: the directories named list no clinic".into()));
        }
        if chosen.len() > MAX_SEALED_RECIPIENTS {
            return Err(CliError::Usage(format!(
                "{} clinics named; a sealed advisory has at most {MAX_SEALED_RECIPIENTS} named recipient slots. \
                 Reaching every clinic of a larger district needs its group key (group slots), and distributing \
                 group epoch keys to origins is not designed yet (docs/design.md)",
                chosen.len()
            )));
        }
        Ok(chosen.into_values().collect())
    }

    fn held_list(&self) -> String {
        if self.by_scope.is_empty() {
            return "none".into();
        }
        self.by_scope
            .iter()
            .map(|(scope, held)| format!("{scope} v{}", held.version))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where an origin reads: the national broker, as itself.
#[derive(Debug, Clone)]
pub struct NationalBroker<'a> {
    /// Its address.
    pub addr: &'a BrokerAddr,
    /// Whom it must prove to be (`mqtts://`).
    pub peer: Option<&'a PeerCheck>,
    /// The origin's credentials.
    pub credentials: Option<&'a Credentials>,
    /// The national node's id.
    pub node: &'a str,
}

/// Reads every retained directory part on the national broker, verifying each with
/// `anchors`; gives up after `timeout`.
pub async fn fetch(
    broker: NationalBroker<'_>,
    anchors: &TrustAnchors,
    timeout: Duration,
) -> Result<Directories, CliError> {
    let client_id = broker.credentials.map_or("kairan-publish", |c| c.username.as_str());
    let link = LinkConfig {
        addr: broker.addr.clone(),
        peer: broker.peer.cloned(),
        credentials: broker.credentials.cloned(),
        client_id: client_id.to_owned(),
    };
    let connection = mqtt::connect(&link, true, false, 10).map_err(|e| CliError::Failed(e.to_string()))?;
    let client = connection.client.clone();
    let mut eventloop = connection.eventloop;
    let filter = crate::topics::directory_filter(broker.node);
    client
        .try_subscribe(&filter, QoS::AtLeastOnce)
        .map_err(|e| CliError::Failed(format!("subscribe: {e}")))?;
    let revocations = RevocationSet::default();
    let mut directories = Directories::default();
    let deadline = Instant::now() + timeout;
    let mut quiet_until: Option<Instant> = None;
    let outcome = loop {
        let until = quiet_until.map_or(deadline, |quiet| quiet.min(deadline));
        let event = match tokio::time::timeout_at(until, eventloop.poll()).await {
            Err(_) if quiet_until.is_some() => break Ok(()),
            Err(_) => {
                break Err(CliError::Failed(format!(
                    "the national broker {} did not answer the directory subscription within {timeout:?}",
                    broker.addr.url()
                )));
            }
            Ok(event) => event,
        };
        match event {
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack.return_codes.iter().any(|code| matches!(code, SubscribeReasonCode::Failure)) {
                    break Err(CliError::Failed(format!(
                        "broker {} refused the subscription to {filter}: regenerate its members/ACL files (origins read directories)",
                        broker.addr.url()
                    )));
                }
                quiet_until = Some(Instant::now() + QUIET);
            }
            Ok(Event::Incoming(Packet::Publish(message))) => {
                let ctx = VerifyContext { anchors, revocations: &revocations, now: clock::now() };
                directories.add(&message.topic, &message.payload, ctx);
                quiet_until = Some(Instant::now() + QUIET);
            }
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code))
                if code != rumqttc::ConnectReturnCode::ServiceUnavailable =>
            {
                break Err(CliError::Failed(format!(
                    "broker {} refused the connection: {code:?}",
                    broker.addr.url()
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await;
    drop(connection.tunnel);
    outcome.map(|()| directories)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::fixtures::Hierarchy;
    use kairan_protocol::fixtures::sealed::directory;

    #[test]
    fn recipients_resolve_from_the_newest_verified_directory_and_are_refused_by_name() {
        let tree = Hierarchy::standard();
        let revocations = RevocationSet::default();
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
        let part = directory();
        let scope = part.scope.clone();
        let mut directories = Directories::default();
        directories.add("t", &part.sign(&tree.relays[2].key, &tree.relay_chain(2)).to_json(), ctx);
        directories.add("forged", b"{}", ctx);
        assert_eq!(directories.refused.len(), 1);
        let all = directories.resolve(&[], std::slice::from_ref(&scope)).expect("every clinic");
        assert_eq!(all.len(), part.recipients.len());
        let first = part.recipients[0].id.clone();
        let one = directories.resolve(std::slice::from_ref(&first), &[]).expect("one");
        assert_eq!(one[0].0, first);
        let unknown = directories.resolve(&["nobody".into()], &[]).expect_err("unknown");
        assert!(
            unknown.to_string().contains("--seal-to nobody: no verified recipient directory lists nobody")
        );
        let other = Scope::parse("jp/27/kita").expect("scope");
        let missing = directories.resolve(&[], &[other]).expect_err("no directory");
        assert!(missing.to_string().contains("no verified recipient directory for jp/27/kita"));
    }
}
