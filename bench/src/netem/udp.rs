//! UDP (QUIC) through the emulated link. One client-facing socket; each
//! distinct client address becomes a flow with its own upstream socket, so
//! the upstream sees one peer per client just as it would without the proxy.
//! Flows live as long as the proxy: benchmarks have few clients and short
//! runs, so there is no idle expiry.

use std::collections::hash_map::{Entry, HashMap};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::delay::{sleep_until, LinkScheduler};
use super::proxy::Proxy;
use super::stats::{self, Counters};
use super::tasks::ProxyTasks;
use super::{LinkProfile, NetemError};

const MAX_DATAGRAM: usize = 65_535;
/// Datagrams queued per direction of a flow; past this the link tail-drops,
/// as a router queue would.
const QUEUE_DATAGRAMS: usize = 4096;

impl Proxy {
    /// Receives on `listen` (port 0 picks one; see [`local_addr`](Self::local_addr))
    /// and relays each client's datagrams to `upstream`.
    pub async fn udp(listen: SocketAddr, upstream: SocketAddr, profile: LinkProfile) -> Result<Self, NetemError> {
        let socket = UdpSocket::bind(listen).await.map_err(|source| NetemError::Bind { addr: listen, source })?;
        let local_addr = socket.local_addr()?;
        let counters = Counters::default();
        let tasks = ProxyTasks::default();
        tasks.spawn(client_loop(Arc::new(socket), upstream, profile, counters.clone(), tasks.clone()));
        debug!(%local_addr, %upstream, %profile, "netem udp proxy started");
        Ok(Self { local_addr, profile, counters, tasks })
    }
}

struct Datagram {
    data: Vec<u8>,
    release: Instant,
}

/// The client → upstream half of a flow; the other half runs in tasks.
struct Flow {
    link: LinkScheduler,
    queue: mpsc::Sender<Datagram>,
}

/// Reads from clients, opening a flow for each new one.
async fn client_loop(
    socket: Arc<UdpSocket>,
    upstream: SocketAddr,
    profile: LinkProfile,
    counters: Counters,
    tasks: ProxyTasks,
) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) if is_transient(&e) => continue,
            Err(e) => {
                warn!(error = %e, "netem udp proxy stopped");
                return;
            }
        };
        let arrival = Instant::now();
        let stream = 2 * flows.len() as u64;
        let flow = match flows.entry(client) {
            Entry::Occupied(flow) => flow.into_mut(),
            Entry::Vacant(slot) => {
                match open_flow(&socket, client, upstream, &profile, stream, &counters, &tasks).await {
                    Ok(flow) => slot.insert(flow),
                    Err(e) => {
                        warn!(%client, %upstream, error = %e, "netem udp cannot open upstream socket");
                        continue;
                    }
                }
            }
        };
        admit(&mut flow.link, &flow.queue, &buf[..n], arrival, &counters.dropped_datagrams);
    }
}

async fn open_flow(
    client_socket: &Arc<UdpSocket>,
    client: SocketAddr,
    upstream: SocketAddr,
    profile: &LinkProfile,
    stream: u64,
    counters: &Counters,
    tasks: &ProxyTasks,
) -> io::Result<Flow> {
    let any: SocketAddr =
        if upstream.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let server = Arc::new(UdpSocket::bind(any).await?);
    server.connect(upstream).await?;
    debug!(%client, local = ?server.local_addr(), "netem udp flow opened");

    let (up_tx, up_rx) = mpsc::channel(QUEUE_DATAGRAMS);
    tasks.spawn(deliver(up_rx, Target::Upstream(server.clone()), counters.upstream_bytes.clone()));
    let (down_tx, down_rx) = mpsc::channel(QUEUE_DATAGRAMS);
    tasks.spawn(deliver(down_rx, Target::Client(client_socket.clone(), client), counters.downstream_bytes.clone()));
    let downlink = LinkScheduler::new(profile, stream + 1);
    tasks.spawn(upstream_loop(server, downlink, down_tx, counters.dropped_datagrams.clone()));
    Ok(Flow { link: LinkScheduler::new(profile, stream), queue: up_tx })
}

/// Reads the upstream's replies for one flow.
async fn upstream_loop(
    server: Arc<UdpSocket>,
    mut link: LinkScheduler,
    queue: mpsc::Sender<Datagram>,
    dropped: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let n = match server.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) if is_transient(&e) => continue,
            Err(e) => {
                warn!(error = %e, "netem udp upstream socket failed");
                return;
            }
        };
        admit(&mut link, &queue, &buf[..n], Instant::now(), &dropped);
    }
}

/// Puts one datagram on the emulated wire, unless the link loses it.
fn admit(link: &mut LinkScheduler, queue: &mpsc::Sender<Datagram>, data: &[u8], arrival: Instant, dropped: &AtomicU64) {
    if link.lose() {
        stats::add(dropped, 1);
        return;
    }
    let release = link.schedule(arrival, data.len());
    // Never wait for queue space: a blocked reader would delay every later
    // datagram, where a real link simply drops the overflow.
    if queue.try_send(Datagram { data: data.to_vec(), release }).is_err() {
        stats::add(dropped, 1);
    }
}

enum Target {
    Upstream(Arc<UdpSocket>),
    Client(Arc<UdpSocket>, SocketAddr),
}

/// Sends one direction of a flow's datagrams at their release times.
async fn deliver(mut queue: mpsc::Receiver<Datagram>, target: Target, delivered: Arc<AtomicU64>) {
    while let Some(Datagram { data, release }) = queue.recv().await {
        sleep_until(release).await;
        let sent = match &target {
            Target::Upstream(socket) => socket.send(&data).await,
            Target::Client(socket, client) => socket.send_to(&data, *client).await,
        };
        match sent {
            Ok(_) => stats::add(&delivered, data.len()),
            // UDP promises nothing; a failed send is one more lost datagram.
            Err(e) => debug!(error = %e, "netem udp send failed"),
        }
    }
}

/// Errors that concern one datagram, not the socket: an ICMP unreachable
/// from an earlier send (the upstream is not listening yet) or a signal.
fn is_transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
}
