//! The TCP listener both servers accept on (the cloud's gRPC port, the
//! edge's HTTP API). It lives here, with the readiness line, because it is
//! process start-up that both binaries share and `ouro-common` must not
//! open sockets; tokio is already in both binaries' builds.

use std::net::SocketAddr;

/// Connections the kernel may hold completed but not yet accepted.
/// tokio's `bind` asks for 128, and a burst of new connections beyond that
/// is dropped: each of those clients then waits a full SYN retry (~1 s) for
/// even a refusal. A burst of 200 did exactly that (found by `ouro-bench
/// soak`). The kernel caps it at `net.core.somaxconn`.
pub const BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`BACKLOG`]-deep accept queue. Call it
/// inside a tokio runtime.
pub fn tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;
    use std::time::Duration;

    /// More connections than tokio's default queue of 128 complete while
    /// nothing accepts them. With a shallow queue the 130th handshake is
    /// dropped, and its connect gives up at the (generous) timeout.
    #[test]
    fn a_burst_beyond_128_connections_is_queued_not_dropped() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
        let listener = rt.block_on(async { super::tcp("127.0.0.1:0".parse().unwrap()) }).unwrap();
        let addr = listener.local_addr().unwrap();
        // Held open, so that each one stays in the queue.
        let mut held: Vec<TcpStream> = Vec::new();
        for i in 0..200 {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                Ok(c) => held.push(c),
                Err(e) => panic!("connection {i} was not queued: {e}"),
            }
        }
        drop(listener);
    }
}
