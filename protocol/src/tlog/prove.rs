//! Proof generation from stored hashes: inclusion proofs (RFC 9162 §2.1.3.1, `PATH`),
//! consistency proofs (§2.1.4.1, `PROOF`/`SUBPROOF`) and tree heads of any earlier size.
//!
//! Every hash in such a proof is the Merkle Tree Hash of a range of leaves `[lo, hi)` chosen
//! by the RFC's recursion. Each range decomposes, left to right, into at most `2·log₂ n`
//! complete subtrees whose hashes the store holds (see [`super::NodeIndex`]); folding them
//! from the right gives the range's hash. Generation is split in two so that a sans-IO core
//! can fetch hashes however its store likes: a [`ProofPlan`] lists the [`NodeIndex`]es to read,
//! and [`ProofPlan::assemble`] turns the hashes read into the proof. [`prove_inclusion`],
//! [`prove_consistency`] and [`tree_root`] do both through a [`HashReader`].

use super::{Frontier, Hash, NodeIndex, empty_root, node_hash, split_point};
use crate::error::{Error, Result};

/// Read access to a log's stored hashes: the hash of every complete subtree
/// (`NodeIndex → Hash`), as returned by [`Frontier::append`] and kept by the node's store.
pub trait HashReader {
    /// The store's error; protocol errors (a malformed request) convert into it.
    type Error: From<Error>;

    /// The hashes at `nodes`, in the same order. Every node asked for lies inside a tree
    /// the store holds; a missing one is a store error.
    fn read_hashes(&self, nodes: &[NodeIndex]) -> std::result::Result<Vec<Hash>, Self::Error>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    type Error = R::Error;

    fn read_hashes(&self, nodes: &[NodeIndex]) -> std::result::Result<Vec<Hash>, Self::Error> {
        (**self).read_hashes(nodes)
    }
}

/// Which stored hashes a proof (or tree head) needs, and how to fold them into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPlan {
    nodes: Vec<NodeIndex>,
    /// Proof element `i` folds the next `parts[i]` hashes.
    parts: Vec<usize>,
}

impl ProofPlan {
    fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut plan = Self { nodes: Vec::new(), parts: Vec::new() };
        for (lo, hi) in ranges {
            let before = plan.nodes.len();
            complete_subtrees(lo, hi, &mut plan.nodes);
            plan.parts.push(plan.nodes.len() - before);
        }
        plan
    }

    /// The stored hashes to read, in the order [`ProofPlan::assemble`] expects them.
    pub fn nodes(&self) -> &[NodeIndex] {
        &self.nodes
    }

    /// The number of hashes in the proof.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether the proof is empty (nothing to read).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The proof, from the hashes read at [`ProofPlan::nodes`] (same order).
    pub fn assemble(&self, hashes: &[Hash]) -> Result<Vec<Hash>> {
        if hashes.len() != self.nodes.len() {
            return Err(Error::InvalidTreeRequest(format!(
                "hash reader returned {} hashes for {} nodes",
                hashes.len(),
                self.nodes.len()
            )));
        }
        let mut rest = hashes;
        let mut proof = Vec::with_capacity(self.parts.len());
        for &count in &self.parts {
            let (part, tail) = rest.split_at(count);
            rest = tail;
            let mut subtrees = part.iter().rev();
            let Some(&last) = subtrees.next() else {
                return Err(Error::InvalidTreeRequest("empty range in a proof plan".into()));
            };
            proof.push(subtrees.fold(last, |right, left| node_hash(left, &right)));
        }
        Ok(proof)
    }

    fn read<R: HashReader>(&self, reader: &R) -> Result<Vec<Hash>, R::Error> {
        if self.nodes.is_empty() {
            return Ok(Vec::new());
        }
        let hashes = reader.read_hashes(&self.nodes)?;
        Ok(self.assemble(&hashes)?)
    }
}

