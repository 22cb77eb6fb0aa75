//! The shuffle's connections: one TCP connection per ordered pair of workers, with
//! credit-based flow control.
//!
//! Worker `i` dials every peer `j` and sends its frames to `j` on that connection; `j`
//! answers on it only with credits. A receiver grants [`INITIAL_CREDITS`] data frames in its
//! hello and one more for every data frame its main loop has consumed, so the frames in
//! flight to a worker (and buffered there) are bounded, and a slow worker slows its
//! senders: they keep frames queued, stop reading their sources, and keep draining their
//! own inputs, so no cycle of waits can form. Barriers, watermarks and control messages
//! cost no credit but keep their place behind queued data.
//!
//! A mesh is formed per *attempt*: every worker restored from the same checkpoint. Hellos
//! carry the restored checkpoint id; a worker that meets a peer restored from a newer
//! checkpoint restarts from it, and a hello arriving while the mesh runs means that peer
//! restarted, so this worker restarts too. Reads happen on one thread per connection, which
//! turns frames into [`Event`]s for the worker's main loop; writes happen on the main loop
//! (a receiver's reader thread always drains its socket, so they do not block for long).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec::{self, Frame, Hello, MAX_FRAME};

/// Data frames a receiver lets each sender have in flight.
pub const INITIAL_CREDITS: u32 = 16;
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const DIAL_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("shuffle i/o with worker {peer}: {source}")]
    Io {
        peer: u32,
        #[source]
        source: io::Error,
    },
    /// Join attempt `attempt` (restored from the newest checkpoint) instead.
    #[error("{reason}")]
    Restart { reason: String, attempt: u64 },
    #[error("stopped while waiting for peers")]
    Shutdown,
}

/// A connection accepted, its hello read and answered for attempt `generation`.
pub struct Accepted {
    stream: TcpStream,
    hello: Hello,
    generation: u64,
}

/// The attempt the listener answers for: (generation, identity).
type Current = Arc<Mutex<(u64, Option<Identity>)>>;

/// Accepts peers' connections for the whole life of the process (across attempts) and
/// answers their hellos at once with the current attempt's identity, so two workers dialing
/// each other never wait on each other's main loops.
pub struct ShuffleListener {
    accepted: Receiver<Accepted>,
    local: SocketAddr,
    current: Current,
}

