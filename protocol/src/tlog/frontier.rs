//! The frontier of a log: the roots of the perfect subtrees that make up the tree, which is
//! all it takes to append a leaf and to compute the tree head.

use super::prove::HashReader;
use super::{Hash, NodeIndex, empty_root, node_hash};
use crate::error::{Error, Result};

/// The compact state of an append-only Merkle tree of `size` leaves: the hash of each perfect
/// subtree of its left-to-right decomposition, largest first (one per 1 bit of `size`).
///
/// `append` is O(log n) and returns the complete-subtree hashes it creates, for the store;
/// `root` is O(log n). A node keeps the frontier in memory and can rebuild it from its
/// stored hashes with [`Frontier::load`] after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A frontier from its size and subtree hashes (largest subtree first), as returned by
    /// [`Frontier::hashes`] or read at [`Frontier::nodes`]; refused unless there is exactly
    /// one hash per 1 bit of `size`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self> {
        if hashes.len() != size.count_ones() as usize {
            return Err(Error::InvalidTreeRequest(format!(
                "a frontier of size {size} has {} subtree hashes, not {}",
                size.count_ones(),
                hashes.len()
            )));
        }
        Ok(Self { size, hashes })
    }

    /// The positions of the subtrees of the frontier of a tree of `size` leaves, largest
    /// (leftmost) first: where [`Frontier::load`] reads them.
    pub fn nodes(size: u64) -> Vec<NodeIndex> {
        (0..64u8)
            .rev()
            .filter(|&level| (size >> level) & 1 == 1)
            .map(|level| NodeIndex::new(level, (size >> level) - 1))
            .collect()
    }

    /// Rebuilds the frontier of a tree of `size` leaves from stored hashes.
    pub fn load<R: HashReader>(size: u64, reader: &R) -> Result<Self, R::Error> {
        let nodes = Self::nodes(size);
        let hashes = reader.read_hashes(&nodes)?;
        Ok(Self::from_parts(size, hashes)?)
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree hashes, largest subtree first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The tree head: `MTH` of all leaves appended so far ([`empty_root`] when there are none).
    pub fn root(&self) -> Hash {
        let mut subtrees = self.hashes.iter().rev();
        let Some(&smallest) = subtrees.next() else {
            return empty_root();
        };
        subtrees.fold(smallest, |right, left| node_hash(left, &right))
    }

    /// Appends the leaf whose hash is `leaf` (see [`super::leaf_hash`]) as leaf number
    /// `size`, and returns the complete subtrees this creates, smallest first: the leaf itself
    /// at `(0, size)`, then one more per trailing 1 bit of `size`. Those are the hashes a node
    /// stores for this append. Fails only when the tree already has `2^64 - 1` leaves.
    pub fn append(&mut self, leaf: Hash) -> Result<Vec<(NodeIndex, Hash)>> {
        let index = self.size;
        let size = index
            .checked_add(1)
            .ok_or_else(|| Error::InvalidTreeRequest("the tree is full (2^64 - 1 leaves)".into()))?;
        let mut created = vec![(NodeIndex::new(0, index), leaf)];
        let (mut hash, mut level, mut position) = (leaf, 0u8, index);
        // While the new subtree is a right child, it completes its parent with the left
        // sibling, which is the last (smallest) subtree of the frontier.
        while position & 1 == 1 {
            let Some(left) = self.hashes.pop() else {
                return Err(Error::InvalidTreeRequest(format!(
                    "frontier of size {index} is missing the subtree at level {level}"
                )));
            };
            hash = node_hash(&left, &hash);
            level += 1;
            position >>= 1;
            created.push((NodeIndex::new(level, position), hash));
        }
        self.hashes.push(hash);
        self.size = size;
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::leaf_hash;

    /// MTH by the recursive definition of RFC 9162 §2.1.1.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = crate::tlog::split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn root_matches_the_recursive_definition_at_every_size() {
        let mut frontier = Frontier::new();
        let mut leaves = Vec::new();
        assert_eq!(frontier.root(), empty_root());
        for i in 0..300u32 {
            let leaf = leaf_hash(&i.to_be_bytes());
            leaves.push(leaf);
            let created = frontier.append(leaf).expect("room");
            assert_eq!(created.len(), 1 + i.trailing_ones() as usize);
            assert_eq!(frontier.size(), u64::from(i) + 1);
            assert_eq!(frontier.root(), mth(&leaves), "size {}", i + 1);
            // Every created hash is the MTH of the leaves it covers.
            for (node, hash) in created {
                let start = (node.index << node.level) as usize;
                assert_eq!(hash, mth(&leaves[start..start + (1 << node.level)]), "{node:?}");
            }
        }
    }

    #[test]
    fn nodes_name_the_frontier_subtrees() {
        assert_eq!(Frontier::nodes(0), vec![]);
        assert_eq!(Frontier::nodes(6), vec![NodeIndex::new(2, 0), NodeIndex::new(1, 2)]);
        assert_eq!(
            Frontier::nodes(7),
            vec![NodeIndex::new(2, 0), NodeIndex::new(1, 2), NodeIndex::new(0, 6)]
        );
        assert_eq!(Frontier::nodes(u64::MAX).len(), 64);
    }

    #[test]
    fn from_parts_checks_the_count() {
        let h = leaf_hash(b"");
        assert!(Frontier::from_parts(3, vec![h, h]).is_ok());
        assert_eq!(Frontier::from_parts(3, vec![h]).map_err(|e| e.code()), Err("invalid_tree_request"));
        assert_eq!(Frontier::from_parts(0, vec![]), Ok(Frontier::new()));
    }

    #[test]
    fn a_full_tree_refuses_another_leaf() {
        let hashes = vec![leaf_hash(b""); 64];
        let mut full = Frontier::from_parts(u64::MAX, hashes).expect("64 subtrees");
        assert_eq!(full.append(leaf_hash(b"x")).map_err(|e| e.code()), Err("invalid_tree_request"));
        let mut almost = Frontier::from_parts(u64::MAX - 1, vec![leaf_hash(b""); 63]).expect("63");
        let created = almost.append(leaf_hash(b"x")).expect("the last leaf fits");
        assert_eq!(created.len(), 1);
        assert_eq!(almost.size(), u64::MAX);
    }
}