/// Appends the complete subtrees that make up leaves `[lo, hi)`, left to right.
fn complete_subtrees(mut lo: u64, hi: u64, out: &mut Vec<NodeIndex>) {
    while lo < hi {
        let fits = 63 - (hi - lo).leading_zeros();
        let aligned = if lo == 0 { 63 } else { lo.trailing_zeros() };
        let level = fits.min(aligned);
        out.push(NodeIndex::new(level as u8, lo >> level));
        lo += 1 << level;
    }
}

/// The plan of the inclusion proof (audit path) of leaf `index` in the tree of `size` leaves:
/// `PATH(index, D[size])`, the sibling nearest the leaf first.
pub fn inclusion_plan(index: u64, size: u64) -> Result<ProofPlan> {
    if index >= size {
        return Err(Error::InvalidTreeRequest(format!("leaf index {index} is not below tree size {size}")));
    }
    let (mut lo, mut hi) = (0, size);
    let mut ranges = Vec::new();
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
        }
    }
    ranges.reverse();
    Ok(ProofPlan::from_ranges(ranges))
}

/// The plan of the consistency proof from the tree of `old_size` leaves to the tree of
/// `new_size` leaves: `PROOF(old_size, D[new_size])`; empty when `old_size` is 0 or equal to
/// `new_size` (see [`super::verify_consistency`]).
pub fn consistency_plan(old_size: u64, new_size: u64) -> Result<ProofPlan> {
    if old_size > new_size {
        return Err(Error::InvalidTreeRequest(format!(
            "no consistency proof from size {old_size} to the smaller size {new_size}"
        )));
    }
    let mut ranges = Vec::new();
    if old_size > 0 {
        // SUBPROOF(m, D[lo:hi], b), with lo < m <= hi throughout.
        let (mut lo, mut hi, mut whole_old_tree) = (0, new_size, true);
        while old_size != hi {
            let k = split_point(hi - lo);
            if old_size <= lo + k {
                ranges.push((lo + k, hi));
                hi = lo + k;
            } else {
                ranges.push((lo, lo + k));
                lo += k;
                whole_old_tree = false;
            }
        }
        // SUBPROOF(m, D[m], false) = {MTH(D[m])}; with b = true the verifier knows it.
        if !whole_old_tree {
            ranges.push((lo, hi));
        }
        ranges.reverse();
    }
    Ok(ProofPlan::from_ranges(ranges))
}

