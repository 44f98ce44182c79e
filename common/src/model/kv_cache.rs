//! A KV cache that can roll back and compact, the two moves speculation needs.
//!
//! Layout is, per layer and key/value head, one row of `head_dim` floats per
//! token, so that rolling back is a length change and keeping an accepted
//! tree path is a handful of row copies: no recomputation either way. Each
//! head's rows are contiguous because attention reads one head at a time
//! over the whole context: a long context's keys and values come from
//! memory, and one stream per head is read about twice as fast as every
//! other stretch of rows interleaving heads.

use super::{ModelError, Result};

#[derive(Debug, Clone)]
pub(crate) struct LayerKv {
    /// `k[h]`: head `h`'s keys, `head_dim` floats per token.
    pub k: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

/// Per-sequence cache of keys and values (keys stored after rotary embedding).
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    len: usize,
    max_len: usize,
}

impl KvCache {
    pub fn new(num_layers: usize, heads: usize, head_dim: usize, max_len: usize) -> Self {
        let layer = LayerKv { k: vec![Vec::new(); heads], v: vec![Vec::new(); heads] };
        Self { layers: vec![layer; num_layers], heads, head_dim, len: 0, max_len }
    }

    /// Number of tokens whose keys and values are cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Rolls back to the first `n` tokens (rejected draft tokens are dropped).
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps `start..start+keep.len()` as the entries found at
    /// `start + keep[i]`, then drops everything after: after a tree
    /// verification the accepted path's entries move to the end of the prefix
    /// without being recomputed. `keep` must be strictly increasing, so every
    /// copy moves a row down (or leaves it in place) and never overwrites a
    /// row still to be read.
    pub fn keep(&mut self, start: usize, keep: &[usize]) -> Result<()> {
        if start > self.len {
            return Err(ModelError::InvalidInput(format!(
                "keep from {start} but the cache holds only {} tokens",
                self.len
            )));
        }
        let avail = self.len - start;
        for (i, &k) in keep.iter().enumerate() {
            if k >= avail {
                return Err(ModelError::InvalidInput(format!(
                    "keep index {k} is beyond the {avail} entries after {start}"
                )));
            }
            if i > 0 && k <= keep[i - 1] {
                return Err(ModelError::InvalidInput("keep indices must be strictly increasing".into()));
            }
        }
        let d = self.head_dim;
        for rows in self.layers.iter_mut().flat_map(|l| l.k.iter_mut().chain(&mut l.v)) {
            for (i, &k) in keep.iter().enumerate() {
                let (dst, src) = (start + i, start + k);
                if dst != src {
                    rows.copy_within(src * d..(src + 1) * d, dst * d);
                }
            }
        }
        self.len = start + keep.len();
        Ok(())
    }

    /// Makes room for `n` more tokens, so the forward pass can write rows
    /// `len..len+n` before they are committed.
    pub(crate) fn reserve(&mut self, n: usize) -> Result<()> {
        let need = self.len + n;
        if need > self.max_len {
            return Err(ModelError::PositionOutOfRange { position: need - 1, max: self.max_len });
        }
        let floats = need * self.head_dim;
        for rows in self.layers.iter_mut().flat_map(|l| l.k.iter_mut().chain(&mut l.v)) {
            if rows.len() < floats {
                rows.resize(floats, 0.0);
            }
        }
        Ok(())
    }

    /// Writes token `pos`'s keys and values of one layer (`heads * head_dim`
    /// floats each, head after head, as the projections give them).
    pub(crate) fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let d = self.head_dim;
        let layer = &mut self.layers[layer];
        for h in 0..self.heads {
            layer.k[h][pos * d..(pos + 1) * d].copy_from_slice(&k[h * d..(h + 1) * d]);
            layer.v[h][pos * d..(pos + 1) * d].copy_from_slice(&v[h * d..(h + 1) * d]);
        }
    }

    /// Commits `n` rows written after the current length. Done only once the
    /// whole forward pass succeeded, so a failed pass leaves the cache as it was.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Bytes held by the cache.
    pub fn size_bytes(&self) -> usize {
        self.layers.iter().flat_map(|l| l.k.iter().chain(&l.v)).map(|r| r.capacity() * 4).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two layers of two heads of two floats; token `t`'s key in head 1 is
    /// `[t, 10 t]`, its value in head 0 `[-t, 0]`.
    fn filled(n: usize) -> KvCache {
        let mut c = KvCache::new(2, 2, 2, 16);
        c.reserve(n).unwrap();
        for layer in 0..2 {
            for t in 0..n {
                let t = t as f32;
                c.write(layer, t as usize, &[0.0, 0.0, t, 10.0 * t], &[-t, 0.0, 0.0, 0.0]);
            }
        }
        c.commit(n);
        c
    }

    #[test]
    fn keep_compacts_path() {
        let mut c = filled(8);
        c.keep(3, &[1, 3, 4]).unwrap();
        assert_eq!(c.len(), 6);
        let ks: Vec<[f32; 2]> = (0..6).map(|t| [c.layers[1].k[1][t * 2], c.layers[1].k[1][t * 2 + 1]]).collect();
        assert_eq!(ks, vec![[0.0, 0.0], [1.0, 10.0], [2.0, 20.0], [4.0, 40.0], [6.0, 60.0], [7.0, 70.0]]);
        assert_eq!(c.layers[0].v[0][5 * 2], -7.0);
        assert_eq!(c.layers[0].k[0][5 * 2], 0.0, "head 0's keys are its own");
    }

    #[test]
    fn keep_rejects_bad_indices() {
        let mut c = filled(4);
        assert!(c.keep(2, &[2]).is_err());
        assert!(c.keep(1, &[1, 1]).is_err());
        assert!(c.keep(5, &[]).is_err());
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn reserve_respects_max_len() {
        let mut c = filled(15);
        assert!(c.reserve(1).is_ok());
        assert!(matches!(c.reserve(2), Err(ModelError::PositionOutOfRange { .. })));
    }

    #[test]
    fn truncate_never_grows() {
        let mut c = filled(4);
        c.truncate(9);
        assert_eq!(c.len(), 4);
        c.truncate(1);
        assert_eq!(c.len(), 1);
    }
}
