//! Protobuf bytes → `v1::DraftRound` → `to_draft`, as the cloud does with
//! every round a client sends, then on to verification and back onto the
//! wire as a verdict, which the edge decodes with `to_verdict`.
//!
//! Checks: nothing panics; an accepted draft respects the limits it was
//! checked against; its distributions are normalised; a verdict survives
//! the wire round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ouro_common::sampling::{SamplerRng, SamplingParams};
use ouro_common::tree::TreeLimits;
use ouro_common::verify::{verify_greedy, verify_sampling};
use ouro_proto::v1;
use prost::Message;

/// The cloud's defaults (`--max-tree-nodes`, `--max-tree-depth`,
/// `--max-draft-top-k`) with a small vocabulary, so drafted tokens often
/// meet the target's argmax and verification gets past the root.
const LIMITS: TreeLimits = TreeLimits { max_nodes: 64, max_depth: 32 };
const MAX_TOP_K: usize = 64;
const VOCAB: usize = 256;

/// splitmix64: a stand-in target whose logits depend on the node's token.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = v1::DraftRound::decode(data) else { return };
    let Ok((tree, dists)) = msg.to_draft(&LIMITS, VOCAB, MAX_TOP_K) else { return };

    assert!(tree.len() <= LIMITS.max_nodes);
    assert!(tree.max_depth() <= LIMITS.max_depth);
    assert_eq!(tree.len(), msg.tokens.len());
    assert!(tree.tokens().iter().all(|&t| (t as usize) < VOCAB));
    assert!(dists.is_empty() || dists.len() == tree.len());
    for d in &dists {
        assert!(!d.is_empty() && d.len() <= MAX_TOP_K);
        assert!(d.pairs().windows(2).all(|w| w[0].0 < w[1].0), "pairs sorted by id, no duplicates");
        assert!(d.pairs().iter().all(|&(id, p)| (id as usize) < VOCAB && p > 0.0 && p.is_finite()));
        let total: f64 = d.pairs().iter().map(|&(_, p)| p as f64).sum();
        assert!((total - 1.0).abs() < 1e-3, "distribution sums to {total}");
    }

    // Verify against a deterministic target, greedy or sampled by the round number.
    let root = msg.committed_len;
    let mut flat = Vec::with_capacity((tree.len() + 1) * VOCAB);
    for token in std::iter::once(root).chain(tree.tokens().iter().copied()) {
        let h = mix(token as u64);
        flat.extend((0..VOCAB as u64).map(|t| (mix(h ^ t) % 4) as f32));
    }
    let rows: Vec<&[f32]> = flat.chunks_exact(VOCAB).collect();
    let params = match msg.round % 3 {
        0 => SamplingParams::greedy(),
        1 => SamplingParams::with_temperature(1.0, msg.round),
        _ => SamplingParams { temperature: 0.7, top_k: Some(8), top_p: Some(0.9), seed: msg.round },
    };
    let verdict = if params.is_greedy() || dists.is_empty() {
        verify_greedy(&tree, &rows)
    } else {
        verify_sampling(&tree, &rows, &dists, &params, &mut SamplerRng::new(params.seed))
    }
    .expect("a checked draft verifies against well-formed logits");
    assert!(verdict.accepted.len() <= tree.max_depth());
    assert_eq!(verdict.target_argmax.len(), tree.len() + 1);

    // The verdict crosses the wire and the edge reads it back.
    let wire = v1::Verdict::from_verdict(msg.round, &verdict, root as usize, 0, 1);
    let wire = v1::Verdict::decode(wire.encode_to_vec().as_slice()).expect("own encoding decodes");
    let back = wire.to_verdict(&tree).expect("a verdict for this tree converts back");
    assert_eq!(back.accepted, verdict.accepted);
    assert_eq!(back.next_token, verdict.next_token);
    for n in (0..tree.len()).filter(|n| !verdict.accepted.contains(n)) {
        assert_eq!(back.target_argmax[n + 1], verdict.target_argmax[n + 1], "rejected node {n}'s argmax");
    }
});
