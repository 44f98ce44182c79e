//! Two `ouro-cloud` replicas behind HAProxy, started by `deploy/cluster.sh`
//! as an operator would: sessions spread over both, a resume reaches the
//! replica that holds its session, QUIC clients pick replicas themselves,
//! and neither a killed replica nor a rolling restart loses a request or a
//! token. Also: the proxy configuration the script runs is the one the
//! Kubernetes manifests ship.
//!
//! The proxy comes from Debian's packages (the script installs it); where
//! it cannot be installed the cluster tests say so loudly and stop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ouro_edge::link::affinity;
use ouro_edge::link::{grpc, quic, Target, Trust};
use ouro_proto::v1;
use ouro_tests::cloud::{speculate, strategy, SessionStream, TOKEN};
use ouro_tests::edge::{http, EdgeServer};
use ouro_tests::{bin_path, greedy, model_path, reference_prompts, repo_root, smollm2};
use serde_json::{json, Value};
use tonic::Code;

/// SmolLM2's stop tokens.
const STOP: [u32; 3] = [0, 2, 4];
const NEW: usize = 16;
const PROXY_CFG: &str = "deploy/k8s/base/proxy/haproxy.cfg";

/// `deploy/cluster.sh` running, stopped (SIGTERM, its trap cleans up) on drop.
struct Cluster {
    child: Child,
    proxy: SocketAddr,
    stats: SocketAddr,
    quic: String,
    replicas: Vec<Replica>,
    tokens: PathBuf,
}