/// The plan of the tree head of the first `size` leaves (empty for `size` 0, whose head is
/// [`empty_root`]).
pub fn root_plan(size: u64) -> ProofPlan {
    ProofPlan::from_ranges((size > 0).then_some((0, size)))
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves, from stored hashes.
pub fn prove_inclusion<R: HashReader>(reader: &R, index: u64, size: u64) -> Result<Vec<Hash>, R::Error> {
    inclusion_plan(index, size)?.read(reader)
}

/// The consistency proof from size `old_size` to size `new_size`, from stored hashes.
pub fn prove_consistency<R: HashReader>(
    reader: &R,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, R::Error> {
    consistency_plan(old_size, new_size)?.read(reader)
}

/// The tree head of the first `size` leaves, from stored hashes.
pub fn tree_root<R: HashReader>(reader: &R, size: u64) -> Result<Hash, R::Error> {
    Ok(root_plan(size).read(reader)?.first().copied().unwrap_or_else(empty_root))
}

/// Stored hashes in memory, for tests, the simulator and small logs: every complete subtree
/// hash by level, plus the frontier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryHashes {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryHashes {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash and stores the subtree hashes it completes.
    pub fn append(&mut self, leaf: Hash) -> Result<()> {
        for (node, hash) in self.frontier.append(leaf)? {
            let level = usize::from(node.level);
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            self.levels[level].push(hash);
        }
        Ok(())
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The current tree head.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The frontier.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }
}

impl HashReader for MemoryHashes {
    type Error = Error;

    fn read_hashes(&self, nodes: &[NodeIndex]) -> Result<Vec<Hash>> {
        nodes
            .iter()
            .map(|node| {
                usize::try_from(node.index)
                    .ok()
                    .and_then(|index| self.levels.get(usize::from(node.level))?.get(index))
                    .copied()
                    .ok_or_else(|| {
                        Error::InvalidTreeRequest(format!(
                            "no stored hash at {node:?} (size {})",
                            self.size()
                        ))
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::{leaf_hash, root_of, verify_consistency, verify_inclusion};

    /// PATH(m, D[n]) by the recursive definition of RFC 9162 §2.1.3.1.
    fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        if leaves.len() <= 1 {
            return Vec::new();
        }
        let k = split_point(leaves.len() as u64) as usize;
        let (left, right) = leaves.split_at(k);
        if m < k {
            [path(m, left), vec![root_of(right)]].concat()
        } else {
            [path(m - k, right), vec![root_of(left)]].concat()
        }
    }

    /// SUBPROOF(m, D[n], b) by the recursive definition of RFC 9162 §2.1.4.1.
    fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
        if m == leaves.len() {
            return if whole { Vec::new() } else { vec![root_of(leaves)] };
        }
        let k = split_point(leaves.len() as u64) as usize;
        let (left, right) = leaves.split_at(k);
        if m <= k {
            [subproof(m, left, whole), vec![root_of(right)]].concat()
        } else {
            [subproof(m - k, right, false), vec![root_of(left)]].concat()
        }
    }

    #[test]
    fn generation_matches_the_recursive_definitions() {
        let mut store = MemoryHashes::new();
        let mut leaves = Vec::new();
        for n in 1..=70u16 {
            let leaf = leaf_hash(&n.to_be_bytes());
            leaves.push(leaf);
            store.append(leaf).expect("room");
            let size = u64::from(n);
            let root = root_of(&leaves);
            assert_eq!(tree_root(&store, size), Ok(root));
            for m in 0..leaves.len() {
                let proof = prove_inclusion(&store, m as u64, size).expect("inclusion");
                assert_eq!(proof, path(m, &leaves), "PATH({m}, D[{n}])");
                verify_inclusion(&leaves[m], m as u64, size, &proof, &root).expect("verifies");
            }
            for m in 0..=leaves.len() {
                let proof = prove_consistency(&store, m as u64, size).expect("consistency");
                let expected =
                    if m == 0 || m == leaves.len() { Vec::new() } else { subproof(m, &leaves, true) };
                assert_eq!(proof, expected, "PROOF({m}, D[{n}])");
                verify_consistency(m as u64, size, &root_of(&leaves[..m]), &root, &proof).expect("verifies");
                assert_eq!(tree_root(&store, m as u64), Ok(root_of(&leaves[..m])));
            }
        }
    }

    #[test]
    fn proofs_read_few_hashes() {
        let mut store = MemoryHashes::new();
        for i in 0..1000u16 {
            store.append(leaf_hash(&i.to_be_bytes())).expect("room");
        }
        for (m, n) in [(0, 1000), (999, 1000), (517, 999), (1, 1000), (500, 501)] {
            assert!(inclusion_plan(m, n).expect("plan").nodes().len() <= 20, "{m} {n}");
            assert!(consistency_plan(m.max(1), n).expect("plan").nodes().len() <= 20, "{m} {n}");
        }
        assert_eq!(Frontier::load(1000, &store), Ok(store.frontier().clone()));
        assert_eq!(Frontier::load(777, &store).map(|f| f.root()), tree_root(&store, 777));
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut store = MemoryHashes::new();
        store.append(leaf_hash(b"")).expect("room");
        assert_eq!(prove_inclusion(&store, 1, 1).map_err(|e| e.code()), Err("invalid_tree_request"));
        assert_eq!(prove_consistency(&store, 2, 1).map_err(|e| e.code()), Err("invalid_tree_request"));
        // Asking for more than the store holds is the store's error.
        assert_eq!(prove_inclusion(&store, 0, 2).map_err(|e| e.code()), Err("invalid_tree_request"));
        let plan = inclusion_plan(0, 4).expect("plan");
        assert!(plan.assemble(&[]).is_err());
        assert_eq!(root_plan(0).nodes(), &[]);
        assert_eq!(tree_root(&store, 0), Ok(empty_root()));
    }
}
