//! `ouro-bench` as a user runs it: bad arguments get a clear error before
//! any model or process is started. (The full runs are in
//! `tests/tests/bench_cli.rs`; this file also makes `cargo test` build the
//! binary those tests start.)

use std::process::Command;

fn bench(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ouro-bench")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_unknown_mode_is_named_with_the_valid_ones() {
    let (ok, stderr) = bench(&["run", "--modes", "cloud-only,warp-drive"]);
    assert!(!ok);
    assert!(stderr.contains("warp-drive") && stderr.contains("ouroboros[-quic][-nopipe]"), "{stderr}");
}

#[test]
fn an_unknown_link_profile_lists_the_known_ones() {
    let (ok, stderr) = bench(&["run", "--link", "dialup"]);
    assert!(!ok);
    assert!(stderr.contains("dialup") && stderr.contains("intercontinental"), "{stderr}");
}

#[test]
fn zero_clients_is_refused() {
    let (ok, stderr) = bench(&["sweep", "--concurrency", "0"]);
    assert!(!ok);
    assert!(stderr.contains("at least 1"), "{stderr}");
}
