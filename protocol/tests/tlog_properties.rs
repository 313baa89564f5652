//! Property tests of the Merkle tree code: for a random log of `n` leaves, every inclusion
//! proof (`index < n`) and every consistency proof (`m ≤ n`) generated from the stored hashes
//! verifies against the frontier's tree heads, and every mutation of a proof, of the leaf or
//! of a root makes verification fail.
//!
//! Mutations of a proof: one bit flipped in any one element, the first or last element
//! dropped, a random hash appended or prepended, two adjacent elements swapped, an element
//! replaced by a random hash. (Changing only the claimed tree *size* is not a mutation a
//! verifier can catch by itself: the root it is given belongs to a size, and a proof can be
//! valid for two sizes with the same path shape. Sizes and roots always travel together,
//! signed, in a checkpoint.)

use kairan_protocol::tlog::{
    self, Frontier, Hash, MemoryHashes, leaf_hash, prove_consistency, prove_inclusion, tree_root,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

/// A small deterministic generator for the choices inside one case (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn hash(&mut self) -> Hash {
        leaf_hash(&self.next().to_be_bytes())
    }
}

/// Every mutation of `proof` that must be refused.
fn mutations(proof: &[Hash], rng: &mut Rng) -> Vec<(String, Vec<Hash>)> {
    let mut out = Vec::new();
    for i in 0..proof.len() {
        let mut flipped = proof.to_vec();
        let bit = rng.below(256);
        flipped[i].0[bit / 8] ^= 1 << (bit % 8);
        out.push((format!("bit {bit} of element {i} flipped"), flipped));
    }
    if !proof.is_empty() {
        out.push(("last element dropped".into(), proof[..proof.len() - 1].to_vec()));
        out.push(("first element dropped".into(), proof[1..].to_vec()));
        let mut replaced = proof.to_vec();
        let i = rng.below(proof.len());
        replaced[i] = rng.hash();
        out.push((format!("element {i} replaced"), replaced));
    }
    if proof.len() >= 2 {
        let i = rng.below(proof.len() - 1);
        let mut swapped = proof.to_vec();
        swapped.swap(i, i + 1);
        out.push((format!("elements {i} and {} swapped", i + 1), swapped));
    }
    out.push(("random hash appended".into(), [proof, &[rng.hash()]].concat()));
    out.push(("random hash prepended".into(), [&[rng.hash()], proof].concat()));
    out
}

fn check_log(n: u64, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed | 1);
    let mut store = MemoryHashes::new();
    let mut leaves = Vec::new();
    let mut roots = vec![tlog::empty_root()];
    for _ in 0..n {
        let leaf = rng.hash();
        leaves.push(leaf);
        store.append(leaf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        roots.push(store.root());
    }
    let root = roots[n as usize];
    prop_assert_eq!(tree_root(&store, n), Ok(root));
    prop_assert_eq!(Frontier::load(n, &store), Ok(store.frontier().clone()));

    for index in 0..n {
        let leaf = &leaves[index as usize];
        let proof = prove_inclusion(&store, index, n).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            tlog::verify_inclusion(leaf, index, n, &proof, &root).is_ok(),
            "inclusion {index} of {n}"
        );
        for (what, bad) in mutations(&proof, &mut rng) {
            prop_assert!(
                tlog::verify_inclusion(leaf, index, n, &bad, &root).is_err(),
                "{what}: {index} of {n}"
            );
        }
        prop_assert!(tlog::verify_inclusion(&rng.hash(), index, n, &proof, &root).is_err(), "other leaf");
        prop_assert!(tlog::verify_inclusion(leaf, index, n, &proof, &rng.hash()).is_err(), "other root");
    }
    for m in 0..=n {
        let old = &roots[m as usize];
        let proof = prove_consistency(&store, m, n).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(tlog::verify_consistency(m, n, old, &root, &proof).is_ok(), "consistency {m} to {n}");
        for (what, bad) in mutations(&proof, &mut rng) {
            prop_assert!(tlog::verify_consistency(m, n, old, &root, &bad).is_err(), "{what}: {m} to {n}");
        }
        prop_assert!(tlog::verify_consistency(m, n, &rng.hash(), &root, &proof).is_err(), "other old root");
        // Every tree extends the empty one: from size 0 there is nothing to prove about the new root.
        if m > 0 {
            prop_assert!(tlog::verify_consistency(m, n, old, &rng.hash(), &proof).is_err(), "other new root");
        }
        if m != n {
            prop_assert!(tlog::verify_consistency(m, n, &root, old, &proof).is_err(), "swapped roots");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: 24,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    })]

    #[test]
    fn every_proof_verifies_and_every_mutation_fails(
        n in prop_oneof![1u64..=64, 65u64..=200, Just(255u64), Just(256), Just(257)],
        seed in any::<u64>(),
    ) {
        check_log(n, seed)?;
    }
}

#[test]
fn every_size_up_to_64() {
    for n in 1..=64 {
        check_log(n, 0x6b61_6972_616e ^ n).unwrap_or_else(|e| panic!("size {n}: {e}"));
    }
}
