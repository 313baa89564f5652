//! Proof verification, step by step as RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2
//! (consistency) write it. Variable names follow the RFC (`fn` is `fn_` here).
//!
//! The RFC algorithms bound themselves: each step shifts `sn` right, and a proof with more
//! elements than the tree has levels fails as soon as `sn` reaches 0, so a long proof costs at
//! most 64 hash computations before it is refused.

use super::{Hash, empty_root, node_hash};
use crate::error::{Error, Result};

/// The root hash that an inclusion proof (audit path) leads to from `leaf` (a leaf *hash*) at
/// `index` in a tree of `size` leaves: RFC 9162 §2.1.3.2 steps 1–4 and the `sn` check of step 5.
pub fn root_from_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash]) -> Result<Hash> {
    // 1. The leaf index must be inside the tree.
    if index >= size {
        return Err(Error::BadInclusionProof(format!("leaf index {index} is not below tree size {size}")));
    }
    // 2. fn = leaf_index, sn = tree_size - 1.
    let (mut fn_, mut sn) = (index, size - 1);
    // 3. r = hash.
    let mut r = *leaf;
    // 4. For each p in the path:
    for p in proof {
        // a. Proof longer than the path: fail.
        if sn == 0 {
            return Err(Error::BadInclusionProof(format!(
                "{} hashes is more than the path from leaf {index} to the root of a tree of size {size}",
                proof.len()
            )));
        }
        // b. Is r the right child (or the last node of its level)?
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        // c.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. (first half) sn must be 0: the path reached the root.
    if sn != 0 {
        return Err(Error::BadInclusionProof(format!(
            "{} hashes is fewer than the path from leaf {index} to the root of a tree of size {size}",
            proof.len()
        )));
    }
    Ok(r)
}

/// Verifies that `proof` proves `leaf` (a leaf *hash*) to be leaf number `index` of the tree of
/// `size` leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<()> {
    let computed = root_from_inclusion(leaf, index, size, proof)?;
    if computed != *root {
        return Err(Error::BadInclusionProof(format!(
            "the proof for leaf {index} of {size} leads to root {computed}, not {root}"
        )));
    }
    Ok(())
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root`, given the consistency `proof` (RFC 9162 §2.1.4.2).
///
/// The RFC defines proofs for `0 < old_size < new_size`; the two edge cases are settled the
/// way RFC 9162 implementations settle them, a little more strictly:
/// - `old_size == new_size`: the proof MUST be empty and the roots equal;
/// - `old_size == 0`: the proof MUST be empty and `old_root` MUST be the empty tree's root
///   (every tree extends the empty one).
///
/// `old_size > new_size` always fails.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<()> {
    let fail = |reason: String| Err(Error::BadConsistencyProof(reason));
    if old_size > new_size {
        return fail(format!("old size {old_size} is above new size {new_size}"));
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return fail(format!("a proof from size {old_size} to {new_size} must be empty"));
        }
        if old_size == 0 && *old_root != empty_root() {
            return fail(format!("{old_root} is not the root of the empty tree"));
        }
        if old_size == new_size && old_root != new_root {
            return fail(format!("two different roots for size {old_size}: {old_root} and {new_root}"));
        }
        return Ok(());
    }
    // 1. An empty proof fails.
    let Some((head, tail)) = proof.split_first() else {
        return fail(format!("empty proof from size {old_size} to {new_size}"));
    };
    // 2. If first is an exact power of 2, prepend first_hash to the path.
    let (start, rest) = if old_size.is_power_of_two() { (old_root, proof) } else { (head, tail) };
    // 3. fn = first - 1, sn = second - 1.
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    // 4. Shift both right while LSB(fn) is set.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. fr = sr = the first value of the path.
    let (mut fr, mut sr) = (*start, *start);
    // 6. For each subsequent value c:
    for c in rest {
        // a.
        if sn == 0 {
            return fail(format!(
                "proof from size {old_size} to {new_size} is too long ({} hashes)",
                proof.len()
            ));
        }
        // b.
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        // c.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7. fr = first_hash, sr = second_hash, sn = 0.
    if sn != 0 {
        return fail(format!(
            "proof from size {old_size} to {new_size} is too short ({} hashes)",
            proof.len()
        ));
    }
    if fr != *old_root {
        return fail(format!("the proof leads to old root {fr}, not {old_root}"));
    }
    if sr != *new_root {
        return fail(format!("the proof leads to new root {sr}, not {new_root}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::{leaf_hash, root_of};

    fn leaves(n: u8) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&[i])).collect()
    }

    #[test]
    fn single_leaf_tree() {
        let leaf = leaf_hash(b"data");
        verify_inclusion(&leaf, 0, 1, &[], &leaf).expect("the root of one leaf is the leaf");
        assert!(verify_inclusion(&leaf, 0, 1, &[], &empty_root()).is_err());
        assert!(verify_inclusion(&leaf, 1, 1, &[], &leaf).is_err());
        assert!(verify_inclusion(&leaf, 0, 0, &[], &leaf).is_err());
        assert!(verify_inclusion(&leaf, 0, 1, &[leaf], &leaf).is_err());
    }

    #[test]
    fn two_leaves_by_hand() {
        let l = leaves(2);
        let root = node_hash(&l[0], &l[1]);
        verify_inclusion(&l[0], 0, 2, &[l[1]], &root).expect("left leaf");
        verify_inclusion(&l[1], 1, 2, &[l[0]], &root).expect("right leaf");
        assert!(verify_inclusion(&l[0], 1, 2, &[l[1]], &root).is_err());
        verify_consistency(1, 2, &l[0], &root, &[l[1]]).expect("1 -> 2");
        assert!(verify_consistency(1, 2, &l[1], &root, &[l[1]]).is_err());
    }

    #[test]
    fn consistency_edge_cases() {
        let l = leaves(3);
        let (r1, r3) = (root_of(&l[..1]), root_of(&l));
        verify_consistency(0, 0, &empty_root(), &empty_root(), &[]).expect("empty with itself");
        verify_consistency(0, 3, &empty_root(), &r3, &[]).expect("everything extends the empty tree");
        verify_consistency(3, 3, &r3, &r3, &[]).expect("a tree extends itself");
        let codes = [
            verify_consistency(0, 3, &r1, &r3, &[]),
            verify_consistency(3, 3, &r3, &r1, &[]),
            verify_consistency(3, 3, &r3, &r3, &[r3]),
            verify_consistency(0, 3, &empty_root(), &r3, &[r3]),
            verify_consistency(3, 1, &r3, &r1, &[]),
            verify_consistency(1, 3, &r1, &r3, &[]),
        ];
        for result in codes {
            assert_eq!(result.map_err(|e| e.code()), Err("bad_consistency_proof"));
        }
    }

    #[test]
    fn long_proofs_are_refused_quickly() {
        let l = leaves(5);
        let root = root_of(&l);
        let junk = vec![l[0]; 10_000];
        assert!(verify_inclusion(&l[0], 0, 5, &junk, &root).is_err());
        assert!(verify_consistency(3, 5, &root_of(&l[..3]), &root, &junk).is_err());
    }
}
