//! Attention masks over the new tokens of one forward pass.
//!
//! Every new token always sees the whole KV cache (the committed prefix); the
//! mask only says which of the *other new tokens* it may see. A causal chain
//! and a draft tree are both special cases, so one runtime path serves
//! prefill, decode and tree verification.

use super::ModelError;

/// Dense visibility over the `n` new tokens of a forward pass:
/// `visible(i, j)` is true when new token `i` may attend to new token `j`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttnMask {
    n: usize,
    bits: Vec<bool>,
}

impl AttnMask {
    /// Ordinary causal attention: token `i` sees tokens `0..=i`.
    pub fn causal(n: usize) -> Self {
        let mut bits = vec![false; n * n];
        for i in 0..n {
            for j in 0..=i {
                bits[i * n + j] = true;
            }
        }
        Self { n, bits }
    }

    /// Tree attention from parent indices (`-1`, or any negative value, for a
    /// token whose parent is the last cached token). A token sees itself and
    /// its ancestors only, never its siblings or cousins.
    pub fn from_parents(parents: &[i32]) -> Result<Self, ModelError> {
        let n = parents.len();
        let mut bits = vec![false; n * n];
        for i in 0..n {
            let p = parents[i];
            if p >= 0 {
                let p = p as usize;
                if p >= i {
                    return Err(ModelError::InvalidMask(format!(
                        "token {i} has parent {p}: a parent must come before its child"
                    )));
                }
                // Copy the parent's row: its ancestors are ours too.
                let (before, row) = bits.split_at_mut(i * n);
                row[..n].copy_from_slice(&before[p * n..p * n + n]);
            }
            bits[i * n + i] = true;
        }
        Ok(Self { n, bits })
    }

    /// An explicit mask; `rows[i][j]` says whether token `i` sees token `j`.
    /// Rejects a mask that lets a token see a later one (which would make the
    /// result depend on evaluation order) or hides a token from itself.
    pub fn from_rows(rows: &[Vec<bool>]) -> Result<Self, ModelError> {
        let n = rows.len();
        let mut bits = Vec::with_capacity(n * n);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != n {
                return Err(ModelError::InvalidMask(format!("row {i} has {} entries, expected {n}", row.len())));
            }
            if !row[i] {
                return Err(ModelError::InvalidMask(format!("token {i} cannot see itself")));
            }
            if row[i + 1..].iter().any(|&b| b) {
                return Err(ModelError::InvalidMask(format!("token {i} sees a later token")));
            }
            bits.extend_from_slice(row);
        }
        Ok(Self { n, bits })
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn visible(&self, i: usize, j: usize) -> bool {
        self.bits[i * self.n + j]
    }

    /// The new-token indices row `i` attends to, in increasing order.
    pub fn row(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.bits[i * self.n..(i + 1) * self.n].iter().enumerate().filter_map(|(j, &b)| b.then_some(j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_is_lower_triangular() {
        let m = AttnMask::causal(3);
        assert!(m.visible(2, 0) && m.visible(2, 2) && !m.visible(0, 1));
    }

    #[test]
    fn tree_sees_only_ancestors() {
        // 0 <- 1 <- 3 ; 0 <- 2
        let m = AttnMask::from_parents(&[-1, 0, 0, 1]).unwrap();
        assert_eq!(m.row(3).collect::<Vec<_>>(), vec![0, 1, 3]);
        assert_eq!(m.row(2).collect::<Vec<_>>(), vec![0, 2]);
        assert!(!m.visible(3, 2));
    }

    #[test]
    fn chain_of_parents_equals_causal() {
        assert_eq!(AttnMask::from_parents(&[-1, 0, 1, 2]).unwrap(), AttnMask::causal(4));
    }

    #[test]
    fn rejects_forward_parent() {
        assert!(AttnMask::from_parents(&[1, -1]).is_err());
        assert!(AttnMask::from_parents(&[0]).is_err());
    }

    #[test]
    fn explicit_rows_are_checked() {
        assert!(AttnMask::from_rows(&[vec![true, true], vec![true, true]]).is_err());
        assert!(AttnMask::from_rows(&[vec![false]]).is_err());
        assert!(AttnMask::from_rows(&[vec![true, false], vec![false, true]]).is_ok());
    }
}
