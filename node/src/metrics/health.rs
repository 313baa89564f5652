//! Readiness of a node: what `/readyz` answers.
//!
//! A node is ready when its store is open and its upstream connection is subscribed (every
//! subscription acknowledged), and, for a relay, its connection to its own broker is up —
//! the broker its children read. `/healthz` only says the process answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::registry::NodeKind;

/// The readiness flags of one node.
#[derive(Debug)]
pub struct Health {
    kind: NodeKind,
    store_open: AtomicBool,
    downstream_up: AtomicBool,
    /// The driver's flag, known once the driver is started.
    subscribed: OnceLock<Arc<AtomicBool>>,
}

impl Health {
    /// Nothing is up yet.
    pub fn new(kind: NodeKind) -> Self {
        Self {
            kind,
            store_open: AtomicBool::new(false),
            downstream_up: AtomicBool::new(false),
            subscribed: OnceLock::new(),
        }
    }

    /// Relay or clinic.
    pub fn kind(&self) -> NodeKind {
        self.kind
    }

    /// The store is open (and passed its integrity check).
    pub fn store_opened(&self) {
        self.store_open.store(true, Ordering::SeqCst);
    }

    /// The driver's "upstream subscribed" flag.
    pub fn attach_upstream(&self, subscribed: Arc<AtomicBool>) {
        let _ = self.subscribed.set(subscribed);
    }

    /// The own broker connection came up or went down.
    pub fn set_downstream(&self, up: bool) {
        self.downstream_up.store(up, Ordering::SeqCst);
    }

    fn subscribed(&self) -> bool {
        self.subscribed.get().is_some_and(|flag| flag.load(Ordering::SeqCst))
    }

    /// `Ok` when ready, else the first reason it is not, in one line.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.store_open.load(Ordering::SeqCst) {
            return Err("store not opened yet");
        }
        if self.kind == NodeKind::Relay && !self.downstream_up.load(Ordering::SeqCst) {
            return Err("own broker connection down");
        }
        if !self.subscribed() {
            return Err("upstream not subscribed");
        }
        Ok(())
    }

    /// Readiness, upstream subscribed, own broker up (relays only).
    pub fn snapshot(&self) -> (Result<(), &'static str>, bool, Option<bool>) {
        let downstream = (self.kind == NodeKind::Relay).then(|| self.downstream_up.load(Ordering::SeqCst));
        (self.readiness(), self.subscribed(), downstream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_is_ready_only_with_store_broker_and_upstream() {
        let health = Health::new(NodeKind::Relay);
        assert_eq!(health.readiness(), Err("store not opened yet"));
        health.store_opened();
        assert_eq!(health.readiness(), Err("own broker connection down"));
        health.set_downstream(true);
        assert_eq!(health.readiness(), Err("upstream not subscribed"));
        let subscribed = Arc::new(AtomicBool::new(false));
        health.attach_upstream(subscribed.clone());
        assert_eq!(health.readiness(), Err("upstream not subscribed"));
        subscribed.store(true, Ordering::SeqCst);
        assert_eq!(health.readiness(), Ok(()));
        health.set_downstream(false);
        assert_eq!(health.snapshot(), (Err("own broker connection down"), true, Some(false)));
    }

    #[test]
    fn a_clinic_has_no_own_broker() {
        let health = Health::new(NodeKind::Clinic);
        health.store_opened();
        health.attach_upstream(Arc::new(AtomicBool::new(true)));
        assert_eq!(health.snapshot(), (Ok(()), true, None));
    }
}
