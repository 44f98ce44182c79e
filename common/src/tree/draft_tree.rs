//! The flat tree representation and its validation.

use super::TreeError;

/// Caps on a draft tree's shape, set by whoever pays for verifying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    pub max_nodes: usize,
    pub max_depth: usize,
}

impl TreeLimits {
    /// No caps: for trees built locally from trusted data.
    pub const UNBOUNDED: Self = Self { max_nodes: usize::MAX, max_depth: usize::MAX };
}

/// A tree of draft tokens below an implicit root (the last committed token).
///
/// Stored flat in topological order: node `i` has token `tokens[i]` and parent
/// `parents[i]`, which is `-1` for a child of the root and otherwise an index
/// `< i`. That order is what the verifier's attention mask needs, and it makes
/// cycles unrepresentable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftTree {
    tokens: Vec<u32>,
    parents: Vec<i32>,
    depths: Vec<usize>,
    limits: TreeLimits,
    vocab_size: usize,
}

impl DraftTree {
    /// Validates and builds a tree; see [`TreeError`] for what is refused.
    pub fn new(tokens: Vec<u32>, parents: Vec<i32>, limits: &TreeLimits, vocab_size: usize) -> Result<Self, TreeError> {
        if tokens.len() != parents.len() {
            return Err(TreeError::LengthMismatch { tokens: tokens.len(), parents: parents.len() });
        }
        if tokens.len() > limits.max_nodes {
            return Err(TreeError::TooManyNodes { len: tokens.len(), max: limits.max_nodes });
        }
        let mut tree = Self::empty(limits, vocab_size);
        tree.tokens.reserve(tokens.len());
        tree.parents.reserve(tokens.len());
        tree.depths.reserve(tokens.len());
        let len = tokens.len();
        for (index, (&token, &parent)) in tokens.iter().zip(&parents).enumerate() {
            let parent = match parent {
                -1 => None,
                p if p < -1 || p as usize >= len => {
                    return Err(TreeError::ParentOutOfRange { index, parent: p as i64, len });
                }
                p => Some(p as usize),
            };
            tree.push_checked(index, token, parent)?;
        }
        Ok(tree)
    }

    /// A tree with no nodes yet, to be grown with [`DraftTree::push`].
    pub fn empty(limits: &TreeLimits, vocab_size: usize) -> Self {
        Self { tokens: Vec::new(), parents: Vec::new(), depths: Vec::new(), limits: *limits, vocab_size }
    }

    /// A single path (each token the child of the previous one), without
    /// limits or a vocabulary bound.
    pub fn chain(tokens: &[u32]) -> Self {
        let mut tree = Self::empty(&TreeLimits::UNBOUNDED, u32::MAX as usize + 1);
        for (i, &t) in tokens.iter().enumerate() {
            tree.tokens.push(t);
            tree.parents.push(i as i32 - 1);
            tree.depths.push(i + 1);
        }
        tree
    }

    /// Appends a node under `parent` (`None` for the root) and returns its
    /// index; the tree is unchanged on error.
    pub fn push(&mut self, token: u32, parent: Option<usize>) -> Result<usize, TreeError> {
        let index = self.tokens.len();
        if index >= self.limits.max_nodes {
            return Err(TreeError::TooManyNodes { len: index + 1, max: self.limits.max_nodes });
        }
        self.push_checked(index, token, parent)?;
        Ok(index)
    }

