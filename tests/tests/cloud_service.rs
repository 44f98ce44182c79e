//! `ouro-cloud serve` as a real process on loopback: speculative sessions
//! against `Generate`, and every kind of bad input from the issue, each
//! while a well-behaved session runs alongside and must still finish with
//! the right text.

use ouro_edge::link::TransportKind;
use ouro_proto::v1::{self, session_request};
use ouro_tests::cloud::{
    self, connect, generate, speculate, speculate_into, strategy, CloudServer, QuicLink, SessionStream, SpecRequest,
    SpecStats, Trust, OTHER_TOKEN, TOKEN,
};
use ouro_tests::{greedy, model_path, reference_prompts, smollm2, smollm2_f32};
use tonic::{Code, Status};

/// SmolLM2's stop tokens (<|endoftext|>, <|im_end|>, <|im_sep|>... as its tokenizer reports).
const STOP: [u32; 3] = [0, 2, 4];
const NEW: usize = 24;

fn prompts() -> Vec<Vec<u32>> {
    reference_prompts("smollm2-135m").into_iter().map(|(_, p, _)| p).collect()
}

fn server(extra: &[&str]) -> CloudServer {
    CloudServer::start(&model_path("smollm2-135m"), extra)
}

/// Target-only greedy decoding in this process: what every session must produce.
fn expected(prompt: &[u32]) -> Vec<u32> {
    let m = smollm2();
    let mut cache = ouro_common::model::CausalLm::new_cache(&*m);
    greedy(&*m, &mut cache, prompt, NEW, &STOP)
}

async fn hash(client: &mut cloud::Client) -> String {
    client.info(v1::InfoRequest {}).await.expect("info").into_inner().tokenizer_hash
}

/// A speculative session that runs while a test misbehaves next to it; it
/// must finish with exactly target-only greedy text.
fn well_behaved(server: &CloudServer, prompt: Vec<u32>) -> tokio::task::JoinHandle<()> {
    let addr = server.addr;
    tokio::spawn(async move {
        let want = expected(&prompt);
        let mut c = connect(addr, Some(TOKEN)).await;
        let h = hash(&mut c).await;
        let m = smollm2();
        let run = speculate(&mut c, &*m, &h, &prompt, NEW, &STOP, strategy("chain4")).await.expect("good session");
        assert_eq!(run.tokens, want, "the well-behaved session's text changed");
    })
}

async fn open(c: &mut cloud::Client, prompt: &[u32]) -> (SessionStream, v1::Opened) {
    let h = hash(c).await;
    SessionStream::open(c, v1::Open { tokenizer_hash: h, prompt: prompt.to_vec(), ..Default::default() })
        .await
        .expect("open")
}

fn round(n: u64, committed: u32, tokens: Vec<u32>, parents: Vec<i32>) -> v1::DraftRound {
    v1::DraftRound { round: n, committed_len: committed, tokens, parents, ..Default::default() }
}

/// A round sent ahead on the bet that the round before commits `assumed`.
fn ahead(n: u64, committed: u32, tokens: Vec<u32>, parents: Vec<i32>, assumed: &[u32]) -> v1::DraftRound {
    v1::DraftRound { assumed: assumed.to_vec(), ..round(n, committed, tokens, parents) }
}

