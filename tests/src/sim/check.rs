//! The invariants checked once the tree is quiescent after the heal (the online ones — no
//! forged digest stored, no unreported gap, genuine input never refused, hostile input
//! always refused — are checked as the run goes, in `world.rs`).

use std::collections::BTreeSet;

use rand::seq::index::sample;

use kairan_node::store::{Store, StoredDelivery};
use kairan_protocol::{Digest, RevocationSet, VerifyContext, verify_delivery};

use super::config::VerifyStored;
use super::tree::Level;
use super::world::Sim;

impl Sim {
    /// Checks every node's store; returns the number of clinic inbox entries.
    pub(super) fn check_final(&mut self) -> u64 {
        let mut clinic_entries = 0u64;
        let mut problems: Vec<String> = Vec::new();
        for index in 0..self.nodes.len() {
            let node = &self.nodes[index];
            let expected: BTreeSet<Digest> = self
                .tree
                .genuine
                .iter()
                .filter(|g| g.scope.overlaps(&node.scope))
                .map(|g| g.digest)
                .collect();
            let log = node.store.all().unwrap_or_default();
            let held: BTreeSet<Digest> = log.iter().map(|r| r.digest).collect();
            if held.len() != log.len() {
                problems.push(format!("{} stores an advisory twice", node.id));
            }
            if held != expected {
                let missing: Vec<String> = expected.difference(&held).map(|d| self.describe(d)).collect();
                let extra: Vec<String> = held.difference(&expected).map(|d| self.describe(d)).collect();
                problems.push(format!(
                    "{} ({}) holds {} of {} advisories in its scope; missing [{}]; unexpected [{}]",
                    node.id,
                    node.scope,
                    held.intersection(&expected).count(),
                    expected.len(),
                    missing.join(", "),
                    extra.join(", ")
                ));
            }
            if let Some(bad) = held.intersection(&self.bad).next() {
                problems.push(format!("{} stores the forged or tampered advisory {bad}", node.id));
            }
            let forks = node.store.forks().unwrap_or_default();
            if let Some(fork) = forks.iter().map(|f| f.digest).find(|d| !self.bad.contains(d)) {
                problems.push(format!("{} recorded a fork for {fork}, which no one equivocated", node.id));
            }
            if node.level == Level::Clinic {
                clinic_entries += log.len() as u64;
            }
        }
        // Re-verify what was stored, as an auditor would: every delivery verifies at the
        // time it was received, is the advisory the record says, and carries exactly the hops
        // of the path from the national node down to this node.
        let first_clinic = self.tree.first_clinic;
        let clinics = self.nodes.len() - first_clinic;
        let to_verify: Vec<usize> = match self.config.verify {
            VerifyStored::All => (0..self.nodes.len()).collect(),
            VerifyStored::Sample(count) => {
                let mut chosen: Vec<usize> = (0..first_clinic).collect();
                let picked = sample(&mut self.rng, clinics, count.min(clinics));
                let mut picked: Vec<usize> = picked.into_iter().map(|i| first_clinic + i).collect();
                picked.sort_unstable();
                chosen.extend(picked);
                chosen
            }
        };
        let revocations = RevocationSet::default();
        for index in to_verify {
            let path = self.path_to(index);
            for record in &self.nodes[index].store.all().unwrap_or_default() {
                self.stats.reverified += 1;
                if let Err(problem) = self.reverify(index, record, &path, &revocations) {
                    problems.push(problem);
                }
            }
        }
        self.check_no_genuine_revoked(&mut problems);
        self.violations.extend(problems);
        clinic_entries
    }

    /// The relay ids whose hops a delivery stored at `index` must carry, in order.
    fn path_to(&self, index: usize) -> Vec<String> {
        let mut path = Vec::new();
        let mut at =
            if self.nodes[index].level == Level::Clinic { self.nodes[index].parent } else { Some(index) };
        while let Some(node) = at {
            path.push(self.nodes[node].id.clone());
            at = self.nodes[node].parent;
        }
        path.reverse();
        path
    }

    fn reverify(
        &self,
        index: usize,
        record: &StoredDelivery,
        path: &[String],
        revocations: &RevocationSet,
    ) -> Result<(), String> {
        let node = &self.nodes[index];
        let ctx = VerifyContext { anchors: &self.tree.anchors, revocations, now: record.received_at };
        let verified = verify_delivery(&record.delivery, ctx).map_err(|e| {
            format!("{}: stored {} does not verify: {}: {e}", node.id, record.digest, e.code())
        })?;
        let advisory = verified.advisory();
        if verified.digest() != record.digest
            || advisory.origin != record.origin
            || advisory.seq != record.seq
            || advisory.scope.to_string() != record.scope
        {
            return Err(format!(
                "{}: stored record {} does not describe its delivery",
                node.id, record.digest
            ));
        }
        if !advisory.scope.overlaps(&node.scope) {
            return Err(format!("{}: stores {} for scope {}", node.id, record.digest, advisory.scope));
        }
        let hops: Vec<&str> = verified.hops().map(|h| h.relay.as_str()).collect();
        if hops != path.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(format!("{}: stored {} came via {hops:?}, not {path:?}", node.id, record.digest));
        }
        Ok(())
    }

    pub(super) fn describe(&self, digest: &Digest) -> String {
        match self.tree.genuine.iter().find(|g| g.digest == *digest) {
            Some(g) => format!("{} #{} ({})", g.origin_id, g.seq, g.scope),
            None if self.bad.contains(digest) => format!("FORGED {}", digest.short()),
            None => digest.short(),
        }
    }
}
