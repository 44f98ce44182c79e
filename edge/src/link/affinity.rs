//! Which verifier replica a client reaches when there are several.
//!
//! Through a proxy, the client only sends its affinity key
//! ([`AFFINITY_HEADER`]) and the proxy hashes on it. Without one (QUIC,
//! which an HTTP/2 proxy cannot carry; or a client given the replicas'
//! addresses directly, e.g. a Kubernetes headless Service), the client makes
//! the same kind of choice itself: rendezvous hashing of the key over the
//! replicas' addresses, so a key stays on its replica while that replica is
//! listed, and only the keys of a replica that leaves move.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

pub use ouro_proto::AFFINITY_HEADER;

use super::error::LinkError;

/// A new random key: one generation's calls, its re-opens included, carry it.
pub fn fresh_key() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Every replica `endpoints` names: comma-separated `host:port`s, each
/// resolved. A name whose addresses span both families (`localhost`) is one
/// host, so only the family of its first address counts.
pub async fn replicas(endpoints: &str) -> Result<Vec<SocketAddr>, LinkError> {
    let mut out = Vec::new();
    for part in endpoints.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let addrs: Vec<SocketAddr> =
            tokio::net::lookup_host(part).await.map_err(|e| LinkError::Address(format!("{part}: {e}")))?.collect();
        let Some(first) = addrs.first().copied() else { continue };
        out.extend(addrs.into_iter().filter(|a| a.is_ipv4() == first.is_ipv4()));
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(LinkError::Address(format!("{endpoints}: no address")));
    }
    Ok(out)
}

/// The replica `key` goes to (rendezvous hashing); without a key, the first.
pub fn choose(replicas: &[SocketAddr], key: Option<&str>) -> Option<SocketAddr> {
    match key {
        None => replicas.first().copied(),
        Some(key) => replicas.iter().copied().max_by_key(|addr| score(key, addr)),
    }
}

/// The resolved replica of `endpoints` for `key` (see [`choose`]).
pub async fn resolve(endpoints: &str, key: Option<&str>) -> Result<SocketAddr, LinkError> {
    let all = replicas(endpoints).await?;
    choose(&all, key).ok_or_else(|| LinkError::Address(endpoints.into()))
}

/// A stable weight of (key, replica): the same on every client and every
/// run, which std's randomly seeded hasher is not.
fn score(key: &str, addr: &SocketAddr) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update([0]);
    h.update(addr.to_string().as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n).map(|i| SocketAddr::from(([10, 0, 0, 1 + i as u8], 7071))).collect()
    }

    /// Removing one replica moves only the keys that were on it, and keys
    /// spread over all replicas.
    #[test]
    fn only_the_keys_of_a_removed_replica_move() {
        let all = addrs(4);
        let keys: Vec<String> = (0..400).map(|i| format!("device-{i}")).collect();
        let before: Vec<SocketAddr> = keys.iter().map(|k| choose(&all, Some(k)).unwrap()).collect();
        for r in &all {
            let n = before.iter().filter(|b| *b == r).count();
            assert!(n > 40, "replica {r} got {n} of 400 keys");
        }
        let gone = all[2];
        let rest: Vec<SocketAddr> = all.iter().copied().filter(|a| *a != gone).collect();
        for (k, b) in keys.iter().zip(&before) {
            let after = choose(&rest, Some(k)).unwrap();
            if *b == gone {
                assert_ne!(after, gone);
            } else {
                assert_eq!(after, *b, "key {k} moved although its replica stayed");
            }
        }
    }

    #[test]
    fn the_choice_does_not_depend_on_the_listing_order() {
        let mut all = addrs(5);
        let a = choose(&all, Some("k")).unwrap();
        all.reverse();
        assert_eq!(choose(&all, Some("k")), Some(a));
        assert_eq!(choose(&all, None), all.first().copied());
        assert_eq!(choose(&[], Some("k")), None);
    }

    #[tokio::test]
    async fn several_endpoints_resolve_to_several_replicas() {
        let all = replicas("127.0.0.1:2, 127.0.0.1:1,127.0.0.1:2").await.unwrap();
        assert_eq!(all, vec!["127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap()]);
        assert!(matches!(replicas(" , ").await, Err(LinkError::Address(_))));
        assert!(matches!(replicas("no-port").await, Err(LinkError::Address(_))));
    }
}