impl ShuffleListener {
    pub fn bind(addr: SocketAddr) -> io::Result<ShuffleListener> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let (tx, rx) = channel();
        let current: Current = Arc::new(Mutex::new((0, None)));
        let c = current.clone();
        std::thread::Builder::new()
            .name("shuffle-accept".into())
            .spawn(move || accept_loop(listener, tx, c))?;
        Ok(ShuffleListener {
            accepted: rx,
            local,
            current,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sets the attempt connections are answered for (`None`: between attempts, turn them
    /// away); returns its generation.
    pub fn set_identity(&self, me: Option<Identity>) -> u64 {
        match self.current.lock() {
            Ok(mut c) => {
                c.0 += 1;
                c.1 = me;
                c.0
            }
            Err(_) => 0,
        }
    }

    fn generation(&self) -> u64 {
        self.current.lock().map(|c| c.0).unwrap_or(0)
    }
}

fn accept_loop(listener: TcpListener, tx: Sender<Accepted>, current: Current) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let tx = tx.clone();
        let current = current.clone();
        // The hello is read off the accept thread so a silent client cannot stall others.
        let _ = std::thread::Builder::new()
            .name("shuffle-hello".into())
            .spawn(move || answer(stream, &tx, &current));
    }
}

/// Reads a dialer's hello and answers it for the current attempt (or turns it away).
fn answer(mut stream: TcpStream, tx: &Sender<Accepted>, current: &Current) {
    let _ = stream.set_read_timeout(Some(HELLO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(Frame::Hello(hello)) = read_frame(&mut stream, &mut Vec::new()) else {
        return;
    };
    let (generation, me) = match current.lock() {
        Ok(c) => (c.0, c.1.clone()),
        Err(_) => return,
    };
    let Some(me) = me else {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    if hello.job != me.job
        || hello.to != me.index
        || hello.parallelism != me.parallelism
        || hello.from >= me.parallelism
        || hello.from == me.index
    {
        tracing::warn!(
            ?hello,
            "refusing a shuffle connection of another job or layout"
        );
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let reply = Hello {
        job: me.job.clone(),
        from: me.index,
        to: hello.from,
        parallelism: me.parallelism,
        restored: me.restored,
        attempt: me.attempt,
        credits: INITIAL_CREDITS,
    };
    if stream
        .write_all(&codec::encode(&Frame::Hello(reply)))
        .is_err()
    {
        return;
    }
    let _ = stream.set_read_timeout(None);
    let _ = tx.send(Accepted {
        stream,
        hello,
        generation,
    });
}

/// Reads one frame (blocking).
fn read_frame(stream: &mut TcpStream, topics: &mut Vec<std::sync::Arc<str>>) -> io::Result<Frame> {
    read_frame_sized(stream, topics).map(|(f, _)| f)
}

fn read_frame_sized(
    stream: &mut TcpStream,
    topics: &mut Vec<std::sync::Arc<str>>,
) -> io::Result<(Frame, usize)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    let frame =
        codec::decode(&body, topics).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((frame, len + 4))
}

/// What the reader threads report to the main loop.
#[derive(Debug)]
pub enum Event {
    /// A frame from peer `from` (on its connection to this worker); `bytes` on the wire.
    Frame {
        from: u32,
        frame: Frame,
        bytes: usize,
    },
    /// Peer `peer` grants more data frames.
    Credit { peer: u32, frames: u32 },
    /// A connection to or from `peer` failed or closed.
    Lost { peer: u32, reason: String },
}

/// Who this worker is, for hellos.
#[derive(Clone, Debug)]
pub struct Identity {
    pub job: String,
    pub index: u32,
    pub parallelism: u32,
    /// The checkpoint this attempt restored from (0: none).
    pub restored: u64,
    /// The attempt number: every worker of a running mesh has the same, and a worker that
    /// loses a peer moves to the next; connections of other attempts are turned away.
    pub attempt: u64,
}

impl Identity {
    fn rank(&self) -> (u64, u64) {
        (self.attempt, self.restored)
    }
}

fn rank(h: &Hello) -> (u64, u64) {
    (h.attempt, h.restored)
}

/// A peer's hello says it is ahead (a later attempt, or a newer checkpoint): join it.
fn ahead(me: &Identity, h: &Hello) -> MeshError {
    MeshError::Restart {
        reason: format!(
            "worker {} is at attempt {} restored from checkpoint {}; this one at attempt {} from {}",
            h.from, h.attempt, h.restored, me.attempt, me.restored
        ),
        attempt: h.attempt.max(me.attempt),
    }
}

struct Outbound {
    stream: TcpStream,
    /// A write failed: the peer is going or gone. Nothing more is written; its inbound
    /// connection, read to its end, tells whether it said goodbye first.
    broken: bool,
    credits: u32,
    /// Frames waiting for their turn: (bytes, costs a credit).
    queue: VecDeque<(Bytes, bool)>,
}

struct Inbound {
    stream: TcpStream,
    /// Credits earned by consumed frames and not yet granted back.
    owed: u32,
}

/// The connections of one attempt.
pub struct Mesh {
    me: Identity,
    events: Receiver<Event>,
    out: Vec<Option<Outbound>>,
    inb: Vec<Option<Inbound>>,
}

impl Mesh {
    /// Connects to every peer (`peers[j]` is worker `j`'s address) and waits for every peer
    /// to connect back, all restored from the same checkpoint. Returns
    /// [`MeshError::Restart`] when a peer restored from a newer checkpoint.
    pub fn form(
        me: Identity,
        peers: &[String],
        listener: &ShuffleListener,
        shutdown: &AtomicBool,
    ) -> Result<Mesh, MeshError> {
        let n = me.parallelism as usize;
        let (tx, rx) = channel();
        // Dropping the mesh on an early return closes whatever was connected.
        let mut mesh = Mesh {
            me,
            events: rx,
            out: (0..n).map(|_| None).collect(),
            inb: (0..n).map(|_| None).collect(),
        };
        let me = mesh.me.clone();
        let generation = listener.set_identity(Some(me.clone()));
        let started = Instant::now();
        let mut last_log = Instant::now();
        loop {
            let mut missing = Vec::new();
            while let Ok(a) = listener.accepted.try_recv() {
                if a.generation != generation {
                    let _ = a.stream.shutdown(Shutdown::Both);
                    continue;
                }
                if let Some((from, stream)) = accept(&me, a)? {
                    let j = from as usize;
                    if let Some(old) = mesh.inb[j].replace(Inbound { stream, owed: 0 }) {
                        // The peer dialed again: it restarted, so dial it again too.
                        let _ = old.stream.shutdown(Shutdown::Both);
                        if let Some(o) = mesh.out[j].take() {
                            let _ = o.stream.shutdown(Shutdown::Both);
                        }
                    }
                }
            }
            for (j, addr) in peers.iter().enumerate().take(n) {
                if j == me.index as usize || mesh.out[j].is_some() {
                    continue;
                }
                match dial(&me, j as u32, addr) {
                    Ok(Some((stream, hello))) => {
                        if rank(&hello) > me.rank() {
                            return Err(ahead(&me, &hello));
                        }
                        if rank(&hello) < me.rank() {
                            // It restarts when it sees ours; it will answer again.
                            let _ = stream.shutdown(Shutdown::Both);
                            missing.push(format!("{j} (restoring)"));
                            continue;
                        }
                        mesh.out[j] = Some(Outbound {
                            stream,
                            broken: false,
                            credits: hello.credits,
                            queue: VecDeque::new(),
                        });
                    }
                    Ok(None) => missing.push(format!("{j} (dialing {addr})")),
                    Err(e) => missing.push(format!("{j} ({e})")),
                }
            }
            for (j, i) in mesh.inb.iter().enumerate() {
                if j != me.index as usize && i.is_none() {
                    missing.push(format!("{j} (to connect here)"));
                }
            }
            if missing.is_empty() {
                break;
            }
            if shutdown.load(Ordering::Relaxed) {
                return Err(MeshError::Shutdown);
            }
            if last_log.elapsed() >= Duration::from_secs(10) {
                tracing::info!(waiting_for = ?missing, "forming the shuffle");
                last_log = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Readers start only now: until every peer is here, frames wait in the sockets.
        for j in 0..n {
            if let Some(o) = &mesh.out[j] {
                spawn_credit_reader(&o.stream, j as u32, tx.clone())?;
            }
            if let Some(i) = &mesh.inb[j] {
                spawn_frame_reader(&i.stream, j as u32, tx.clone())?;
            }
        }
        tracing::info!(
            workers = n,
            restored = me.restored,
            ms = started.elapsed().as_millis() as u64,
            "shuffle connected to every worker"
        );
        Ok(mesh)
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<Event> {
        match self.events.recv_timeout(timeout) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(timeout);
                None
            }
        }
    }

    /// Whether a peer connected while the mesh runs (it restarted): `Some(peer)`.
    /// A peer that dialed while the mesh runs and is ahead of it (it restarted): the
    /// restart to join it. Stale connections are closed and ignored.
    pub fn newcomer(&self, listener: &ShuffleListener) -> Option<MeshError> {
        let generation = listener.generation();
        while let Ok(a) = listener.accepted.try_recv() {
            let _ = a.stream.shutdown(Shutdown::Both);
            if a.generation == generation && rank(&a.hello) > self.me.rank() {
                return Some(ahead(&self.me, &a.hello));
            }
        }
        None
    }

    /// Queues a frame for peer `j` (data frames wait for credit).
    pub fn send(&mut self, j: u32, frame: Bytes, data: bool) {
        if let Some(Some(o)) = self.out.get_mut(j as usize) {
            o.queue.push_back((frame, data));
        }
    }

    /// Writes what the credits allow. A failed write does not end the attempt by itself: a
    /// peer that stops on purpose closes its connections right after its goodbye, and that
    /// goodbye (and the control messages before it) may still be unread on its inbound
    /// connection. That connection's reader reports the loss, in order, if there was one.
    pub fn pump(&mut self) {
        for (j, o) in self.out.iter_mut().enumerate() {
            let Some(o) = o else { continue };
            while let Some((bytes, data)) = o.queue.front() {
                if o.broken || (*data && o.credits == 0) {
                    break;
                }
                if let Err(e) = o.stream.write_all(bytes) {
                    tracing::debug!(peer = j, error = %e, "shuffle connection broke");
                    o.broken = true;
                    o.queue.clear();
                    break;
                }
                if *data {
                    o.credits -= 1;
                }
                o.queue.pop_front();
            }
        }
    }

    /// Data frames waiting for credit, over all peers.
    pub fn backlog(&self) -> usize {
        self.out
            .iter()
            .flatten()
            .map(|o| o.queue.iter().filter(|(_, d)| *d).count())
            .sum()
    }

    pub fn add_credits(&mut self, peer: u32, frames: u32) {
        if let Some(Some(o)) = self.out.get_mut(peer as usize) {
            o.credits = o.credits.saturating_add(frames);
        }
    }

    /// A data frame from `peer` was consumed: its credit goes back (in small batches).
    pub fn consumed(&mut self, peer: u32) -> Result<(), MeshError> {
        if let Some(Some(i)) = self.inb.get_mut(peer as usize) {
            i.owed += 1;
            if i.owed >= (INITIAL_CREDITS / 4).max(1) {
                let frame = codec::encode(&Frame::Credit(i.owed));
                i.stream
                    .write_all(&frame)
                    .map_err(|source| MeshError::Io { peer, source })?;
                i.owed = 0;
            }
        }
        Ok(())
    }

    /// Tells every peer this worker stops on purpose, writing what is queued first.
    pub fn bye(&mut self) {
        for o in self.out.iter_mut().flatten() {
            o.queue.push_back((codec::encode(&Frame::Bye), false));
        }
        // Credits no longer matter: the peers are stopping too.
        for o in self.out.iter_mut().flatten() {
            while let Some((bytes, _)) = o.queue.pop_front() {
                if o.stream.write_all(&bytes).is_err() {
                    break;
                }
            }
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for o in self.out.iter().flatten() {
            let _ = o.stream.shutdown(Shutdown::Both);
        }
        for i in self.inb.iter().flatten() {
            let _ = i.stream.shutdown(Shutdown::Both);
        }
    }
}

/// Dials peer `j`; `Ok(None)` when it is not reachable yet.
fn dial(me: &Identity, j: u32, addr: &str) -> Result<Option<(TcpStream, Hello)>, MeshError> {
    let io_err = |source| MeshError::Io { peer: j, source };
    let Some(sock) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return Ok(None);
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&sock, DIAL_TIMEOUT) else {
        return Ok(None);
    };
    stream.set_nodelay(true).map_err(io_err)?;
    let hello = Hello {
        job: me.job.clone(),
        from: me.index,
        to: j,
        parallelism: me.parallelism,
        restored: me.restored,
        attempt: me.attempt,
        credits: 0,
    };
    if stream
        .write_all(&codec::encode(&Frame::Hello(hello)))
        .is_err()
    {
        return Ok(None);
    }
    stream
        .set_read_timeout(Some(HELLO_TIMEOUT))
        .map_err(io_err)?;
    let reply = match read_frame(&mut stream, &mut Vec::new()) {
        Ok(Frame::Hello(h)) => h,
        // Refused (another job, or the peer is between attempts): try again later.
        _ => return Ok(None),
    };
    stream.set_read_timeout(None).map_err(io_err)?;
    if reply.job != me.job || reply.from != j || reply.parallelism != me.parallelism {
        tracing::warn!(
            address = addr,
            ?reply,
            "a worker of another job answered; ignoring it"
        );
        return Ok(None);
    }
    Ok(Some((stream, reply)))
}

/// Takes an accepted (and answered) connection: `Some((peer, stream))` when it joins this
/// attempt.
fn accept(me: &Identity, a: Accepted) -> Result<Option<(u32, TcpStream)>, MeshError> {
    let Accepted { stream, hello, .. } = a;
    if rank(&hello) > me.rank() {
        return Err(ahead(me, &hello));
    }
    if rank(&hello) < me.rank() {
        // It restarts when it sees ours, and dials again.
        let _ = stream.shutdown(Shutdown::Both);
        return Ok(None);
    }
    Ok(Some((hello.from, stream)))
}

fn spawn_frame_reader(stream: &TcpStream, from: u32, tx: Sender<Event>) -> Result<(), MeshError> {
    let io_err = |source| MeshError::Io { peer: from, source };
    let mut s = stream.try_clone().map_err(io_err)?;
    std::thread::Builder::new()
        .name(format!("shuffle-in-{from}"))
        .spawn(move || {
            let mut topics = Vec::new();
            loop {
                match read_frame_sized(&mut s, &mut topics) {
                    Ok((frame, bytes)) => {
                        if tx.send(Event::Frame { from, frame, bytes }).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Event::Lost {
                            peer: from,
                            reason: e.to_string(),
                        });
                        return;
                    }
                }
            }
        })
        .map_err(io_err)?;
    Ok(())
}

/// Reads the credits `peer` grants on this worker's connection to it. When that connection
/// ends, the reader just stops: the loss of a peer is reported by the reader of its inbound
/// connection, after every frame the peer sent before it (a goodbye included).
fn spawn_credit_reader(stream: &TcpStream, peer: u32, tx: Sender<Event>) -> Result<(), MeshError> {
    let io_err = |source| MeshError::Io { peer, source };
    let mut s = stream.try_clone().map_err(io_err)?;
    std::thread::Builder::new()
        .name(format!("shuffle-credit-{peer}"))
        .spawn(move || {
            let mut topics = Vec::new();
            loop {
                match read_frame(&mut s, &mut topics) {
                    Ok(Frame::Credit(frames)) => {
                        if tx.send(Event::Credit { peer, frames }).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(peer, error = %e, "credit connection ended");
                        return;
                    }
                }
            }
        })
        .map_err(io_err)?;
    Ok(())
}
