//! A fault-injection TCP proxy for the PostgreSQL tests, run in the test process between a
//! store under test and its server on 127.0.0.1. It forwards bytes both ways until told to
//! inject a fault: a lost reply (the server's next reply dropped, then the connection cut), a
//! black hole (everything swallowed, nothing answered, nothing closed) or a reset (every open
//! connection closed at once).
//!
//! Each accepted connection gets its own upstream connection and two pump threads; a pump
//! polls its source with a short read timeout, so it sees a new fault within about 20 ms.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering::SeqCst},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

/// How long a pump waits for bytes before it looks at the shared state again.
const POLL: Duration = Duration::from_millis(20);
/// How long the accept thread sleeps when no connection is waiting.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// One socket of an open connection, kept so that it can be shut down from outside.
struct Entry {
    id: u64,
    generation: u64,
    stream: TcpStream,
}

/// What the proxy's handle and its threads share.
struct Shared {
    upstream: SocketAddr,
    black_hole: AtomicBool,
    drop_next_reply: AtomicBool,
    /// With the next reply dropped: how long the server side stays open after the cut.
    hold_server: Mutex<Option<Duration>>,
    /// Connections whose server side is held open after their client side was cut.
    held: Mutex<Vec<u64>>,
    generation: AtomicU64,
    shutdown: AtomicBool,
    replies_dropped: AtomicU64,
    connections: AtomicU64,
    sockets: Mutex<Vec<Entry>>,
}

