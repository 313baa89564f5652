//! What a test does with a running tree: wait for it, publish into it, inject hostile input,
//! stop, restart and rotate its relays, shut it down.

use super::*;
use crate::tls::{PeerCheck, TrustView};

impl Hierarchy {
    /// The national relay.
    pub fn national(&self) -> &TreeRelay {
        &self.relays[0]
    }

    /// The national broker address.
    pub fn national_broker(&self) -> Result<BrokerAddr, CliError> {
        self.relays[0]
            .handle
            .as_ref()
            .ok_or_else(|| CliError::Failed("national relay is stopped".into()))
            .and_then(relay_broker)
    }

    /// Whom relay `index`'s broker must prove to be: that relay, checked with the tree's
    /// anchors (what an origin or an administrator checks; used for `mqtts://`).
    pub fn peer_of(&self, index: usize) -> PeerCheck {
        PeerCheck::Relay {
            expected: self.relays[index].config_parts.id.clone(),
            trust: TrustView::new(self.anchors.clone()),
        }
    }

    /// Waits until every running relay and clinic has its subscriptions acknowledged.
    pub async fn wait_subscribed(&self, timeout: Duration) -> Result<(), CliError> {
        let deadline = Instant::now() + timeout;
        loop {
            let relays_ready =
                self.relays.iter().filter_map(|r| r.handle.as_ref()).all(RelayHandle::is_subscribed);
            let clinics_ready =
                self.clinics.iter().filter_map(|c| c.handle.as_ref()).all(ClinicHandle::is_subscribed);
            if relays_ready && clinics_ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CliError::Failed("the tree did not finish connecting in time".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sets `advisory`'s origin, and its seq and prev as the next link of the origin's chain
    /// of its scope.
    fn link_next(&self, advisory: &mut Advisory) {
        advisory.origin = self.origin.id.clone();
        let chain = self.origin.state.chain(&advisory.scope);
        advisory.seq = chain.seq + 1;
        advisory.prev = chain.digest;
    }

    /// Signs `advisory` as the next link of the origin's chain of its scope (overwriting seq
    /// and prev) and returns the delivery bytes to publish, and the digest.
    pub fn sign_next(&mut self, mut advisory: Advisory) -> (Vec<u8>, Digest) {
        self.link_next(&mut advisory);
        let envelope = Envelope::sign(
            kairan_protocol::envelope::ADVISORY_TYPE,
            advisory.to_payload(),
            &[&self.origin.key],
        );
        let digest = Digest::of(&envelope.payload);
        self.origin.state.signed(&advisory.scope, advisory.seq, digest);
        let delivery =
            Delivery { advisory: envelope, certs: vec![self.origin.cert.clone()], hops: Vec::new() };
        (delivery.to_json(), digest)
    }

    /// [`Self::sign_next`] for a TLP:RED or TLP:AMBER+STRICT advisory (in clear): sealed first
    /// with the protocol's fixture keys ([`seal_with_fixture_keys`]), after its origin, `seq`
    /// and `prev` are set (sealing binds them). Tests only: the keys are public.
    pub fn sign_next_sealed(&mut self, mut advisory: Advisory) -> (Vec<u8>, Digest) {
        self.link_next(&mut advisory);
        self.sign_next(seal_with_fixture_keys(&advisory))
    }

    /// [`Self::sign_next`] for a TLP:RED or TLP:AMBER+STRICT advisory (in clear) sealed to
    /// the named clinics `to` (id, recipient key) with the fixture RNG, after its origin, `seq`
    /// and `prev` are set (sealing binds them). Tests only.
    pub fn sign_next_sealed_to(
        &mut self,
        mut advisory: Advisory,
        to: &[(&str, &kairan_protocol::sealed::RecipientKey)],
    ) -> (Vec<u8>, Digest) {
        use kairan_protocol::sealed::{To, seal};
        self.link_next(&mut advisory);
        let label = format!("harness-to-{}-{}", advisory.origin, advisory.seq);
        let to: Vec<To<'_>> = to.iter().map(|(id, key)| To::Clinic(id, key)).collect();
        let sealed = seal(&advisory, &to, &mut kairan_protocol::fixtures::sealed::rng(&label))
            .unwrap_or_else(|e| panic!("sealing {}: {e}", advisory.id));
        self.sign_next(sealed)
    }

    /// Signs a head of each of the origin's chains as they stand (`valid_for` from now; before
    /// its first advisory, the empty chain of its scope `jp`) and publishes them to the
    /// national node's ingest-heads topic.
    pub async fn publish_head(&self, valid_for: Duration) -> Result<(), CliError> {
        let jp = kairan_protocol::Scope::parse("jp").map_err(CliError::Failed)?;
        for (scope, _) in publish::chains_to_head(&self.origin.state, &jp) {
            self.publish_head_of(&scope, valid_for).await?;
        }
        Ok(())
    }

    /// Signs a head of the origin's chain of `scope` as it stands (`valid_for` from now) and
    /// publishes it to the national node's ingest-heads topic.
    pub async fn publish_head_of(
        &self,
        scope: &kairan_protocol::Scope,
        valid_for: Duration,
    ) -> Result<(), CliError> {
        let now = crate::clock::now();
        let chain = self.origin.state.chain(scope);
        let head = kairan_protocol::head::Head {
            origin: self.origin.id.clone(),
            scope: scope.clone(),
            seq: chain.seq,
            digest: chain.digest,
            issued_at: now,
            expires_at: now.plus_ms(i64::try_from(valid_for.as_millis()).unwrap_or(i64::MAX)),
        };
        let message = head.sign(&self.origin.key, &self.origin.cert).to_json();
        let addr = match &self.relays[0].config_parts.broker {
            BrokerConfig::External { addr, .. } => addr.clone(),
            BrokerConfig::Embedded { .. } => self.national_broker()?,
        };
        let topic = crate::topics::ingest_heads_of(&self.relays[0].config_parts.id, &self.origin.id);
        publish::publish_acked(
            &addr,
            Some(&self.peer_of(0)),
            self.origin.credentials.as_ref(),
            &topic,
            message,
            Duration::from_secs(10),
        )
        .await
    }

    /// Publishes delivery bytes to the national ingest topic; returns once the broker acked.
    pub async fn publish_raw(&self, bytes: Vec<u8>) -> Result<(), CliError> {
        let addr = match &self.relays[0].config_parts.broker {
            BrokerConfig::External { addr, .. } => addr.clone(),
            BrokerConfig::Embedded { .. } => self.national_broker()?,
        };
        // The origin's own credentials (a member of the national broker).
        publish::publish_acked(
            &addr,
            Some(&self.peer_of(0)),
            self.origin.credentials.as_ref(),
            &crate::topics::ingest_of("jp", &self.origin.id),
            bytes,
            Duration::from_secs(10),
        )
        .await
    }

    /// Publishes many deliveries to the national ingest topic over one connection (QoS 1, at
    /// most `window` unacknowledged); returns once the broker acknowledged them all.
    pub async fn publish_many(&self, deliveries: Vec<Vec<u8>>, window: usize) -> Result<(), CliError> {
        let addr = match &self.relays[0].config_parts.broker {
            BrokerConfig::External { addr, .. } => addr.clone(),
            BrokerConfig::Embedded { .. } => self.national_broker()?,
        };
        let link = mqtt::LinkConfig {
            addr,
            peer: Some(self.peer_of(0)),
            credentials: self.origin.credentials.clone(),
            client_id: self.origin.id.clone(),
        };
        let connection = mqtt::connect(&link, true, false, mqtt::REQUEST_CHANNEL_CAPACITY)
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let (client, mut eventloop, _tunnel) = (connection.client, connection.eventloop, connection.tunnel);
        let topic = crate::topics::ingest_of(&self.relays[0].config_parts.id, &self.origin.id);
        let total = deliveries.len();
        let mut pending = deliveries.into_iter();
        let (mut sent, mut acked) = (0usize, 0usize);
        while acked < total {
            while sent < total && sent - acked < window {
                let Some(bytes) = pending.next() else { break };
                client
                    .try_publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, bytes)
                    .map_err(|e| CliError::Failed(format!("queue publish: {e}")))?;
                sent += 1;
            }
            match tokio::time::timeout(Duration::from_secs(30), eventloop.poll()).await {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    return Err(CliError::Failed(format!("bulk publish after {acked} of {total}: {error}")));
                }
                Err(_) => {
                    return Err(CliError::Failed(format!("bulk publish stalled after {acked} of {total}")));
                }
            }
        }
        let _ = client.try_disconnect();
        Ok(())
    }

    /// Publishes `bytes` on `topic` of relay `index`'s broker, as that relay would (a test
    /// injecting forged input at a level).
    pub async fn inject(&self, index: usize, topic: &str, bytes: Vec<u8>) -> Result<(), CliError> {
        let credentials = self.publisher_for(index, topic)?;
        self.inject_as(index, &credentials, topic, bytes).await
    }

    /// Publishes `bytes` on `topic` of relay `index`'s broker as `credentials` (client id =
    /// username, as the broker requires); returns once the broker acknowledged it.
    pub async fn inject_as(
        &self,
        index: usize,
        credentials: &Credentials,
        topic: &str,
        bytes: Vec<u8>,
    ) -> Result<(), CliError> {
        let addr = broker_of(&self.relays[index])?;
        let peer = self.peer_of(index);
        publish::publish_acked(&addr, Some(&peer), Some(credentials), topic, bytes, Duration::from_secs(10))
            .await
    }

    /// The credentials of member `id` (relay, clinic or origin) on its parent's broker.
    pub fn credentials_of(&self, id: &str) -> Result<Credentials, CliError> {
        let password =
            self.passwords.get(id).cloned().ok_or_else(|| CliError::Failed(format!("no member {id}")))?;
        Ok(Credentials { username: id.to_owned(), password })
    }

    /// Whoever may publish on `topic` of relay `index`'s broker: the origin on ingest, the
    /// administrator on control, the relay's own publisher on everything it writes (as a
    /// compromised relay would).
    pub fn publisher_for(&self, index: usize, topic: &str) -> Result<Credentials, CliError> {
        let id = &self.relays[index].config_parts.id;
        match crate::topics::parse(id, topic) {
            Some(crate::topics::Topic::Ingest(_) | crate::topics::Topic::IngestHeads(_)) => self
                .origin
                .credentials
                .clone()
                .ok_or_else(|| CliError::Failed("the origin has no credentials".into())),
            Some(crate::topics::Topic::Control) => Ok(self.admin.clone()),
            _ => self.relay_publisher(index),
        }
    }

    /// The credentials of relay `index`'s own publisher on its broker.
    pub fn relay_publisher(&self, index: usize) -> Result<Credentials, CliError> {
        let relay = &self.relays[index];
        let username = crate::authz::publisher_username(&relay.config_parts.id);
        let password = match &relay.config_parts.broker {
            BrokerConfig::External { password, .. } => password.clone(),
            BrokerConfig::Embedded { .. } => relay
                .handle
                .as_ref()
                .and_then(|h| h.internal_credentials.as_ref())
                .map(|c| c.password.clone()),
        };
        password
            .map(|password| Credentials { username, password })
            .ok_or_else(|| CliError::Failed(format!("{} is not running", relay.config_parts.id)))
    }

    /// Clinics whose scope overlaps `scope`.
    pub fn clinics_in(&self, scope: &Scope) -> Vec<usize> {
        (0..self.clinics.len()).filter(|i| self.clinics[*i].config.scope.overlaps(scope)).collect()
    }

    /// The digests in clinic `index`'s inbox.
    pub fn inbox(&self, index: usize) -> Result<BTreeSet<Digest>, CliError> {
        let handle = self.clinics[index]
            .handle
            .as_ref()
            .ok_or_else(|| CliError::Failed("clinic is stopped".into()))?;
        let records = handle.store().all().map_err(|e| CliError::Failed(e.to_string()))?;
        Ok(records.into_iter().map(|r| r.digest).collect())
    }

    /// Waits until every clinic holds exactly `expected(clinic index)`; returns the time it took.
    pub async fn wait_for_inboxes(
        &self,
        expected: impl Fn(usize) -> BTreeSet<Digest>,
        timeout: Duration,
    ) -> Result<Duration, CliError> {
        let started = Instant::now();
        loop {
            let mut all_match = true;
            for index in 0..self.clinics.len() {
                if self.clinics[index].handle.is_some() && self.inbox(index)? != expected(index) {
                    all_match = false;
                    break;
                }
            }
            if all_match {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                let mut report = String::new();
                for index in 0..self.clinics.len() {
                    let held = self.inbox(index).map(|s| s.len()).unwrap_or(0);
                    report.push_str(&format!(
                        " {}={}/{}",
                        self.clinics[index].config.id,
                        held,
                        expected(index).len()
                    ));
                }
                return Err(CliError::Failed(format!(
                    "inboxes did not converge within {timeout:?}:{report}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops relay `index` cleanly. An embedded broker stops with it (its children lose their
    /// connection and retry); an external one keeps running.
    pub async fn stop_relay(&mut self, index: usize) -> Result<(), CliError> {
        if let Some(handle) = self.relays[index].handle.take() {
            handle.shutdown();
            handle.wait().await.map_err(CliError::from)?;
        }
        Ok(())
    }

    /// Restarts relay `index` from its store. An embedded broker starts again with it on the
    /// same address (its own clients get a new random password); children reconnect.
    pub async fn restart_relay(&mut self, index: usize) -> Result<(), CliError> {
        if self.relays[index].handle.is_some() {
            return Ok(());
        }
        let parts = self.relays[index].config_parts.clone();
        self.relays[index].handle = Some(start_relay(&parts, &self.anchors, &self.shutdown).await?);
        Ok(())
    }

    /// Stops clinic `index` cleanly (its inbox flushed); a test may then use its credentials.
    pub async fn stop_clinic(&mut self, index: usize) -> Result<(), CliError> {
        if let Some(handle) = self.clinics[index].handle.take() {
            handle.shutdown();
            handle.wait().await.map_err(CliError::from)?;
        }
        Ok(())
    }

    /// Starts clinic `index` (again, from its store) if it is not running.
    pub async fn start_clinic(&mut self, index: usize) -> Result<(), CliError> {
        if self.clinics[index].handle.is_none() {
            let config = self.clinics[index].config.clone();
            let handle = crate::clinic::start(config, self.shutdown.child_token()).await?;
            self.clinics[index].handle = Some(handle);
        }
        Ok(())
    }

    /// Stops everything and waits (stores flushed).
    pub async fn shutdown(mut self) -> Result<(), CliError> {
        self.shutdown.cancel();
        for clinic in &mut self.clinics {
            if let Some(handle) = clinic.handle.take() {
                handle.wait().await.map_err(CliError::from)?;
            }
        }
        for relay in self.relays.iter_mut().rev() {
            if let Some(handle) = relay.handle.take() {
                handle.wait().await.map_err(CliError::from)?;
            }
        }
        Ok(())
    }

    /// Pushes a trust bundle (JSON) into the national node's control topic.
    pub async fn push_trust(&self, bundle: Vec<u8>) -> Result<(), CliError> {
        self.inject(0, &crate::topics::control(&self.relays[0].config_parts.id), bundle).await
    }

    /// Rotates relay `index` to a fresh key: its parent issues a new certificate for it, the
    /// old certificate is kept as an extra certificate (the children's certificates were
    /// issued under the old key), and the relay restarts from its store with the new key.
    pub async fn rotate_relay_key(&mut self, index: usize) -> Result<(), CliError> {
        let new_key = new_key()?;
        let old = self.relays[index].config_parts.clone();
        let old_cert = Certificate::decode(&old.cert.payload).map_err(|e| CliError::Failed(e.to_string()))?;
        let now = crate::clock::now();
        let cert = Certificate {
            serial: format!("{}-rotated-{}", old_cert.serial, now.unix_ms()),
            key: new_key.public().clone(),
            not_before: now.plus_secs(-60),
            ..old_cert
        };
        let envelope = match self.relays[index].parent {
            Some(parent) => cert.sign(&[&self.relay_key(parent)?]),
            None => cert.sign(&[&self.roots[0], &self.roots[1]]),
        };
        self.stop_relay(index).await?;
        let parts = &mut self.relays[index].config_parts;
        parts.extra_certs.push(old.cert.clone());
        parts.cert = envelope;
        parts.key_hex = new_key.to_hex();
        self.restart_relay(index).await
    }

    /// Replaces relay `index`'s certificate with one for the same key valid from now for
    /// `valid_for` (renewal, or a short-lived one to test expiry), and restarts it.
    pub async fn reissue_relay_cert(&mut self, index: usize, valid_for: Duration) -> Result<(), CliError> {
        let old = Certificate::decode(&self.relays[index].config_parts.cert.payload)
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let now = crate::clock::now();
        let cert = Certificate {
            serial: format!("{}-renewed-{}", old.serial, now.unix_ms()),
            not_before: now.plus_secs(-1),
            not_after: now.plus_ms(i64::try_from(valid_for.as_millis()).unwrap_or(i64::MAX)),
            ..old
        };
        let envelope = match self.relays[index].parent {
            Some(parent) => cert.sign(&[&self.relay_key(parent)?]),
            None => cert.sign(&[&self.roots[0], &self.roots[1]]),
        };
        self.stop_relay(index).await?;
        self.relays[index].config_parts.cert = envelope;
        self.restart_relay(index).await
    }

    /// Relay `index`'s signing key (tests build hops with it).
    pub fn relay_key(&self, index: usize) -> Result<SecretKey, CliError> {
        SecretKey::from_hex(&self.relays[index].config_parts.key_hex)
            .map_err(|e| CliError::Failed(e.to_string()))
    }

    /// Index of the relay with this id.
    pub fn relay_index(&self, id: &str) -> Option<usize> {
        self.relays.iter().position(|r| r.config_parts.id == id)
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        crate::clock::now()
    }
}

/// `advisory` (TLP:RED or AMBER+STRICT, in clear, origin/seq/prev final) sealed with the
/// protocol's fixture keys: RED to the fixture clinics ([`kairan_protocol::fixtures::sealed::CLINICS`]),
/// AMBER+STRICT to the group of its own scope at epoch 1. The RNG is seeded from the origin
/// and `seq`, so a test is reproducible. Never for real advisories.
pub fn seal_with_fixture_keys(advisory: &Advisory) -> Advisory {
    use kairan_protocol::fixtures::sealed::{CLINICS, recipient, rng};
    use kairan_protocol::sealed::{GroupKey, To, seal};
    let label = format!("harness-{}-{}", advisory.origin, advisory.seq);
    let sealed = if advisory.tlp == kairan_protocol::Tlp::Red {
        let keys: Vec<_> = CLINICS.iter().map(|id| recipient(id)).collect();
        let to: Vec<To<'_>> =
            CLINICS.iter().zip(&keys).map(|(id, key)| To::Clinic(id, key.public())).collect();
        seal(advisory, &to, &mut rng(&label))
    } else {
        let group = GroupKey::generate(advisory.scope.clone(), 1, &mut rng(&format!("{label}-group")));
        seal(advisory, &[To::Group(&group)], &mut rng(&label))
    };
    sealed.unwrap_or_else(|e| panic!("sealing {}: {e}", advisory.id))
}
