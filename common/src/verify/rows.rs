//! Checking the target's logit rows against the tree they belong to.

use super::VerifyError;
use crate::sampling::argmax;
use crate::tree::DraftTree;

/// Cuts a flat `[rows * vocab]` buffer into rows.
pub fn split_rows(flat: &[f32], vocab: usize) -> Result<Vec<&[f32]>, VerifyError> {
    if vocab == 0 {
        return Err(VerifyError::EmptyVocab);
    }
    if !flat.len().is_multiple_of(vocab) {
        return Err(VerifyError::RaggedFlat { len: flat.len(), vocab });
    }
    Ok(flat.chunks_exact(vocab).collect())
}

/// Ensures there is one row for the root and one per node, all of one
/// non-zero width. The width may exceed the tree's vocabulary: models often
/// pad their output layer.
pub(super) fn check_rows(tree: &DraftTree, logits: &[&[f32]]) -> Result<(), VerifyError> {
    let expected = tree.len() + 1;
    if logits.len() != expected {
        return Err(VerifyError::RowCount { expected, got: logits.len() });
    }
    let width = logits[0].len();
    if width == 0 {
        return Err(VerifyError::EmptyVocab);
    }
    if let Some((row, r)) = logits.iter().enumerate().find(|(_, r)| r.len() != width) {
        return Err(VerifyError::RowWidth { row, expected: width, got: r.len() });
    }
    Ok(())
}

pub(super) fn row_argmaxes(logits: &[&[f32]]) -> Vec<u32> {
    logits.iter().map(|r| argmax(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_flat_rows() {
        let flat = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let rows = split_rows(&flat, 3).unwrap();
        assert_eq!(rows, vec![&[1.0, 2.0, 3.0][..], &[4.0, 5.0, 6.0][..]]);
        assert_eq!(split_rows(&flat, 4), Err(VerifyError::RaggedFlat { len: 6, vocab: 4 }));
        assert_eq!(split_rows(&flat, 0), Err(VerifyError::EmptyVocab));
    }

    #[test]
    fn rows_must_fit_the_tree() {
        let tree = DraftTree::chain(&[1]);
        let a = [0.0f32; 4];
        let b = [0.0f32; 3];
        assert_eq!(check_rows(&tree, &[&a, &a]), Ok(()));
        assert_eq!(check_rows(&tree, &[&a]), Err(VerifyError::RowCount { expected: 2, got: 1 }));
        assert_eq!(check_rows(&tree, &[&a, &b]), Err(VerifyError::RowWidth { row: 1, expected: 4, got: 3 }));
        assert_eq!(check_rows(&tree, &[&[], &[]]), Err(VerifyError::EmptyVocab));
    }
}