struct Replica {
    metrics: SocketAddr,
    quic: SocketAddr,
    health: SocketAddr,
    pid_file: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// Installs the proxy if needed; `false` (after a loud notice) when it cannot be.
fn proxy_installable() -> bool {
    let out = Command::new(repo_root().join("deploy/cluster.sh"))
        .arg("--install-only")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("running deploy/cluster.sh");
    if out.status.success() {
        return true;
    }
    let banner = "!".repeat(78);
    let msg = format!(
        "\n{banner}\nSKIPPED: the cluster tests need HAProxy and dnsmasq from Debian's packages, and \
         `deploy/cluster.sh --install-only` could not install them ({}):\n{}\n{banner}\n",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{msg}");
    println!("{msg}");
    false
}

impl Cluster {
    fn start(replicas: usize) -> Cluster {
        Self::start_with(replicas, None)
    }

    /// With `tls`: `deploy/cluster.sh --tls-dir`.
    fn start_with(replicas: usize, tls: Option<&std::path::Path>) -> Cluster {
        let tokens = std::env::temp_dir().join(format!("ouro-cluster-tokens-{}-{}", std::process::id(), free_port()));
        std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
        let proxy = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(repo_root().join("deploy/cluster.sh"));
        cmd.args(["--replicas", &replicas.to_string(), "--listen", &proxy])
            .arg("--model")
            .arg(model_path("smollm2-135m"))
            .arg("--tokens-file")
            .arg(&tokens)
            .arg("--cloud-bin")
            .arg(bin_path("ouro-cloud"))
            .args(tls.map(|d| [std::ffi::OsStr::new("--tls-dir"), d.as_os_str()]).into_iter().flatten())
            .args(["--", "--cost-probe", "1,4", "--shutdown-grace-secs", "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Its own process group, so that a test that dies still takes the
        // replicas with it (Drop).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().expect("starting deploy/cluster.sh");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line: Value = loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("{\"ready\"") => break serde_json::from_str(&l).unwrap(),
                Some(Ok(_)) => continue,
                _ => panic!("deploy/cluster.sh exited before it was ready: {:?}", child.wait()),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let addr = |v: &Value| v.as_str().unwrap().parse::<SocketAddr>().unwrap();
        let c = &line["cluster"];
        let replicas = c["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Replica {
                metrics: addr(&r["metrics"]),
                quic: addr(&r["quic"]),
                health: addr(&r["health"]),
                pid_file: r["pid_file"].as_str().unwrap().into(),
            })
            .collect();
        Cluster {
            child,
            proxy: addr(&line["ready"]["listen"]),
            stats: addr(&line["ready"]["metrics"]),
            quic: c["quic"].as_str().unwrap().to_string(),
            replicas,
            tokens,
        }
    }

    fn target(&self, key: &str) -> Target {
        Target {
            endpoint: self.proxy.to_string(),
            token: TOKEN.into(),
            server_name: "localhost".into(),
            trust: Trust::InsecureDev,
            affinity: Some(key.into()),
        }
    }

    fn pid(&self, i: usize) -> u32 {
        std::fs::read_to_string(&self.replicas[i].pid_file).unwrap().trim().parse().unwrap()
    }

    /// Replica `i`'s `/metrics`, or `None` while it is down.
    fn metrics(&self, i: usize) -> Option<String> {
        get(self.replicas[i].metrics, "/metrics")
    }

    /// A counter or gauge of replica `i` (summed over labels; 0 when absent).
    fn value(&self, i: usize, name: &str) -> f64 {
        self.metrics(i).map_or(0.0, |m| metric(&m, name))
    }

    fn total(&self, name: &str) -> f64 {
        (0..self.replicas.len()).map(|i| self.value(i, name)).sum()
    }

    /// How many replicas the proxy has checked up (its Prometheus endpoint).
    fn up_in_proxy(&self) -> usize {
        let m = get(self.stats, "/metrics").unwrap_or_default();
        m.lines()
            .filter(|l| {
                l.starts_with("haproxy_server_status{")
                    && l.contains("proxy=\"verifiers\"")
                    && l.contains("state=\"UP\"")
                    && l.ends_with(" 1")
            })
            .count()
    }

    /// Waits, boundedly, until `f` holds; panics with `what` otherwise.
    fn wait_for(&self, what: &str, mut f: impl FnMut(&Self) -> bool) {
        for _ in 0..1200 {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }

    /// Waits until replica `i` is restarted (a new pid), serving, and
    /// checked up by the proxy again.
    fn wait_restarted(&self, i: usize, old: u32) {
        let n = self.replicas.len();
        self.wait_for(&format!("replica {i} to come back"), |c| {
            std::fs::read_to_string(&c.replicas[i].pid_file).is_ok_and(|p| p.trim() != old.to_string())
                && c.metrics(i).is_some()
                && c.up_in_proxy() == n
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tokens);
        signal(self.child.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The whole group: the script and whatever it started.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

/// One plain HTTP GET; `None` when nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

/// The sum of a Prometheus metric's samples in `text` (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn prompts() -> Vec<Vec<u32>> {
    reference_prompts("smollm2-135m").into_iter().map(|(_, p, _)| p).collect()
}

/// Target-only greedy decoding in this process.
fn expected(prompt: &[u32]) -> Vec<u32> {
    let m = smollm2();
    let mut cache = ouro_common::model::CausalLm::new_cache(&*m);
    greedy(&*m, &mut cache, prompt, NEW, &STOP)
}

#[test]
fn the_proxy_config_the_script_runs_is_the_one_kubernetes_ships() {
    let root = repo_root();
    let file = std::fs::read_to_string(root.join(PROXY_CFG)).unwrap();
    let script = std::fs::read_to_string(root.join("deploy/cluster.sh")).unwrap();
    assert!(script.contains("proxy_cfg=\"$here/k8s/base/proxy/haproxy.cfg\""), "cluster.sh runs another file");
    // The base generates the ConfigMap from that very file.
    let kustomization = std::fs::read_to_string(root.join("deploy/k8s/base/kustomization.yaml")).unwrap();
    assert!(kustomization.contains("- haproxy.cfg=proxy/haproxy.cfg"), "{kustomization}");
    // And every rendered overlay carries it byte for byte.
    let Some(kubectl) = kubectl() else {
        println!(
            "kubectl is not installed: the rendered overlays were not compared (deploy/lint-deploy.sh renders them)"
        );
        return;
    };
    let overlays: Vec<PathBuf> = std::fs::read_dir(root.join("deploy/k8s/overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    assert!(overlays.len() >= 2, "{overlays:?}");
    for overlay in overlays {
        let out = Command::new(&kubectl).arg("kustomize").arg(&overlay).output().unwrap();
        assert!(out.status.success(), "{}: {}", overlay.display(), String::from_utf8_lossy(&out.stderr));
        let rendered = String::from_utf8(out.stdout).unwrap();
        let data = configmap_file(&rendered, "haproxy.cfg")
            .unwrap_or_else(|| panic!("{}: no ConfigMap with haproxy.cfg", overlay.display()));
        assert!(data == file, "{}: the rendered haproxy.cfg differs from {PROXY_CFG}", overlay.display());
    }
}

/// kubectl from deploy/lint-deploy.sh's tools (which `deploy/test.sh` fetches
/// before the tests run), else from `PATH`.
fn kubectl() -> Option<PathBuf> {
    let tools = std::env::var_os("OURO_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ouro/tools")));
    let fetched = tools.and_then(|dir| std::fs::read_dir(dir).ok()).into_iter().flatten().find_map(|e| {
        let bin = e.ok()?.path().join("bin/kubectl");
        bin.is_file().then_some(bin)
    });
    fetched.or_else(|| {
        let on_path = Command::new("kubectl").arg("version").arg("--client").output();
        on_path.is_ok().then(|| PathBuf::from("kubectl"))
    })
}

/// The content of `key` in a rendered ConfigMap: YAML's literal block
/// (`key: |`, with `|-`/`|+` for the final newline), unindented.
fn configmap_file(rendered: &str, key: &str) -> Option<String> {
    let lines: Vec<&str> = rendered.lines().collect();
    let head = lines.iter().position(|l| l.trim_start().starts_with(&format!("{key}: |")))?;
    let chomp = lines[head].trim_end().chars().last()?;
    let indent = lines[head + 1..].iter().find(|l| !l.trim().is_empty())?.len()
        - lines[head + 1..].iter().find(|l| !l.trim().is_empty())?.trim_start().len();
    let mut body = Vec::new();
    for l in &lines[head + 1..] {
        if !l.trim().is_empty() && l.len() - l.trim_start().len() < indent {
            break;
        }
        body.push(l.get(indent..).unwrap_or(""));
    }
    let mut text = body.join("\n");
    match chomp {
        '-' => text = text.trim_end_matches('\n').to_string(),
        '+' => text.push('\n'),
        _ => {
            text = text.trim_end_matches('\n').to_string();
            text.push('\n');
        }
    }
    Some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_replicas_and_a_resume_reaches_its_own() {
    if !proxy_installable() {
        return;
    }
    let cluster = Cluster::start(2);
    let prompts = prompts();
    let m = smollm2();
    let want: Vec<Vec<u32>> = prompts.iter().take(8).map(|p| expected(p)).collect();
    let hash = {
        let mut c = grpc::open(&cluster.target("info")).await.expect("through the proxy");
        ouro_edge::link::Transport::info(&mut c).await.expect("info").tokenizer_hash
    };

    // Kubernetes' probes ask the plaintext health port.
    for r in &cluster.replicas {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", r.health)).unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.connect().await.unwrap());
        let req = tonic_health::pb::HealthCheckRequest { service: "ouro.v1.Verifier".into() };
        let status = health.check(req).await.expect("health check").into_inner().status;
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    }

    // Eight devices at once, each with its own key.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (target, prompt, want, m, hash) =
                (cluster.target(&format!("device-{i}")), prompts[i].clone(), want[i].clone(), m.clone(), hash.clone());
            tokio::spawn(async move {
                let mut c = grpc::open(&target).await.expect("connecting through the proxy");
                let run =
                    speculate(&mut c, &*m, &hash, &prompt, NEW, &STOP, strategy("chain4")).await.expect("session");
                assert_eq!(run.tokens, want, "device-{i}'s text differs from Generate's");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let opened: Vec<f64> = (0..2).map(|i| cluster.value(i, "ouro_sessions_opened_total")).collect();
    println!("sessions per replica: {opened:?}");
    assert_eq!(opened.iter().sum::<f64>(), 8.0, "{opened:?}");
    assert!(opened.iter().all(|&n| n >= 1.0), "one replica served every session: {opened:?}");

    // A session, its stream dropped, then resumed on a new connection with
    // the same key: the proxy must take it to the replica holding it.
    let key = "resume-device";
    let prompt = prompts[0].clone();
    let (id, committed, holder) = {
        let before: Vec<f64> = (0..2).map(|i| cluster.value(i, "ouro_sessions_opened_total")).collect();
        let mut c = grpc::open(&cluster.target(key)).await.unwrap();
        let open = v1::Open { tokenizer_hash: hash.clone(), prompt: prompt.clone(), ..Default::default() };
        let (mut s, opened) = SessionStream::open(&mut c, open).await.expect("open");
        let draft = v1::DraftRound {
            round: 1,
            committed_len: opened.committed_len,
            tokens: want[0][..2].to_vec(),
            parents: vec![-1, 0],
            ..Default::default()
        };
        let verdict = s.round(draft).await.expect("round");
        assert_eq!(verdict.accepted.len(), 2);
        let mut committed = prompt.clone();
        committed.extend_from_slice(&want[0][..3]);
        assert_eq!(verdict.committed_len as usize, committed.len());
        let holder = (0..2).find(|&i| cluster.value(i, "ouro_sessions_opened_total") > before[i]).unwrap();
        (opened.session_id, committed, holder)
        // Stream and connection dropped here, without Close.
    };
    let prefills = cluster.total("ouro_prefill_chunks_total");
    let opened_before = cluster.total("ouro_sessions_opened_total");
    let mut tries = 0;
    let (mut s, opened) = loop {
        let mut c = grpc::open(&cluster.target(key)).await.unwrap();
        let open = v1::Open {
            tokenizer_hash: hash.clone(),
            prompt: committed.clone(),
            resume: id.clone(),
            ..Default::default()
        };
        match SessionStream::open(&mut c, open).await {
            Ok(r) => break r,
            // The replica has not yet seen the old stream end.
            Err(s) if s.code() == Code::FailedPrecondition && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("the resume failed (reached another replica?): {s}"),
        }
    };
    assert!(opened.resumed);
    let draft = v1::DraftRound {
        round: opened.last_round + 1,
        committed_len: opened.committed_len,
        tokens: want[0][3..5].to_vec(),
        parents: vec![-1, 0],
        ..Default::default()
    };
    let verdict = s.round(draft).await.expect("a round after the resume");
    assert_eq!(verdict.accepted.len(), 2, "the resumed session lost its place");
    assert_eq!(verdict.next_token, want[0][5]);
    s.close().await;
    assert_eq!(cluster.total("ouro_prefill_chunks_total"), prefills, "the resume prefilled again");
    assert_eq!(cluster.total("ouro_sessions_opened_total"), opened_before, "the resume opened a new session");
    assert_eq!(cluster.value(holder, "ouro_sessions_resumed_total"), 1.0, "the resume went elsewhere");

    // QUIC bypasses the proxy: the client picks among the replicas' own
    // addresses by its key, the same way every time.
    let quic_addrs: Vec<SocketAddr> = cluster.replicas.iter().map(|r| r.quic).collect();
    let mut chose = HashMap::new();
    for i in 0..4 {
        let key = format!("quic-device-{i}");
        let pick = affinity::choose(&affinity::replicas(&cluster.quic).await.unwrap(), Some(&key)).unwrap();
        let replica = quic_addrs.iter().position(|a| *a == pick).expect("a replica's address");
        let before = cluster.value(replica, "ouro_sessions_opened_total");
        let mut target = cluster.target(&key);
        target.endpoint = cluster.quic.clone();
        let mut link = quic::open(&target).await.expect("QUIC straight to a replica");
        let run = speculate(&mut link, &*m, &hash, &prompts[i], NEW, &STOP, strategy("chain4")).await.expect("session");
        assert_eq!(run.tokens, want[i], "over QUIC");
        assert_eq!(cluster.value(replica, "ouro_sessions_opened_total"), before + 1.0, "{key} did not reach {pick}");
        *chose.entry(replica).or_insert(0) += 1;
    }
    println!("QUIC sessions per replica: {chose:?}");
}

/// What the cloud alone writes for each prompt (`Generate` through the proxy), as text.
async fn generate_texts(cluster: &Cluster, prompts: &[&str], max: u32) -> Vec<String> {
    use ouro_common::tokenizer::Tokenizer;
    let tok =
        Tokenizer::from_gguf(&ouro_common::model::gguf::read_content(&model_path("smollm2-135m")).unwrap()).unwrap();
    let info = tok.info();
    let mut out = Vec::new();
    for p in prompts {
        let mut ids: Vec<u32> = if info.add_bos { info.bos.into_iter().collect() } else { vec![] };
        ids.extend(tok.encode(p, true).unwrap());
        let mut c = grpc::open(&cluster.target("generate")).await.unwrap();
        let tokens = ouro_edge::link::generate(&mut c, &ids, max, &info.stop_ids).await.unwrap();
        out.push(tok.decode(&tokens, true).unwrap());
    }
    out
}

const TEXTS: [&str; 4] = [
    "The three primary colors are",
    "Once upon a time, in a small village by the sea,",
    "The capital of France is",
    "def fibonacci(n):",
];
const MAX: u32 = 48;

/// Completions through `ouro-edge serve`, `clients` at a time, until `stop`
/// is set (and at least `min` were sent); each is checked against `want`.
fn traffic(
    edge: SocketAddr,
    want: Arc<Vec<String>>,
    clients: usize,
    min: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<usize>> {
    use std::sync::atomic::Ordering;
    (0..clients)
        .map(|c| {
            let (want, stop) = (want.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut done = 0;
                while done < min || (!stop.load(Ordering::SeqCst) && done < 200) {
                    let i = (c + done) % TEXTS.len();
                    let body = json!({"model": "ouro", "prompt": TEXTS[i], "max_tokens": MAX});
                    let (status, head, body) = http(edge, "POST", "/v1/completions", Some(&body));
                    assert_eq!(status, 200, "a request failed: {body}");
                    let v: Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(v["choices"][0]["text"].as_str().unwrap(), want[i], "text changed for {:?}", TEXTS[i]);
                    assert!(head.to_ascii_lowercase().contains("x-ouro-mode: speculative"), "{head}");
                    done += 1;
                }
                done
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_and_a_rolling_restart_lose_no_request_and_no_token() {
    use std::sync::atomic::{AtomicBool, Ordering};
    if !proxy_installable() {
        return;
    }
    let cluster = Cluster::start(2);
    let want = Arc::new(generate_texts(&cluster, &TEXTS, MAX).await);
    let smol = model_path("smollm2-135m").display().to_string();
    let proxy = cluster.proxy.to_string();
    // `wait`: while no replica answers, a request waits for one rather
    // than answer with the drafter alone.
    let edge = EdgeServer::start(&[
        "--model",
        &smol,
        "--cloud",
        &proxy,
        "--insecure-dev",
        "--token",
        TOKEN,
        "--draft",
        "chain4",
        "--fallback",
        "wait",
        "--wait-secs",
        "120",
        "--max-concurrent",
        "4",
    ])
    .expect("edge starts");

    // A replica killed while it holds sessions.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = traffic(edge.addr, want.clone(), 4, 2, stop.clone());
    let mut victim = None;
    cluster.wait_for("a replica with sessions open", |c| {
        victim = (0..2).find(|&i| c.value(i, "ouro_sessions_open") >= 1.0);
        victim.is_some()
    });
    let victim = victim.unwrap();
    let pid = cluster.pid(victim);
    signal(pid, "-KILL");
    println!("killed replica {victim} (pid {pid}) mid-generation");
    cluster.wait_restarted(victim, pid);
    stop.store(true, Ordering::SeqCst);
    let served: usize = clients.into_iter().map(|c| c.join().expect("a request failed")).sum();
    println!("{served} requests across the kill, every text equal to Generate's");

    // A rolling restart: each replica in turn drained (SIGTERM) while
    // requests run, and waited for before the next.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = traffic(edge.addr, want.clone(), 4, 2, stop.clone());
    let mut drained_with_sessions = 0;
    for i in 0..2 {
        cluster.wait_for("sessions on the replica to drain", |c| c.value(i, "ouro_sessions_open") >= 1.0);
        drained_with_sessions += 1;
        let pid = cluster.pid(i);
        signal(pid, "-TERM");
        println!("draining replica {i} (pid {pid})");
        cluster.wait_restarted(i, pid);
    }
    stop.store(true, Ordering::SeqCst);
    let served: usize = clients.into_iter().map(|c| c.join().expect("a request failed")).sum();
    println!("{served} requests across the rolling restart, every text equal to Generate's");
    assert_eq!(drained_with_sessions, 2);
}

#[test]
fn an_affinity_key_that_is_no_header_value_is_refused_with_its_flag() {
    for bad in ["", "two words", "naïve"] {
        let out = Command::new(bin_path("ouro-edge"))
            .args(["--threads", "1", "generate", "hi", "--max-tokens", "1", "--cloud", "127.0.0.1:9"])
            .arg("--model")
            .arg(model_path("smollm2-135m"))
            .args(["--insecure-dev", "--token", "t", "--affinity-key", bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?} accepted: {stderr}");
        assert!(stderr.contains("--affinity-key"), "{bad:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_the_proxy_terminates_and_re_encrypts() {
    if !proxy_installable() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ouro-cluster-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = |name: &str| rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    // The replicas' certificate is its own CA here; the proxy checks the name.
    let verifier = cert("ouro-verifier");
    std::fs::write(dir.join("verifier.crt"), verifier.cert.pem()).unwrap();
    std::fs::write(dir.join("verifier.key"), verifier.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.crt"), verifier.cert.pem()).unwrap();
    let proxy = cert("localhost");
    std::fs::write(dir.join("proxy.pem"), proxy.cert.pem()).unwrap();
    std::fs::write(dir.join("proxy.pem.key"), proxy.signing_key.serialize_pem()).unwrap();
    let cluster = Cluster::start_with(1, Some(&dir));
    let prompt = prompts()[0].clone();
    let want = expected(&prompt);
    let mut target = cluster.target("tls-device");
    target.trust = Trust::Ca(proxy.cert.pem().into_bytes());
    let mut c = grpc::open(&target).await.expect("TLS to the proxy");
    let hash = ouro_edge::link::Transport::info(&mut c).await.expect("info through TLS").tokenizer_hash;
    let m = smollm2();
    let run = speculate(&mut c, &*m, &hash, &prompt, NEW, &STOP, strategy("chain4")).await.expect("session over TLS");
    assert_eq!(run.tokens, want);
    assert_eq!(cluster.value(0, "ouro_sessions_opened_total"), 1.0);
    // An edge that trusts another CA does not get through.
    target.trust = Trust::Ca(cert("localhost").cert.pem().into_bytes());
    let refused = match grpc::open(&target).await {
        Err(_) => true,
        Ok(mut c) => ouro_edge::link::Transport::info(&mut c).await.is_err(),
    };
    assert!(refused, "the proxy's certificate was accepted by an edge that does not trust it");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