/// Parents of a chain of `len` nodes.
fn chain(len: usize) -> Vec<i32> {
    (0..len as i32).map(|i| i - 1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speculation_over_the_wire_equals_generate() {
    let srv = server(&[]);
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let h = hash(&mut c).await;
    // A drafter that differs from the verifier, so rounds and bets also fail.
    let m = smollm2_f32();
    let (mut bytes, mut tokens) = (0, 0);
    let (mut ahead_drafted, mut ahead_used) = (0, 0);
    let (mut ahead_sent, mut ahead_stale) = (0, 0);
    for (i, prompt) in prompts().iter().enumerate() {
        // Four prompts, and more while drafting ahead has not yet both won
        // and lost a bet (the assertion below): which bets win depends on
        // the drafter's numerics, and with four prompts every one may win.
        if i >= 4 && ahead_used > 0 && ahead_used < ahead_drafted {
            break;
        }
        let reference = generate(&mut c, prompt, NEW as u32, &STOP).await.expect("generate");
        assert_eq!(reference, expected(prompt), "Generate differs from in-process greedy");
        for strategy in [strategy("chain4"), strategy("ouroboros"), strategy("ouroboros-compute")] {
            let run = speculate(&mut c, &*m, &h, prompt, NEW, &STOP, strategy.clone()).await.expect("session");
            assert_eq!(run.tokens, reference, "{strategy:?}");
            assert!(run.rounds < run.tokens.len() || run.tokens.len() <= 1, "{strategy:?}: no speculation happened");
            bytes += run.bytes_in + run.bytes_out;
            tokens += run.tokens.len();
            (ahead_drafted, ahead_used) = (ahead_drafted + run.ahead_drafted, ahead_used + run.ahead_used);
            (ahead_sent, ahead_stale) = (ahead_sent + run.ahead_sent, ahead_stale + run.ahead_stale);
        }
        // The same without drafting ahead.
        let req = SpecRequest {
            warm: None,
            tokenizer_hash: &h,
            prompt,
            max_new: NEW,
            stop_ids: &STOP,
            strategy: strategy("ouroboros"),
            sampling: ouro_common::sampling::SamplingParams::greedy(),
            pipeline: false,
            info: None,
            draft_window: 0,
            // Every verdict leaves the cloud idle until the next round: it
            // runs on, and each round is walked along its tokens.
            run_on: true,
        };
        let (mut run, mut pool) = (SpecStats::default(), Default::default());
        speculate_into(&mut c, &*m, &req, &mut pool, &mut run, |_| std::ops::ControlFlow::Continue(()))
            .await
            .expect("session");
        assert_eq!(run.tokens, reference, "without pipelining");
        assert_eq!(run.ahead_drafted, 0);
    }
    // Drafting ahead is a bet on a whole trunk plus the drafter's guess of
    // the bonus token. Both outcomes must have happened, or one path (kept
    // cache and pre-drafted round sent at once; or rollback) went untested.
    println!("drafted ahead {ahead_drafted} rounds, sent {ahead_used}");
    assert!(ahead_used > 0 && ahead_used < ahead_drafted, "drafted ahead {ahead_drafted}, used {ahead_used}");
    // Rounds drafted ahead go out before the verdict they bet on; the lost
    // bets come back stale and are sent again, and the text is unchanged.
    println!("sent ahead {ahead_sent}, of which stale {ahead_stale}");
    assert!(ahead_sent > 0 && ahead_stale > 0 && ahead_stale < ahead_sent, "{ahead_sent} sent, {ahead_stale} stale");
    println!(
        "wire bytes per committed token (both directions, protobuf payloads): {:.1}",
        bytes as f64 / tokens as f64
    );
    let metrics = srv.metrics();
    for name in ["ouro_rounds_total", "ouro_accepted_tokens_per_round_bucket", "ouro_batch_size", "ouro_bytes_in_total"]
    {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
}

/// Waits (without a time limit the test depends on) until the server's
/// metric `name` reaches `at_least`.
async fn metric_reaches(srv: &CloudServer, name: &str, at_least: f64) {
    for _ in 0..3000 {
        if srv.metric_sum(name) >= at_least {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{name} stayed below {at_least}");
}

/// A greedy session whose cloud decodes on its own between rounds: each
/// round is walked along the tokens decoded meanwhile, only what lies below
/// is verified, a tree the tokens leave is answered with no pass, and the
/// text is Generate's throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_that_runs_on_walks_each_round_along_its_own_tokens() {
    let srv = server(&[]);
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let h = hash(&mut c).await;
    let (prompt, e) = prompts()
        .into_iter()
        .map(|p| {
            let e = expected(&p);
            (p, e)
        })
        .find(|(_, e)| e.len() >= 14 && !e[..14].iter().any(|t| STOP.contains(t)))
        .expect("a prompt with 14 tokens before a stop");
    let p = prompt.len() as u32;
    const RUN_ON: &str = "ouro_run_on_tokens_total";
    let open = v1::Open { tokenizer_hash: h, prompt, stop_ids: STOP.to_vec(), run_on: 4, ..Default::default() };
    let (mut s, opened) = SessionStream::open(&mut c, open).await.expect("open");
    assert_eq!(opened.committed_len, p);
    // Right after its prefill the cloud decodes e0..e3 alone. Round 1, built
    // on the prompt, holds them and two more: the walk takes the four, and
    // the pass checks only e4 and e5.
    metric_reaches(&srv, RUN_ON, 4.0).await;
    let r1 = v1::DraftRound { run_on: 3, ..round(1, p, e[..6].to_vec(), chain(6)) };
    let v = s.round(r1).await.expect("round 1");
    assert_eq!((v.accepted.clone(), v.next_token, v.committed_len), (vec![0, 1, 2, 3, 4, 5], e[6], p + 7));
    assert_eq!((v.walked, v.ran_on.len(), v.pass_rounds), (4, 0, 1));
    assert!(v.server_us >= v.compute_us && v.compute_us > 0, "{v:?}");
    // After it the cloud decodes e7..e9. Round 2, built on what round 1
    // committed, starts with a wrong token: answered at once, the cloud's
    // tokens as the verdict, and the round sent ahead on it is stale.
    metric_reaches(&srv, RUN_ON, 7.0).await;
    let wrong = (e[7] + 1) % 1000;
    s.send(session_request::Msg::Round(round(2, p + 7, vec![wrong, e[8]], chain(2)))).await;
    s.send(session_request::Msg::Round(ahead(3, p + 8, vec![e[8]], chain(1), &[e[7]]))).await;
    let v = s.verdict().await.expect("round 2");
    assert_eq!((v.accepted.len(), v.next_token, v.ran_on.clone()), (0, e[7], vec![e[8], e[9]]));
    assert_eq!((v.committed_len, v.walked, v.pass_rounds, v.compute_us), (p + 10, 0, 0, 0));
    assert_eq!(v.rejected_argmax.len(), 2, "one per node not accepted");
    let v = s.verdict().await.expect("round 3");
    assert!(v.stale, "a bet on a round the cloud ran past: {v:?}");
    // Round 4 builds on all of it; round 2 left the cloud no run-on.
    let v = s.round(round(4, p + 10, e[10..12].to_vec(), chain(2))).await.expect("round 4");
    assert_eq!((v.accepted, v.next_token, v.committed_len, v.walked), (vec![0, 1], e[12], p + 13, 0));
    assert_eq!(srv.metric_sum(RUN_ON), 7.0);
    // A round built on less than the client was told is refused.
    let st = s.round(round(5, p + 10, vec![e[13]], chain(1))).await.expect_err("a stale base");
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
}

/// A stretch of plain text (no stop token, no chat marker) twice, and its
/// first tokens a third time: a text that goes on quoting itself.
fn quoting_prompt() -> Vec<u32> {
    let text = prompts().into_iter().flatten().collect::<Vec<_>>();
    let passage = text.windows(24).find(|w| !w.iter().any(|t| t <= &STOP[2])).expect("24 tokens of text");
    let mut prompt = [passage, passage].concat();
    prompt.extend_from_slice(&passage[..6]);
    prompt
}

/// `Generate` with `self_draft` verifies the same drafts of the cloud's own
/// in every pass: on a text that quotes itself, fewer passes (a response
/// each) than tokens, and exactly greedy decoding's text, cut at its
/// length; sampled requests ignore it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_with_drafts_of_its_own_keeps_the_text_in_fewer_passes() {
    use ouro_edge::link::Transport;
    use tokio_stream::StreamExt;
    const MAX: usize = 15;
    let srv = server(&[]);
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let prompt = quoting_prompt();
    let m = smollm2();
    let mut cache = ouro_common::model::CausalLm::new_cache(&*m);
    let want = greedy(&*m, &mut cache, &prompt, MAX, &STOP);
    let mut responses = Vec::new();
    for self_draft in [true, false] {
        let req = v1::GenerateRequest {
            prompt: prompt.clone(),
            max_new_tokens: MAX as u32,
            stop_ids: STOP.to_vec(),
            self_draft,
            ..Default::default()
        };
        let mut stream = c.generate_stream(req).await.expect("generate");
        let (mut got, mut n, mut finish) = (Vec::new(), 0, String::new());
        while let Some(r) = stream.next().await.transpose().expect("a response") {
            got.extend(r.tokens);
            n += 1;
            finish = r.finish_reason;
        }
        assert_eq!(got, want, "self_draft {self_draft}");
        assert_eq!(finish, "length");
        responses.push(n);
    }
    assert_eq!(responses[1], MAX, "a pass a token without drafts");
    assert!(responses[0] < MAX, "{} passes for {MAX} tokens", responses[0]);
    // Sampled: ignored, a token a response.
    let sampling = v1::Sampling { temperature: 0.8, seed: 7, ..Default::default() };
    let req = v1::GenerateRequest {
        prompt,
        max_new_tokens: 6,
        stop_ids: STOP.to_vec(),
        sampling: Some(sampling),
        self_draft: true,
        ..Default::default()
    };
    let mut stream = c.generate_stream(req).await.expect("generate");
    while let Some(r) = stream.next().await.transpose().expect("a response") {
        assert!(r.tokens.len() <= 1, "{r:?}");
    }
}

/// While it runs on, the cloud verifies drafts of its own: copies of the
/// session's earlier text. A prompt that quotes a passage twice and starts
/// it a third time runs on with several tokens a pass, each message the
/// tokens one pass committed, and the text is greedy decoding's. With
/// `--no-run-on-drafts` the same session takes a pass a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_running_on_drafts_from_its_own_text_and_keeps_the_text() {
    const RUN_ON: usize = 16;
    let prompt = quoting_prompt();
    let m = smollm2();
    let mut cache = ouro_common::model::CausalLm::new_cache(&*m);
    let want = greedy(&*m, &mut cache, &prompt, RUN_ON, &STOP);
    assert_eq!(want.len(), RUN_ON, "no stop token in the way");
    let mut passes = Vec::new();
    for extra in [&[][..], &["--no-run-on-drafts"][..]] {
        let srv = server(extra);
        let mut c = connect(srv.addr, Some(TOKEN)).await;
        let h = hash(&mut c).await;
        let open = v1::Open {
            tokenizer_hash: h,
            prompt: prompt.clone(),
            stop_ids: STOP.to_vec(),
            run_on: RUN_ON as u32,
            ..Default::default()
        };
        let (mut s, opened) = SessionStream::open(&mut c, open).await.expect("open");
        let mut got = Vec::new();
        let mut messages = 0;
        while got.len() < RUN_ON {
            match s.reply().await.expect("run-on tokens") {
                v1::session_response::Msg::RanOn(r) => {
                    got.extend(r.tokens);
                    messages += 1;
                    assert_eq!(r.committed_len as usize, opened.committed_len as usize + got.len());
                }
                other => panic!("expected RanOn, got {other:?}"),
            }
        }
        assert_eq!(got, want, "{extra:?}: the cloud's own tokens are greedy decoding's");
        let ran = srv.metric_sum("ouro_run_on_passes_total");
        assert_eq!(ran, messages as f64, "{extra:?}: a message per pass");
        passes.push((ran, srv.metric_sum("ouro_run_on_drafted_accepted_total")));
    }
    let ((with, accepted), (without, none)) = (passes[0], passes[1]);
    assert_eq!((without, none), (RUN_ON as f64, 0.0), "a pass a token without drafts");
    // How long a copy goes is priced from the c(k) the server measured at
    // start-up, which a busy machine skews; fewer passes than tokens it
    // makes all the same.
    assert!(with < RUN_ON as f64 && accepted > 0.0, "{with} passes, {accepted} drafted tokens accepted");
}

/// Sampled sessions send their rounds ahead too (one bet at a time), and
/// the cloud's verification of them stays tied to the seed: the same seed
/// gives the same text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_rounds_go_out_ahead_and_the_seed_still_fixes_the_text() {
    let srv = server(&[]);
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let h = hash(&mut c).await;
    let m = smollm2_f32();
    let (mut sent, mut stale) = (0, 0);
    for (i, prompt) in prompts().iter().take(3).enumerate() {
        let sampling = ouro_common::sampling::SamplingParams {
            temperature: 0.8,
            top_k: Some(40),
            top_p: Some(0.95),
            seed: 3 + i as u64,
        };
        let run = || async {
            let req = SpecRequest {
                warm: None,
                tokenizer_hash: &h,
                prompt,
                max_new: NEW,
                stop_ids: &STOP,
                strategy: strategy("ouroboros"),
                sampling,
                pipeline: true,
                info: None,
                draft_window: 0,
                // Asked for, and refused: a seed's text must not depend on
                // when rounds arrive.
                run_on: true,
            };
            let (mut run, mut pool) = (SpecStats::default(), Default::default());
            let mut c = c.clone();
            speculate_into(&mut c, &*m, &req, &mut pool, &mut run, |_| std::ops::ControlFlow::Continue(()))
                .await
                .expect("sampled session");
            run
        };
        let (a, b) = (run().await, run().await);
        assert_eq!(a.tokens, b.tokens, "prompt {i}: same seed, different text");
        assert!(!a.tokens.is_empty() && a.tokens.len() <= NEW);
        assert_eq!(a.ahead_sent, a.ahead_used + a.ahead_stale, "{a:?}");
        assert!(a.ahead_deepest <= 1, "sampled bets stacked {} deep", a.ahead_deepest);
        sent += a.ahead_sent;
        stale += a.ahead_stale;
    }
    println!("sampled: sent ahead {sent}, of which stale {stale}");
    assert!(sent > 0 && stale < sent, "{sent} sent ahead, {stale} stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_share_passes_and_keep_their_text() {
    let srv = server(&["--batch-window-ms", "40"]);
    let handles: Vec<_> = prompts().into_iter().take(4).map(|p| well_behaved(&srv, p)).collect();
    for h in handles {
        h.await.unwrap();
    }
    let metrics = srv.metrics();
    let value = |name: &str| -> f64 {
        metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().last()?.parse().ok()).unwrap()
    };
    // How full the passes were depends on scheduling, but four sessions in
    // lock-step within a 40 ms window share some: a mean above one means at
    // least one pass carried two sessions or more.
    let (sessions, passes) = (value("ouro_batch_size_sum"), value("ouro_batch_size_count"));
    println!("mean batch size {:.2} over {passes} passes", sessions / passes);
    assert!(sessions > passes, "no pass was shared: {passes} passes carried {sessions} sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frame_is_invalid_argument() {
    let srv = server(&[]);
    let good = well_behaved(&srv, prompts()[0].clone());
    let status = raw::send_garbage(srv.addr, TOKEN).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    good.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_trees_are_refused_and_the_session_survives() {
    let srv = server(&["--max-tree-nodes", "8"]);
    let good = well_behaved(&srv, prompts()[0].clone());
    let prompt = prompts()[1].clone();
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let committed = prompt.len() as u32;
    let cases = [
        ("cycle", vec![5, 6], vec![1, 0]),
        ("bad parent", vec![5, 6], vec![-1, 7]),
        ("token >= vocab", vec![5, 49_152], vec![-1, 0]),
        ("over the node limit", vec![5; 9], (-1..8).collect()),
    ];
    let mut id = String::new();
    for (what, tokens, parents) in cases {
        let (mut s, opened) = if id.is_empty() {
            open(&mut c, &prompt).await
        } else {
            // Re-attach: the refused round must have changed nothing.
            let h = hash(&mut c).await;
            let o = v1::Open { tokenizer_hash: h, prompt: prompt.clone(), resume: id.clone(), ..Default::default() };
            SessionStream::open(&mut c, o).await.expect("resume")
        };
        assert_eq!((opened.committed_len, opened.last_round), (committed, 0));
        id = opened.session_id;
        let status = s.round(round(1, committed, tokens, parents)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }
    good.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_bookkeeping_mismatches_are_failed_precondition() {
    let srv = server(&[]);
    let good = well_behaved(&srv, prompts()[0].clone());
    let prompt = prompts()[1].clone();
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let n = prompt.len() as u32;
    // Wrong committed length.
    let (mut s, _) = open(&mut c, &prompt).await;
    let st = s.round(round(1, n + 3, vec![5], vec![-1])).await.unwrap_err();
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    // A skipped round.
    let (mut s, _) = open(&mut c, &prompt).await;
    let st = s.round(round(2, n, vec![5], vec![-1])).await.unwrap_err();
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    // A replayed round.
    let (mut s, _) = open(&mut c, &prompt).await;
    let v = s.round(round(1, n, vec![5], vec![-1])).await.expect("first round");
    let st = s.round(round(1, v.committed_len, vec![5], vec![-1])).await.unwrap_err();
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    good.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_sent_ahead_is_verified_on_a_won_bet_and_answered_stale_on_a_lost_one() {
    let srv = server(&[]);
    let prompt = prompts()[1].clone();
    let want = expected(&prompt);
    assert!(want.len() >= 8, "{want:?}");
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let n = prompt.len() as u32;
    let (mut s, _) = open(&mut c, &prompt).await;
    // Three rounds back to back, as an edge drafting ahead sends them:
    // round 2 bets that round 1 commits want[..3] (its two tokens and the
    // verifier's own), which it does; round 3 bets on a wrong round 2.
    let mut wrong = want[3..6].to_vec();
    wrong[2] = wrong[2].wrapping_add(1) % 1000;
    for r in [
        round(1, n, want[..2].to_vec(), vec![-1, 0]),
        ahead(2, n + 3, want[3..5].to_vec(), chain(2), &want[..3]),
        ahead(3, n + 6, want[6..7].to_vec(), chain(1), &wrong),
    ] {
        s.send(session_request::Msg::Round(r)).await;
    }
    let v1 = s.verdict().await.expect("round 1");
    assert_eq!((v1.accepted.len(), v1.committed_len, v1.stale), (2, n + 3, false));
    let v2 = s.verdict().await.expect("round 2, sent ahead on a won bet");
    assert_eq!((v2.accepted.len(), v2.next_token, v2.committed_len, v2.stale), (2, want[5], n + 6, false));
    let v3 = s.verdict().await.expect("round 3, sent ahead on a lost bet");
    assert!(v3.stale && v3.accepted.is_empty(), "{v3:?}");
    assert_eq!((v3.round, v3.committed_len), (3, n + 6));
    // Nothing was lost: the session goes on from what rounds 1 and 2 committed.
    let v4 = s.round(round(4, n + 6, want[6..8].to_vec(), vec![-1, 0])).await.expect("round 4");
    assert_eq!((v4.accepted.len(), v4.committed_len, v4.stale), (2, n + 9, false));
    // A bet that the session's first round follows something is lost too.
    let (mut s, _) = open(&mut c, &prompt).await;
    let v = s
        .round(ahead(1, n + 1, want[1..2].to_vec(), chain(1), &want[..1]))
        .await
        .expect("a bet with nothing before it");
    assert!(v.stale, "{v:?}");
    let v = s.round(round(2, n, want[..1].to_vec(), vec![-1])).await.expect("the round sent again");
    assert_eq!((v.accepted.len(), v.stale), (1, false));
}

/// Rounds sent ahead that the cloud already holds when it starts the round
/// they bet on are checked in that round's pass, and their verdicts are the
/// ones the rounds get one at a time: the same accepted nodes, next tokens,
/// committed lengths, argmax of rejected nodes, and stale where a bet lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_sent_ahead_in_hand_are_checked_in_one_pass() {
    let srv = server(&[]);
    let prompt = prompts()[1].clone();
    let want = expected(&prompt);
    assert!(want.len() >= 10, "{want:?}");
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let n = prompt.len() as u32;
    let wrong = |t: u32| t.wrapping_add(1) % 1000;
    // Round 1: the right two tokens with a wrong sibling; round 2 bets on
    // it rightly, with a wrong second token; round 3 bets rightly on round
    // 2; round 4 bets wrongly on round 3, and round 5 on round 4.
    let rounds = vec![
        round(1, n, vec![want[0], want[1], wrong(want[1])], vec![-1, 0, 0]),
        ahead(2, n + 3, vec![want[3], wrong(want[4])], vec![-1, 0], &want[..3]),
        ahead(3, n + 5, vec![want[5], want[6]], vec![-1, 0], &want[3..5]),
        ahead(4, n + 8, vec![want[8]], vec![-1], &[want[5], want[6], wrong(want[7])]),
        ahead(5, n + 10, vec![want[9]], vec![-1], &[want[8], want[9]]),
    ];
    // What each round gets on its own: sent one at a time, each after the
    // verdict before it.
    let (mut s, _) = open(&mut c, &prompt).await;
    let mut one_at_a_time = Vec::new();
    for r in &rounds {
        one_at_a_time.push(s.round(r.clone()).await.expect("round"));
    }
    assert_eq!(one_at_a_time.iter().map(|v| v.stale).collect::<Vec<_>>(), [false, false, false, true, true]);
    assert!(one_at_a_time.iter().all(|v| v.pass_rounds <= 1), "{one_at_a_time:?}");
    let strip =
        |v: &v1::Verdict| v1::Verdict { compute_us: 0, batch_size: 0, pass_rounds: 0, server_us: 0, ..v.clone() };
    // Back to back, as an edge stacking bets sends them. Whether the later
    // rounds are in hand when the first is verified is up to the network,
    // so try a few sessions until they are.
    let mut stacked = 0;
    for _ in 0..20 {
        let (mut s, _) = open(&mut c, &prompt).await;
        for r in &rounds {
            s.send(session_request::Msg::Round(r.clone())).await;
        }
        let mut got = Vec::new();
        for _ in &rounds {
            got.push(s.verdict().await.expect("verdict"));
        }
        assert_eq!(got.iter().map(strip).collect::<Vec<_>>(), one_at_a_time.iter().map(strip).collect::<Vec<_>>());
        let pass = got[0].pass_rounds as usize;
        if pass > 1 {
            // The pass is reported once, with its first round.
            assert!(got[0].compute_us > 0 && got[1..pass].iter().all(|v| v.compute_us == 0), "{got:?}");
            stacked += 1;
            break;
        }
    }
    assert!(stacked > 0, "rounds sent back to back were never checked in one pass");
    assert!(srv.metrics().contains("ouro_stacked_rounds_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_longer_than_the_context_is_out_of_range() {
    let srv = server(&["--max-context", "256"]);
    let good = well_behaved(&srv, prompts()[0].clone());
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let h = hash(&mut c).await;
    let long = vec![28u32; 300];
    let st = SessionStream::open(&mut c, v1::Open { tokenizer_hash: h, prompt: long.clone(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::OutOfRange, "{st:?}");
    let st = generate(&mut c, &long, 4, &STOP).await.unwrap_err();
    assert_eq!(st.code(), Code::OutOfRange, "{st:?}");
    good.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokenizer_hash_is_failed_precondition() {
    let srv = server(&[]);
    let good = well_behaved(&srv, prompts()[0].clone());
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let open = v1::Open { tokenizer_hash: "0123abcd".into(), prompt: prompts()[1].clone(), ..Default::default() };
    let st = SessionStream::open(&mut c, open).await.unwrap_err();
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    assert!(st.message().contains("0123abcd"), "the error names both hashes: {}", st.message());
    good.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_token_is_unauthenticated() {
    let srv = server(&[]);
    let good = well_behaved(&srv, prompts()[0].clone());
    for token in [None, Some("not-a-token")] {
        let mut c = connect(srv.addr, token).await;
        let st = c.info(v1::InfoRequest {}).await.unwrap_err();
        assert_eq!(st.code(), Code::Unauthenticated, "{token:?}");
        let st = generate(&mut c, &prompts()[1], 4, &STOP).await.unwrap_err();
        assert_eq!(st.code(), Code::Unauthenticated, "{token:?}");
        let st = SessionStream::open(&mut c, v1::Open::default()).await.unwrap_err();
        assert_eq!(st.code(), Code::Unauthenticated, "{token:?}");
    }
    good.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_session_is_permission_denied() {
    let srv = server(&[]);
    let good = well_behaved(&srv, prompts()[0].clone());
    let prompt = prompts()[1].clone();
    let mut alice = connect(srv.addr, Some(TOKEN)).await;
    let (s, opened) = open(&mut alice, &prompt).await;
    drop(s);
    let mut mallory = connect(srv.addr, Some(OTHER_TOKEN)).await;
    let h = hash(&mut mallory).await;
    let o = v1::Open { tokenizer_hash: h, prompt: prompt.clone(), resume: opened.session_id, ..Default::default() };
    let st = SessionStream::open(&mut mallory, o).await.unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
    good.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_mid_round_loses_nothing() {
    let srv = server(&[]);
    let good = well_behaved(&srv, prompts()[0].clone());
    let prompt = prompts()[1].clone();
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let (mut s, opened) = open(&mut c, &prompt).await;
    // Send a round and vanish before the verdict.
    s.send(session_request::Msg::Round(round(1, prompt.len() as u32, vec![28, 29, 30], vec![-1, 0, 1]))).await;
    drop(s);
    // The same client comes back: the session is there, with the round
    // either applied or not, and its state says which.
    let h = hash(&mut c).await;
    let resumed = cloud::eventually(100, || {
        let (mut c, h, prompt, id) = (c.clone(), h.clone(), prompt.clone(), opened.session_id.clone());
        async move {
            let o = v1::Open { tokenizer_hash: h, prompt, resume: id, ..Default::default() };
            match SessionStream::open(&mut c, o).await {
                Ok(r) => Some(Ok(r)),
                // A pass of the vanished stream still in flight.
                Err(st) if st.code() == Code::Aborted => None,
                Err(st) => Some(Err(st)),
            }
        }
    })
    .await;
    // Whether the round was applied or not (`last_round` says), the greedy
    // session goes back to the prompt the client resumes with and carries on
    // to the same text.
    let (mut s, o) = resumed.expect("a greedy session resumes on its prompt");
    assert_eq!(o.committed_len as usize, prompt.len());
    assert!(o.last_round <= 1, "{o:?}");
    let e = expected(&prompt);
    let v = s.round(round(o.last_round + 1, prompt.len() as u32, e[..3].to_vec(), chain(3))).await.expect("a round");
    assert_eq!((v.accepted, v.next_token), (vec![0, 1, 2], e[3]));
    good.await.unwrap();
}

/// Re-attaches to session `id` on `text`, retried while the stream that
/// held it has a pass in flight.
async fn resume(c: &cloud::Client, h: &str, text: &[u32], id: &str) -> Result<(SessionStream, v1::Opened), Status> {
    cloud::eventually(100, || {
        let (mut c, o) = (
            c.clone(),
            v1::Open { tokenizer_hash: h.into(), prompt: text.to_vec(), resume: id.into(), ..Default::default() },
        );
        async move {
            match SessionStream::open(&mut c, o).await {
                Err(st) if st.code() == Code::Aborted => None,
                r => Some(r),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_ran_on_resumes_where_its_client_is() {
    let srv = server(&[]);
    let prompt = prompts()[1].clone();
    let e = expected(&prompt);
    assert!(e.len() >= 10 && !e[..10].iter().any(|t| STOP.contains(t)), "a prompt with 10 tokens before a stop");
    let p = prompt.len() as u32;
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let h = hash(&mut c).await;
    let open = v1::Open { tokenizer_hash: h.clone(), prompt: prompt.clone(), run_on: 6, ..Default::default() };
    let (s, opened) = SessionStream::open(&mut c, open).await.expect("open");
    let id = opened.session_id;
    // The cloud decodes six tokens alone; the client hears of none of them
    // before its connection drops.
    metric_reaches(&srv, "ouro_run_on_tokens_total", 6.0).await;
    let prefills = srv.metric_sum("ouro_prefill_chunks_total");
    drop(s);
    let heard = [prompt.as_slice(), &e[..2]].concat();
    let (mut s, o) = resume(&c, &h, &heard, &id).await.expect("a session that ran on resumes");
    assert!(o.resumed);
    assert_eq!((o.committed_len, o.last_round), (p + 2, 0));
    let v = s.round(round(1, p + 2, e[2..6].to_vec(), chain(4))).await.expect("round 1");
    assert_eq!((v.accepted, v.next_token, v.committed_len), (vec![0, 1, 2, 3], e[6], p + 7));
    assert_eq!(srv.metric_sum("ouro_prefill_chunks_total"), prefills, "the resume prefilled again");
    drop(s);

    // The client went on alone (its drafter, say) with two tokens of its
    // own: only they are prefilled, and the cloud carries on from its text.
    let own = [&prompt[..], &e[..7], &[e[3], e[1]]].concat();
    let want = expected(&own);
    let (mut s, o) = resume(&c, &h, &own, &id).await.expect("a resume on tokens of the client's own");
    assert_eq!((o.committed_len, o.last_round), (p + 9, 1));
    assert_eq!(srv.metric_sum("ouro_prefill_chunks_total"), prefills + 1.0, "one chunk of two tokens");
    let v = s.round(round(2, p + 9, want[..3].to_vec(), chain(3))).await.expect("round 2");
    assert_eq!((v.accepted, v.next_token), (vec![0, 1, 2], want[3]));
    drop(s);

    // A sampled session cannot go back on tokens it drew: refused, and
    // still there on all of them.
    let sampling = v1::Sampling { temperature: 0.8, seed: 7, ..Default::default() };
    let open =
        v1::Open { tokenizer_hash: h.clone(), prompt: prompt.clone(), sampling: Some(sampling), ..Default::default() };
    let (mut s, opened) = SessionStream::open(&mut c, open).await.expect("open");
    let v = s.round(round(1, p, vec![], vec![])).await.expect("a sampled round");
    let drawn = [prompt.as_slice(), &[v.next_token]].concat();
    drop(s);
    let st = match resume(&c, &h, &prompt, &opened.session_id).await {
        Err(st) => st,
        Ok(_) => panic!("a sampled session went back on a token it drew"),
    };
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    assert!(st.message().contains(&format!("holds {} committed tokens, 1 past", p + 1)), "{st:?}");
    let (_, o) = resume(&c, &h, &drawn, &opened.session_id).await.expect("resumed on all its tokens");
    assert_eq!(o.committed_len, p + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_on_a_new_stream_takes_its_session_over() {
    let srv = server(&[]);
    let prompt = prompts()[0].clone();
    let e = expected(&prompt);
    let p = prompt.len() as u32;
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let h = hash(&mut c).await;
    // The first stream stays open, as one whose link died silently does
    // until the server's keep-alives notice.
    let (mut old, opened) = open(&mut c, &prompt).await;
    let v = old.round(round(1, p, e[..2].to_vec(), chain(2))).await.expect("round 1");
    assert_eq!(v.committed_len, p + 3);
    let other = connect(srv.addr, Some(TOKEN)).await;
    let text = [prompt.as_slice(), &e[..3]].concat();
    let (mut new, o) = resume(&other, &h, &text, &opened.session_id).await.expect("a take-over");
    assert_eq!((o.resumed, o.committed_len, o.last_round), (true, p + 3, 1));
    let v = new.round(round(2, p + 3, e[3..5].to_vec(), chain(2))).await.expect("round 2 on the new stream");
    assert_eq!((v.accepted, v.next_token), (vec![0, 1], e[5]));
    // The old stream is done: its next round is refused, and its end does
    // not detach the session from the new one.
    let st = old.round(round(2, p + 3, e[3..5].to_vec(), chain(2))).await.expect_err("a round on the old stream");
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    assert!(st.message().contains("taken over"), "{st:?}");
    drop(old);
    let v = new.round(round(3, p + 6, e[6..8].to_vec(), chain(2))).await.expect("round 3 on the new stream");
    assert_eq!(v.committed_len, p + 9);
    // Another token cannot take it over.
    let mut mallory = connect(srv.addr, Some(OTHER_TOKEN)).await;
    let o = v1::Open { tokenizer_hash: h, prompt: text, resume: opened.session_id, ..Default::default() };
    let st = match SessionStream::open(&mut mallory, o).await {
        Err(st) => st,
        Ok(_) => panic!("another token took the session over"),
    };
    assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_past_the_limit_are_resource_exhausted_at_once() {
    let srv = server(&["--max-sessions", "4"]);
    let good = well_behaved(&srv, prompts()[0].clone());
    // The storm starts once the well-behaved session holds its slot.
    cloud::eventually(2000, || {
        let open = srv.metrics().lines().any(|l| l.starts_with("ouro_sessions_opened_total") && !l.ends_with(" 0"));
        async move { open.then_some(()) }
    })
    .await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let addr = srv.addr;
        let prompt = prompts()[1].clone();
        tasks.push(tokio::spawn(async move {
            let mut c = connect(addr, Some(TOKEN)).await;
            let h = hash(&mut c).await;
            // An admitted session's stream is handed back and kept open until
            // every attempt has been answered, so no slot frees up mid-storm.
            SessionStream::open(&mut c, v1::Open { tokenizer_hash: h, prompt, ..Default::default() })
                .await
                .map(|(s, _)| s)
                .map_err(|s| s.code())
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let refused = outcomes.iter().filter(|r| matches!(r, Err(Code::ResourceExhausted))).count();
    let ok = outcomes.iter().filter(|r| r.is_ok()).count();
    assert_eq!(refused + ok, 100, "only OK or RESOURCE_EXHAUSTED");
    // Four slots, one of them the well-behaved session's while it runs.
    assert!(ok <= 4, "{ok} sessions admitted past a limit of 4");
    assert!(refused >= 96);
    drop(outcomes);
    good.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_round_and_refuses_new_sessions() {
    let srv = server(&[]);
    let prompt = prompts()[1].clone();
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let (mut s, opened) = open(&mut c, &prompt).await;
    let status = srv.terminate();
    assert!(status.success(), "exit status {status:?}");
    // The open stream ended with UNAVAILABLE (or the connection closed),
    // never a hang.
    s.send(session_request::Msg::Round(round(1, opened.committed_len, vec![28], vec![-1]))).await;
    let st = s.status().await;
    assert!(matches!(st.code(), Code::Unavailable | Code::Unknown | Code::Cancelled), "{st:?}");
}

/// Hand-made gRPC frames for the malformed-message case.
mod raw {
    use std::net::SocketAddr;

    use ouro_proto::v1::SessionResponse;
    use prost::bytes::{Buf, BufMut};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::transport::Channel;
    use tonic::Status;

    /// Sends its bytes as the message body, unchanged.
    #[derive(Default)]
    struct Raw;

    impl Encoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    #[derive(Default)]
    struct Resp;

    impl Decoder for Resp {
        type Item = SessionResponse;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<SessionResponse>, Status> {
            let bytes = src.copy_to_bytes(src.remaining());
            prost::Message::decode(bytes).map(Some).map_err(|e| Status::internal(e.to_string()))
        }
    }

    #[derive(Default)]
    struct RawCodec;

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = SessionResponse;
        type Encoder = Raw;
        type Decoder = Resp;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Resp {
            Resp
        }
    }

    /// Opens `Session` and sends bytes that are not a `SessionRequest`.
    pub async fn send_garbage(addr: SocketAddr, token: &str) -> Status {
        let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        // Field 1, length-delimited, claiming far more bytes than follow.
        let garbage = vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01];
        let mut req = tonic::Request::new(tokio_stream::iter(vec![garbage]));
        req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/ouro.v1.Verifier/Session");
        match grpc.streaming(req, path, RawCodec).await {
            Err(s) => s,
            Ok(resp) => {
                let mut inbound = resp.into_inner();
                loop {
                    match inbound.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => return Status::ok("stream ended without a status"),
                        Err(s) => return s,
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_session_says_so_and_reopens_without_loss() {
    // SmolLM2's cache takes ~46 KB a token, so one prompt fills a 1 MiB budget.
    let srv = server(&["--memory-budget-mb", "1"]);
    let m = smollm2();
    let prompt = prompts()[1].clone();
    let want = expected(&prompt);
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let h = hash(&mut c).await;
    let (mut a, opened) = open(&mut c, &prompt).await;
    // A first round commits a few tokens.
    let v = a.round(round(1, opened.committed_len, vec![], vec![])).await.expect("round 1");
    let mut committed = prompt.clone();
    committed.push(v.next_token);
    // A second session pushes the first, now idle, out of the budget.
    let (_b, _) = open(&mut c, &prompts()[2]).await;
    let st = a.round(round(2, v.committed_len, vec![], vec![])).await.unwrap_err();
    assert_eq!(st.code(), Code::NotFound, "{st:?}");
    assert!(st.message().contains("evicted"), "{}", st.message());
    // Re-open from the committed tokens; the text continues exactly.
    let run = speculate(&mut c, &*m, &h, &committed, NEW - 1, &STOP, strategy("chain4")).await.expect("re-opened");
    let mut text = vec![v.next_token];
    text.extend(run.tokens);
    assert_eq!(text, want);
    assert!(srv.metrics().contains("ouro_evictions_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_service_reports_serving() {
    let srv = server(&[]);
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", srv.addr)).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let req = tonic_health::pb::HealthCheckRequest { service: "ouro.v1.Verifier".into() };
    let resp = health.check(req).await.expect("health check").into_inner();
    assert_eq!(resp.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

/// The Qwen pair over loopback (run locally: `cargo test -p ouro-tests --test
/// cloud_service -- --ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Qwen pair and several minutes"]
async fn qwen_pair_over_the_wire_equals_generate() {
    use ouro_common::model::gguf::{self, LoadOptions};
    let srv = CloudServer::start(&model_path("qwen2.5-coder-1.5b"), &[]);
    let (drafter, _) = gguf::load(&model_path("qwen2.5-coder-0.5b"), &LoadOptions::default()).unwrap();
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let h = hash(&mut c).await;
    let qwen_stop = [151643, 151645];
    for (_, prompt, _) in reference_prompts("qwen2.5-coder-1.5b").into_iter().take(3) {
        let reference = generate(&mut c, &prompt, 64, &qwen_stop).await.expect("generate");
        let run =
            speculate(&mut c, &drafter, &h, &prompt, 64, &qwen_stop, strategy("ouroboros")).await.expect("session");
        assert_eq!(run.tokens, reference);
        println!("{} tokens in {} rounds", run.tokens.len(), run.rounds);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_carries_the_same_protocol() {
    let srv = server(&["--quic-listen", "127.0.0.1:0"]);
    let addr = srv.addr_of(TransportKind::Quic).expect("the readiness line names the QUIC address");
    let mut q = QuicLink::connect(addr, "localhost", TOKEN, Trust::InsecureDev).await.expect("QUIC connect");
    let info = ouro_edge::link::Transport::info(&mut q).await.expect("info over QUIC");
    let m = smollm2();
    let prompt = prompts()[1].clone();
    let want = expected(&prompt);
    assert_eq!(generate(&mut q, &prompt, NEW as u32, &STOP).await.expect("generate over QUIC"), want);
    let run = speculate(&mut q, &*m, &info.tokenizer_hash, &prompt, NEW, &STOP, strategy("ouroboros"))
        .await
        .expect("session");
    assert_eq!(run.tokens, want);
    // Errors carry the same status codes as over gRPC.
    let (mut s, opened) = ouro_edge::link::Transport::open_session(
        &mut q,
        v1::Open { tokenizer_hash: info.tokenizer_hash.clone(), prompt: prompt.clone(), ..Default::default() },
    )
    .await
    .expect("open");
    let st = s.round(round(1, opened.committed_len + 1, vec![5], vec![-1])).await.unwrap_err();
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    let mut bad = QuicLink::connect(addr, "localhost", "wrong", Trust::InsecureDev).await.unwrap();
    let st = ouro_edge::link::Transport::info(&mut bad).await.unwrap_err();
    assert_eq!(st.code(), Code::Unauthenticated);
}

/// A long prompt is prefilled in chunks, round-robin with other prompts and
/// between other sessions' rounds: a short request that arrives during it is
/// answered (with the right text) before the long prompt's session opens,
/// and the long session then opens on its whole prompt. A client that leaves
/// during its prefill stops costing compute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_prefill_does_not_stall_other_requests() {
    let srv = server(&["--prefill-chunk", "16"]);
    let long: Vec<u32> = prompts().concat().into_iter().cycle().take(2000).collect();
    let short = prompts()[1].clone();
    let addr = srv.addr;
    let chunks = |srv: &CloudServer| -> f64 {
        let m = srv.metrics();
        m.lines()
            .find(|l| l.starts_with("ouro_prefill_chunks_total"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0.0)
    };
    let long_open = {
        let long = long.clone();
        tokio::spawn(async move {
            let mut c = connect(addr, Some(TOKEN)).await;
            open(&mut c, &long).await.1
        })
    };
    // The cloud is working on the long prompt once its chunks count up.
    cloud::eventually(400, || std::future::ready((chunks(&srv) >= 2.0).then_some(()))).await;
    let mut c = connect(addr, Some(TOKEN)).await;
    let text = generate(&mut c, &short, NEW as u32, &STOP).await.expect("short generate");
    let done_first = !long_open.is_finished();
    let at_short = chunks(&srv);
    assert_eq!(text, expected(&short), "the short request's text");
    let opened = long_open.await.unwrap();
    assert_eq!(opened.committed_len as usize, long.len());
    let total = (long.len() - 1).div_ceil(16) as f64;
    println!("short request answered after {at_short} of the long prompt's {total} prefill chunks");
    assert!(done_first && at_short < total, "the short request waited for the whole long prefill");

    // A client that leaves mid-prefill: the cloud stops at its next chunk.
    let before = chunks(&srv);
    let leaving = tokio::spawn(async move {
        let mut c = connect(addr, Some(TOKEN)).await;
        open(&mut c, &long).await
    });
    cloud::eventually(400, || std::future::ready((chunks(&srv) >= before + 2.0).then_some(()))).await;
    leaving.abort();
    let _ = leaving.await;
    let cancelled = cloud::eventually(400, || {
        let m = srv.metrics();
        std::future::ready(m.lines().find(|l| l.starts_with("ouro_prefill_cancelled_total")).map(|_| chunks(&srv)))
    })
    .await;
    println!("the departed client's prefill stopped after {} of {total} chunks", cancelled - before);
    assert!(cancelled - before < total, "the departed client's prompt was prefilled to the end");
}
