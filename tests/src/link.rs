//! A TCP link the test can cut and restore at will, so an outage starts and
//! ends exactly when the test says, not when a process finishes dying or
//! loading its model.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Forwards every connection to `to` until cut. While cut, open connections
/// are shut down and new ones are closed on accept, as a dead peer's would be.
pub struct CutLink {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl CutLink {
    pub fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the link");
        let addr = listener.local_addr().expect("link address");
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(near) = conn else { continue };
                if c.load(Ordering::Acquire) {
                    continue; // dropped: the peer sees the connection close
                }
                let Ok(far) = TcpStream::connect(to) else { continue };
                let mut open = o.lock().unwrap();
                for s in [&near, &far] {
                    open.push(s.try_clone().expect("clone a link socket"));
                }
                pipe(near.try_clone().expect("clone"), far.try_clone().expect("clone"));
                pipe(far, near);
            }
        });
        CutLink { addr, cut, open }
    }

    /// Every open connection is reset and new ones are refused.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
