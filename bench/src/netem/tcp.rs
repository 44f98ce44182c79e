//! TCP through the emulated link. Each accepted connection gets its own
//! upstream connection; each direction is a reader that stamps chunks with
//! their arrival time and a writer that releases them on schedule, joined by
//! a queue, so a whole window of chunks can be in flight at once.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::delay::{sleep_until, LinkScheduler};
use super::proxy::Proxy;
use super::stats::{self, Counters};
use super::tasks::ProxyTasks;
use super::{LinkProfile, NetemError};

/// Small enough that a capped link releases data smoothly rather than in
/// large bursts, large enough to keep up with loopback.
const READ_CHUNK: usize = 16 * 1024;
/// Chunks queued per direction before the reader stops reading, which pushes
/// back on the sender through TCP flow control instead of buffering without
/// bound when the bandwidth cap is below the sender's rate.
const QUEUE_CHUNKS: usize = 1024;

impl Proxy {
    /// Listens on `listen` (port 0 picks one; see [`local_addr`](Self::local_addr))
    /// and forwards every connection to `upstream`.
    pub async fn tcp(listen: SocketAddr, upstream: SocketAddr, profile: LinkProfile) -> Result<Self, NetemError> {
        let listener = TcpListener::bind(listen).await.map_err(|source| NetemError::Bind { addr: listen, source })?;
        let local_addr = listener.local_addr()?;
        let counters = Counters::default();
        let tasks = ProxyTasks::default();
        tasks.spawn(accept_loop(listener, upstream, profile, counters.clone(), tasks.clone()));
        debug!(%local_addr, %upstream, %profile, "netem tcp proxy started");
        Ok(Self { local_addr, profile, counters, tasks })
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    profile: LinkProfile,
    counters: Counters,
    tasks: ProxyTasks,
) {
    let mut next_stream = 0u64;
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                // Usually fd exhaustion: back off rather than spin.
                warn!(error = %e, "netem tcp accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let stream = next_stream;
        next_stream += 2;
        let counters = counters.clone();
        tasks.spawn(async move {
            if let Err(e) = relay(client, upstream, &profile, stream, &counters).await {
                warn!(%upstream, error = %e, "netem tcp cannot reach upstream");
            }
        });
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    profile: &LinkProfile,
    stream: u64,
    counters: &Counters,
) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    // Nagle would hold small writes back for an ACK, adding its own latency
    // on top of the emulated one.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_rx, client_tx) = client.into_split();
    let (server_rx, server_tx) = server.into_split();
    tokio::join!(
        pump(client_rx, server_tx, LinkScheduler::new(profile, stream), counters.upstream_bytes.clone()),
        pump(server_rx, client_tx, LinkScheduler::new(profile, stream + 1), counters.downstream_bytes.clone()),
    );
    Ok(())
}

/// A chunk on the emulated wire; `data: None` is the sender's FIN, which
/// travels the link like data so EOF is not seen before the bytes ahead of it.
struct Segment {
    data: Option<Vec<u8>>,
    release: Instant,
}

/// One direction of a connection, until EOF has been delivered or either
/// side fails.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut link: LinkScheduler, delivered: Arc<AtomicU64>) {
    let (tx, mut rx) = mpsc::channel::<Segment>(QUEUE_CHUNKS);
    let reader = async move {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let read = tokio::select! {
                read = from.read(&mut buf) => read,
                // The writer gave up, so nobody will deliver what we read.
                () = tx.closed() => return,
            };
            let data = match read {
                Ok(0) => None,
                Ok(n) => Some(buf[..n].to_vec()),
                Err(e) => {
                    // A reset cannot be replayed through the proxy; closing
                    // is the nearest thing the far side can observe.
                    debug!(error = %e, "netem tcp read failed");
                    None
                }
            };
            let fin = data.is_none();
            let release = link.schedule(Instant::now(), data.as_ref().map_or(0, Vec::len));
            if tx.send(Segment { data, release }).await.is_err() || fin {
                return;
            }
        }
    };
    let writer = async move {
        while let Some(Segment { data, release }) = rx.recv().await {
            sleep_until(release).await;
            let Some(data) = data else { break };
            if let Err(e) = to.write_all(&data).await {
                debug!(error = %e, "netem tcp write failed");
                return;
            }
            stats::add(&delivered, data.len());
        }
        if let Err(e) = to.shutdown().await {
            debug!(error = %e, "netem tcp half-close failed");
        }
    };
    tokio::join!(reader, writer);
}