impl Shared {
    fn sockets(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shuts down every socket of the connections started before `generation`.
    fn close_started_before(&self, generation: u64) {
        self.sockets().retain(|entry| {
            if entry.generation < generation {
                let _ = entry.stream.shutdown(Shutdown::Both);
                false
            } else {
                true
            }
        });
    }

    fn forget(&self, id: u64) {
        self.sockets().retain(|entry| entry.id != id);
    }

    /// Whether a connection started in `generation` may go on.
    fn live(&self, generation: u64) -> bool {
        !self.shutdown.load(SeqCst) && self.generation.load(SeqCst) == generation
    }
}

/// A TCP proxy on 127.0.0.1 that forwards to a PostgreSQL server and injects faults on demand.
///
/// Dropping it stops accepting and closes every connection; its threads exit soon after.
pub struct FaultProxy {
    shared: Arc<Shared>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 on a free port and forwards every accepted connection to
    /// 127.0.0.1:`upstream_port`. A connection whose upstream cannot be reached is closed.
    ///
    /// # Panics
    ///
    /// If it cannot listen or start its accept thread.
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("fault proxy: bind 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("fault proxy: non-blocking listener");
        let port = listener
            .local_addr()
            .expect("fault proxy: local address")
            .port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            black_hole: AtomicBool::new(false),
            drop_next_reply: AtomicBool::new(false),
            hold_server: Mutex::new(None),
            held: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            replies_dropped: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            sockets: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("fault-proxy-accept".to_owned())
            .spawn(move || accept_loop(accepting, listener))
            .expect("fault proxy: spawn the accept thread");
        FaultProxy {
            shared,
            port,
            accept: Some(accept),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Forward normally (the default). Connections opened or used during a black hole do not
    /// resume meaningfully (their bytes were lost): the client is expected to notice (a timeout,
    /// a protocol error) and reconnect. New connections forward normally.
    pub fn pass(&self) {
        self.shared.black_hole.store(false, SeqCst);
    }

    /// Black hole: from now on, bytes in both directions are read and silently discarded;
    /// connections stay open, nothing is answered and nothing is closed (not even when one
    /// end closes) until [`pass`](Self::pass). New connections are accepted, but nothing is
    /// forwarded on them.
    pub fn black_hole(&self) {
        self.shared.black_hole.store(true, SeqCst);
    }

    /// Drop the server's next reply and cut: the next chunk of bytes read from the server on
    /// any connection is discarded, and then that connection is closed in both directions.
    /// Later connections forward normally. Returns at once; arming twice before a reply
    /// still drops one. While a black hole is on, the armed drop waits for the first reply
    /// after [`pass`](Self::pass). See [`replies_dropped`](Self::replies_dropped).
    pub fn drop_next_reply_and_cut(&self) {
        *self
            .shared
            .hold_server
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.shared.drop_next_reply.store(true, SeqCst);
    }

    /// As [`drop_next_reply_and_cut`](Self::drop_next_reply_and_cut), but only the client's
    /// side is cut: the server's stays open for `hold` (its server process lives on, as after a
    /// network loss), its bytes discarded, and is closed then.
    pub fn drop_next_reply_and_cut_client(&self, hold: Duration) {
        *self
            .shared
            .hold_server
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(hold);
        self.shared.drop_next_reply.store(true, SeqCst);
    }

    /// Close every open connection now (both sides), as a network reset would; later
    /// connections forward normally.
    pub fn cut_all(&self) {
        let now = self.shared.generation.fetch_add(1, SeqCst) + 1;
        self.shared.close_started_before(now);
    }

    /// How many replies were dropped by [`drop_next_reply_and_cut`](Self::drop_next_reply_and_cut).
    pub fn replies_dropped(&self) -> u64 {
        self.shared.replies_dropped.load(SeqCst)
    }

    /// Arms a lost reply with `arm` (one of the `drop_next_reply_*`) and waits, at most
    /// `within`, for it to happen; whether it did.
    pub fn lose_next_reply(&self, arm: impl FnOnce(&Self), within: Duration) -> bool {
        let before = self.replies_dropped();
        arm(self);
        let armed = std::time::Instant::now();
        while self.replies_dropped() == before {
            if armed.elapsed() >= within {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// How many client connections were accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, SeqCst);
        self.shared.close_started_before(u64::MAX);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    while !shared.shutdown.load(SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let id = shared.connections.fetch_add(1, SeqCst);
                let generation = shared.generation.load(SeqCst);
                let serving = Arc::clone(&shared);
                // If the thread cannot start, the client is dropped, hence closed.
                let _ = thread::Builder::new()
                    .name(format!("fault-proxy-{id}"))
                    .spawn(move || serve(serving, client, id, generation));
            }
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
}

/// Connects upstream and pumps both ways until the connection ends.
fn serve(shared: Arc<Shared>, client: TcpStream, id: u64, generation: u64) {
    let Ok(server) = TcpStream::connect(shared.upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let mut ready = true;
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
        ready &=
            stream.set_nonblocking(false).is_ok() && stream.set_read_timeout(Some(POLL)).is_ok();
    }
    let clones = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    );
    let (true, Ok(client_up), Ok(server_up), Ok(client_kept), Ok(server_kept)) =
        (ready, clones.0, clones.1, clones.2, clones.3)
    else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        return;
    };
    {
        let mut sockets = shared.sockets();
        for stream in [client_kept, server_kept] {
            sockets.push(Entry {
                id,
                generation,
                stream,
            });
        }
    }
    let upward = Arc::clone(&shared);
    let spawned = thread::Builder::new()
        .name(format!("fault-proxy-{id}-up"))
        .spawn(move || pump(&upward, client_up, server_up, false, id, generation));
    if spawned.is_err() {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        shared.forget(id);
        return;
    }
    pump(&shared, server, client, true, id, generation);
}

/// Copies `from` to `to`, obeying the faults, until either end goes or the connection is cut;
/// then shuts down both sockets.
fn pump(
    shared: &Shared,
    mut from: TcpStream,
    mut to: TcpStream,
    from_server: bool,
    id: u64,
    generation: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while shared.live(generation) {
        let n = match from.read(&mut buf) {
            Ok(n) if n > 0 => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            // In a black hole even an end or a reset goes unanswered until `pass()`.
            _ if shared.black_hole.load(SeqCst) => {
                thread::sleep(POLL);
                continue;
            }
            _ => break,
        };
        if shared.black_hole.load(SeqCst) {
            continue;
        }
        if from_server && shared.drop_next_reply.swap(false, SeqCst) {
            shared.replies_dropped.fetch_add(1, SeqCst);
            let hold = shared
                .hold_server
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(hold) = hold {
                hold_server_side(shared, from, to, hold, id);
                return;
            }
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let held = shared
        .held
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&id);
    if held {
        // The client side of a connection whose server side is held: only it ends here.
        let _ = from.shutdown(Shutdown::Both);
        return;
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.forget(id);
}

/// Cuts the client's side of connection `id` and keeps its server side open for `hold`,
/// reading and discarding what the server sends, then closes it.
fn hold_server_side(
    shared: &Shared,
    mut server: TcpStream,
    client: TcpStream,
    hold: Duration,
    id: u64,
) {
    shared
        .held
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(id);
    let _ = client.shutdown(Shutdown::Both);
    let until = std::time::Instant::now() + hold;
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < until && !shared.shutdown.load(SeqCst) {
        if matches!(server.read(&mut buf), Ok(0)) {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Both);
    shared
        .held
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|held| *held != id);
    shared.forget(id);
}
