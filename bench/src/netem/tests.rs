//! The proxies over loopback. Lower bounds on latency are asserted tightly,
//! since the proxy guarantees them; upper bounds loosely, since a loaded
//! machine can always be slower.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::time::timeout;

use super::{LinkProfile, Proxy};

const DELAY: Duration = Duration::from_millis(20);
/// Allowance on top of the emulated latency for scheduling noise.
const SLACK: Duration = Duration::from_millis(40);
const PATIENCE: Duration = Duration::from_secs(5);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn delayed() -> LinkProfile {
    LinkProfile { delay: DELAY, ..LinkProfile::none() }
}

async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            conn.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

async fn udp_echo() -> SocketAddr {
    let socket = UdpSocket::bind(loopback()).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], peer).await;
        }
    });
    addr
}

/// The minimum must clear the emulated RTT; the median must be near it.
fn check_rtts(mut rtts: Vec<Duration>, rtt: Duration) {
    rtts.sort();
    let (min, median) = (rtts[0], rtts[rtts.len() / 2]);
    assert!(min >= rtt, "fastest round trip {min:?} beat the emulated {rtt:?}");
    assert!(median < rtt + SLACK, "median round trip {median:?} is far above the emulated {rtt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_round_trip_costs_twice_the_delay_and_close_propagates() {
    let proxy = Proxy::tcp(loopback(), tcp_echo().await, delayed()).await.unwrap();
    let mut conn = TcpStream::connect(proxy.local_addr()).await.unwrap();
    conn.set_nodelay(true).unwrap();
    let mut rtts = Vec::new();
    for i in 0..20u64 {
        let start = Instant::now();
        conn.write_all(&i.to_le_bytes()).await.unwrap();
        let mut reply = [0u8; 8];
        conn.read_exact(&mut reply).await.unwrap();
        rtts.push(start.elapsed());
        assert_eq!(u64::from_le_bytes(reply), i);
    }
    check_rtts(rtts, 2 * DELAY);

    // Our FIN reaches the echo server, whose close comes back as EOF.
    conn.shutdown().await.unwrap();
    let mut rest = Vec::new();
    timeout(PATIENCE, conn.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.is_empty());
    let stats = proxy.stats();
    assert_eq!((stats.upstream_bytes, stats.downstream_bytes, stats.dropped_datagrams), (160, 160, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_round_trip_costs_twice_the_delay() {
    let proxy = Proxy::udp(loopback(), udp_echo().await, delayed()).await.unwrap();
    let socket = UdpSocket::bind(loopback()).await.unwrap();
    socket.connect(proxy.local_addr()).await.unwrap();
    let mut rtts = Vec::new();
    for i in 0..20u64 {
        let start = Instant::now();
        socket.send(&i.to_le_bytes()).await.unwrap();
        let mut reply = [0u8; 64];
        let n = timeout(PATIENCE, socket.recv(&mut reply)).await.unwrap().unwrap();
        rtts.push(start.elapsed());
        assert_eq!(&reply[..n], &i.to_le_bytes());
    }
    check_rtts(rtts, 2 * DELAY);
    assert_eq!(proxy.stats().upstream_bytes, 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_chunks_in_flight_do_not_wait_for_each_other() {
    let proxy = Proxy::tcp(loopback(), tcp_echo().await, delayed()).await.unwrap();
    let mut conn = TcpStream::connect(proxy.local_addr()).await.unwrap();
    conn.set_nodelay(true).unwrap();
    let start = Instant::now();
    for i in 0..50u64 {
        conn.write_all(&i.to_le_bytes()).await.unwrap();
        // Without waiting for replies, but apart enough that the proxy
        // reads (and delays) each ping as its own chunk.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut replies = [0u8; 50 * 8];
    timeout(PATIENCE, conn.read_exact(&mut replies)).await.unwrap().unwrap();
    let elapsed = start.elapsed();
    assert!(elapsed >= 2 * DELAY, "{elapsed:?}");
    assert!(elapsed < 25 * DELAY, "50 pipelined pings took {elapsed:?}: chunks serialize on the delay");
    for (i, reply) in replies.chunks_exact(8).enumerate() {
        assert_eq!(u64::from_le_bytes(reply.try_into().unwrap()), i as u64, "reordered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_in_flight_do_not_wait_for_each_other() {
    let proxy = Proxy::udp(loopback(), udp_echo().await, delayed()).await.unwrap();
    let socket = UdpSocket::bind(loopback()).await.unwrap();
    socket.connect(proxy.local_addr()).await.unwrap();
    let start = Instant::now();
    for i in 0..50u64 {
        socket.send(&i.to_le_bytes()).await.unwrap();
    }
    for i in 0..50u64 {
        let mut reply = [0u8; 64];
        let n = timeout(PATIENCE, socket.recv(&mut reply)).await.unwrap().unwrap();
        assert_eq!(&reply[..n], &i.to_le_bytes(), "reordered");
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= 2 * DELAY, "{elapsed:?}");
    assert!(elapsed < 25 * DELAY, "50 pipelined datagrams took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_loss_drops_about_the_configured_share() {
    let sink = UdpSocket::bind(loopback()).await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let counted = received.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while sink.recv_from(&mut buf).await.is_ok() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    let profile: LinkProfile = "loss=50%,seed=11".parse().unwrap();
    let proxy = Proxy::udp(loopback(), sink_addr, profile).await.unwrap();
    let socket = UdpSocket::bind(loopback()).await.unwrap();
    socket.connect(proxy.local_addr()).await.unwrap();
    const SENT: u64 = 400;
    for i in 0..SENT {
        socket.send(&i.to_le_bytes()).await.unwrap();
        if i % 20 == 19 {
            // Pace so no loopback socket buffer overflows: only the
            // emulated loss may drop anything.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let deadline = Instant::now() + PATIENCE;
    while received.load(Ordering::Relaxed) + proxy.stats().dropped_datagrams < SENT && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = received.load(Ordering::Relaxed);
    // Binomial(400, 0.5): sd 10, so this is 8 sd either side.
    assert!((120..=280).contains(&got), "received {got} of {SENT}");
    assert_eq!(got + proxy.stats().dropped_datagrams, SENT);
    assert_eq!(proxy.stats().upstream_bytes, got * 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_bandwidth_cap_sets_the_transfer_time() {
    const BYTES: usize = 250_000;
    let sink = TcpListener::bind(loopback()).await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = sink.accept().await.unwrap();
        let mut all = Vec::new();
        conn.read_to_end(&mut all).await.unwrap();
        let _ = done_tx.send((all.len(), Instant::now()));
    });
    let profile: LinkProfile = "bw=1mbit".parse().unwrap();
    let proxy = Proxy::tcp(loopback(), sink_addr, profile).await.unwrap();
    let mut conn = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let start = Instant::now();
    conn.write_all(&vec![7u8; BYTES]).await.unwrap();
    conn.shutdown().await.unwrap();
    let (len, finished) = timeout(Duration::from_secs(10), done_rx).await.unwrap().unwrap();
    let elapsed = finished - start;
    assert_eq!(len, BYTES);
    // 2 Mbit at 1 Mbit/s is 2 s; allow for timer rounding only downwards.
    assert!(elapsed >= Duration::from_millis(1800), "250 KB at 1 Mbit/s took only {elapsed:?}");
    assert_eq!(proxy.stats().upstream_bytes, BYTES as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_and_frees_the_ports() {
    let tcp = Proxy::tcp(loopback(), tcp_echo().await, LinkProfile::none()).await.unwrap();
    let tcp_addr = tcp.local_addr();
    let mut conn = TcpStream::connect(tcp_addr).await.unwrap();
    conn.write_all(b"ping").await.unwrap();
    let mut reply = [0u8; 4];
    conn.read_exact(&mut reply).await.unwrap();
    tcp.shutdown().await;
    let mut rest = Vec::new();
    let closed = timeout(PATIENCE, conn.read_to_end(&mut rest)).await.unwrap();
    assert!(closed.is_err() || rest.is_empty(), "connection survived shutdown");
    assert!(TcpStream::connect(tcp_addr).await.is_err(), "still accepting after shutdown");

    let udp = Proxy::udp(loopback(), udp_echo().await, LinkProfile::none()).await.unwrap();
    let udp_addr = udp.local_addr();
    udp.shutdown().await;
    UdpSocket::bind(udp_addr).await.unwrap();
}
