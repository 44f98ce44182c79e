//! A KV cache that can roll back and compact, the two moves speculation needs.
//!
//! Layout is one row of `kv_dim` floats per token per layer, so that rolling
//! back is a length change and keeping an accepted tree path is a handful of
//! row copies: no recomputation either way.

use super::{ModelError, Result};

#[derive(Debug, Clone)]
pub(crate) struct LayerKv {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

/// Per-sequence cache of keys and values (keys stored after rotary embedding).
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) kv_dim: usize,
    len: usize,
    max_len: usize,
}

impl KvCache {
    pub fn new(num_layers: usize, kv_dim: usize, max_len: usize) -> Self {
        Self { layers: vec![LayerKv { k: Vec::new(), v: Vec::new() }; num_layers], kv_dim, len: 0, max_len }
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
        let d = self.kv_dim;
        for layer in &mut self.layers {
            for (i, &k) in keep.iter().enumerate() {
                let (dst, src) = (start + i, start + k);
                if dst != src {
                    layer.k.copy_within(src * d..(src + 1) * d, dst * d);
                    layer.v.copy_within(src * d..(src + 1) * d, dst * d);
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
        let floats = need * self.kv_dim;
        for layer in &mut self.layers {
            if layer.k.len() < floats {
                layer.k.resize(floats, 0.0);
                layer.v.resize(floats, 0.0);
            }
        }
        Ok(())
    }

    /// Commits `n` rows written after the current length. Done only once the
    /// whole forward pass succeeded, so a failed pass leaves the cache as it was.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Bytes held by the cache.
    pub fn size_bytes(&self) -> usize {
        self.layers.iter().map(|l| (l.k.capacity() + l.v.capacity()) * 4).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: usize) -> KvCache {
        let mut c = KvCache::new(2, 2, 16);
        c.reserve(n).unwrap();
        for l in &mut c.layers {
            for t in 0..n {
                l.k[t * 2] = t as f32;
                l.v[t * 2 + 1] = -(t as f32);
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
        let ks: Vec<f32> = (0..6).map(|t| c.layers[1].k[t * 2]).collect();
        assert_eq!(ks, vec![0.0, 1.0, 2.0, 4.0, 6.0, 7.0]);
        assert_eq!(c.layers[0].v[5 * 2 + 1], -7.0);
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