    fn push_checked(&mut self, index: usize, token: u32, parent: Option<usize>) -> Result<(), TreeError> {
        if token as usize >= self.vocab_size {
            return Err(TreeError::TokenOutOfVocab { index, token, vocab: self.vocab_size });
        }
        let depth = match parent {
            None => 1,
            Some(p) if p >= index => return Err(TreeError::ParentNotBefore { index, parent: p }),
            Some(p) => self.depths[p] + 1,
        };
        if depth > self.limits.max_depth {
            return Err(TreeError::TooDeep { index, depth, max: self.limits.max_depth });
        }
        // Parent indices travel as i32 on the wire and in the mask.
        let wire_parent = match parent {
            None => -1,
            Some(p) => {
                i32::try_from(p).map_err(|_| TreeError::ParentOutOfRange { index, parent: p as i64, len: index })?
            }
        };
        self.tokens.push(token);
        self.parents.push(wire_parent);
        self.depths.push(depth);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Parent indices, `-1` for children of the root.
    pub fn parents(&self) -> &[i32] {
        &self.parents
    }

    pub fn token(&self, i: usize) -> u32 {
        self.tokens[i]
    }

    /// The parent node, `None` for a child of the root.
    pub fn parent(&self, i: usize) -> Option<usize> {
        usize::try_from(self.parents[i]).ok()
    }

    /// Distance from the root: 1 for the root's children.
    pub fn depth(&self, i: usize) -> usize {
        self.depths[i]
    }

    /// Depth of the deepest node, 0 for an empty tree.
    pub fn max_depth(&self) -> usize {
        self.depths.iter().copied().max().unwrap_or(0)
    }

    pub fn limits(&self) -> &TreeLimits {
        &self.limits
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Children of node `parent` (`None` for the root), in index order, which
    /// is the order verification tries them in.
    pub fn children(&self, parent: Option<usize>) -> impl Iterator<Item = usize> + '_ {
        let want = parent.map_or(-1, |p| p as i64);
        self.parents.iter().enumerate().filter(move |&(_, &p)| p as i64 == want).map(|(i, _)| i)
    }

    pub fn is_leaf(&self, i: usize) -> bool {
        // Children come after their parent, so only later nodes can qualify.
        !self.parents[i + 1..].iter().any(|&p| p as i64 == i as i64)
    }

    /// Node indices from the root's child down to `i`, inclusive.
    pub fn path_to(&self, i: usize) -> Vec<usize> {
        let mut path = Vec::with_capacity(self.depths[i]);
        let mut node = Some(i);
        while let Some(n) = node {
            path.push(n);
            node = self.parent(n);
        }
        path.reverse();
        path
    }

    /// Every root-to-leaf path, ordered by leaf index.
    pub fn paths(&self) -> Vec<Vec<usize>> {
        let mut has_child = vec![false; self.len()];
        for p in self.parents.iter().filter_map(|&p| usize::try_from(p).ok()) {
            has_child[p] = true;
        }
        (0..self.len()).filter(|&i| !has_child[i]).map(|i| self.path_to(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: TreeLimits = TreeLimits { max_nodes: 8, max_depth: 3 };

    // 0 <- 1 <- 3 ; 0 <- 2 ; 4 (second root child)
    fn sample() -> DraftTree {
        DraftTree::new(vec![10, 11, 12, 13, 14], vec![-1, 0, 0, 1, -1], &LIM, 100).unwrap()
    }

    #[test]
    fn shape_queries() {
        let t = sample();
        assert_eq!(t.len(), 5);
        assert_eq!((0..5).map(|i| t.depth(i)).collect::<Vec<_>>(), vec![1, 2, 2, 3, 1]);
        assert_eq!(t.children(None).collect::<Vec<_>>(), vec![0, 4]);
        assert_eq!(t.children(Some(0)).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(t.children(Some(3)).count(), 0);
        assert_eq!(t.path_to(3), vec![0, 1, 3]);
        assert_eq!(t.paths(), vec![vec![0, 2], vec![0, 1, 3], vec![4]]);
        assert_eq!(t.parent(4), None);
        assert_eq!(t.parent(3), Some(1));
        assert!(t.is_leaf(3) && !t.is_leaf(1));
        assert_eq!(t.max_depth(), 3);
    }

    #[test]
    fn chain_is_a_single_path() {
        let t = DraftTree::chain(&[5, 6, 7]);
        assert_eq!(t.parents(), &[-1, 0, 1]);
        assert_eq!(t.paths(), vec![vec![0, 1, 2]]);
        assert!(DraftTree::chain(&[]).is_empty());
        assert!(DraftTree::chain(&[]).paths().is_empty());
    }

    #[test]
    fn push_grows_and_validates() {
        let mut t = DraftTree::empty(&LIM, 100);
        assert_eq!(t.push(1, None), Ok(0));
        assert_eq!(t.push(2, Some(0)), Ok(1));
        assert_eq!(t.push(3, Some(1)), Ok(2));
        assert_eq!(t.push(4, Some(2)), Err(TreeError::TooDeep { index: 3, depth: 4, max: 3 }));
        assert_eq!(t.push(4, Some(3)), Err(TreeError::ParentNotBefore { index: 3, parent: 3 }));
        assert_eq!(t.push(100, None), Err(TreeError::TokenOutOfVocab { index: 3, token: 100, vocab: 100 }));
        assert_eq!(t.len(), 3);
        assert_eq!(t, DraftTree::new(vec![1, 2, 3], vec![-1, 0, 1], &LIM, 100).unwrap());
    }

    #[test]
    fn push_respects_node_limit() {
        let lim = TreeLimits { max_nodes: 1, max_depth: 4 };
        let mut t = DraftTree::empty(&lim, 10);
        t.push(1, None).unwrap();
        assert_eq!(t.push(1, None), Err(TreeError::TooManyNodes { len: 2, max: 1 }));
    }

    #[test]
    fn each_defect_has_its_error() {
        let new = |tok: Vec<u32>, par: Vec<i32>| DraftTree::new(tok, par, &LIM, 100);
        assert_eq!(new(vec![1], vec![]), Err(TreeError::LengthMismatch { tokens: 1, parents: 0 }));
        assert_eq!(new(vec![1; 9], vec![-1; 9]), Err(TreeError::TooManyNodes { len: 9, max: 8 }));
        assert_eq!(
            new(vec![1, 100], vec![-1, 0]),
            Err(TreeError::TokenOutOfVocab { index: 1, token: 100, vocab: 100 })
        );
        assert_eq!(new(vec![1, 2], vec![-1, 2]), Err(TreeError::ParentOutOfRange { index: 1, parent: 2, len: 2 }));
        assert_eq!(new(vec![1, 2], vec![-1, -2]), Err(TreeError::ParentOutOfRange { index: 1, parent: -2, len: 2 }));
        // Self-loop, and a two-node cycle: both are a parent not before its child.
        assert_eq!(new(vec![1], vec![0]), Err(TreeError::ParentNotBefore { index: 0, parent: 0 }));
        assert_eq!(new(vec![1, 2], vec![1, 0]), Err(TreeError::ParentNotBefore { index: 0, parent: 1 }));
        assert_eq!(new(vec![1, 2, 3, 4], vec![-1, 0, 1, 2]), Err(TreeError::TooDeep { index: 3, depth: 4, max: 3 }));
    }

    #[test]
    fn messages_name_the_offender() {
        let e = DraftTree::new(vec![1, 77], vec![-1, 5], &LIM, 100).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("node 1") && msg.contains('5'), "{msg}");
        let e = DraftTree::new(vec![1, 777], vec![-1, 0], &LIM, 100).unwrap_err();
        assert!(e.to_string().contains("777"));
    }

    #[test]
    fn empty_tree_is_valid() {
        let t = DraftTree::new(vec![], vec![], &LIM, 100).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.max_depth(), 0);
        assert_eq!(t.children(None).count(), 0);
    }
}
