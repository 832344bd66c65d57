//! The API server: a Unix socket only its owner may use, an accept thread,
//! and one short-lived thread per client, at most [`MAX_CLIENTS`] at once.
//!
//! ```text
//!  iovm-api (accept) ─▶ iovm-api-client: read (limits, deadline) ─▶ Handler
//!       │                  ─▶ ManagePort ─▶ run loop ─▶ answer ─▶ write, close
//!       └─ past MAX_CLIENTS: 503; past twice that: closed
//! ```
//!
//! No vCPU ever waits for the server: requests reach the machine as
//! messages into its run loop, which answers on its own thread.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::handler::{Handler, Response};
use crate::http::{self, Limits, ReadError};

/// Clients served at once; one more is answered 503.
pub const MAX_CLIENTS: usize = 32;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Something else already listens there.
    #[error("--api-socket {0}: another process already serves this socket")]
    InUse(String),
    /// Something that is not a socket is there.
    #[error("--api-socket {0}: the path exists and is not a socket; give another path")]
    NotASocket(String),
    /// The path is too long for a Unix socket address.
    #[error("--api-socket {0}: the path is longer than a Unix socket address takes (107 bytes)")]
    TooLong(String),
    /// The socket could not be made.
    #[error("--api-socket {path}: cannot {what}")]
    Io {
        /// The path.
        path: String,
        /// What failed.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running API server; stopping it (or dropping it) removes the socket.
#[derive(Debug)]
pub struct ApiServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    accept: Option<JoinHandle<()>>,
}

fn io_err<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> ServerError + 'a {
    move |source| ServerError::Io {
        path: path.display().to_string(),
        what,
        source,
    }
}

/// Binds a stream socket at `path` readable and writable by its owner
/// only: the mode is set between bind and listen, before any client can
/// connect.
fn bind_private(path: &Path) -> Result<UnixListener, ServerError> {
    let name = path.display().to_string();
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(ServerError::NotASocket(name));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(name));
            }
            std::fs::remove_file(path).map_err(io_err(path, "remove the stale socket"))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path, "look at the path")(e)),
    }
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(ServerError::TooLong(name));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: a plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err(path, "create a socket")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` is a new socket owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    let rc = unsafe {
        libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            (&addr as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io_err(path, "bind")(std::io::Error::last_os_error()));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(path, "make the socket owner-only"))?;
    // SAFETY: `sock` is a bound stream socket.
    if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&sock), 64) } < 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(path);
        return Err(io_err(path, "listen")(e));
    }
    Ok(UnixListener::from(sock))
}

/// Closes after an answer the way HTTP servers do (RFC 9112 §9.6): stop
/// writing, then read and drop what the client still sends, for a while,
/// so that closing with unread bytes does not reset the connection before
/// the client has read its answer.
fn linger(mut stream: &UnixStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 16 << 10];
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut left: usize = 4 << 20;
    while left > 0 && Instant::now() < deadline {
        match std::io::Read::read(&mut stream, &mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Tells a client past [`MAX_CLIENTS`] to come back: reads its request
/// briefly (so the answer is not lost to a reset), answers 503.
fn refuse_busy(stream: UnixStream) {
    let _ = http::read_request(
        &stream,
        Limits {
            timeout: Duration::from_millis(500),
            ..Limits::default()
        },
    );
    let busy = Response::error(
        503,
        format!("more than {MAX_CLIENTS} clients at once; ask again"),
    );
    let _ = http::write_response(&stream, busy.status, busy.body.as_ref(), None);
    linger(&stream);
}

fn serve_client(stream: UnixStream, handler: &Handler, limits: Limits) {
    let response = match http::read_request(&stream, limits) {
        Ok(request) => {
            tracing::debug!("API: {} {}", request.method, request.path);
            handler.handle(request)
        }
        Err(ReadError::Gone) => return,
        Err(ReadError::Refuse(status, message)) => Response::error(status, message),
    };
    if let Err(e) = http::write_response(
        &stream,
        response.status,
        response.body.as_ref(),
        response.allow,
    ) {
        tracing::debug!("API: the client left before its answer: {e}");
    }
    linger(&stream);
}

impl ApiServer {
    /// Listens at `path` and serves requests with `handler` on threads of
    /// its own.
    pub fn start(path: &Path, handler: Handler, limits: Limits) -> Result<Self, ServerError> {
        let listener = bind_private(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        let (stop2, active2) = (stop.clone(), active.clone());
        let accept = std::thread::Builder::new()
            .name("iovm-api".into())
            .spawn(move || {
                sandbox::enter(sandbox::ThreadKind::ApiServer);
                for stream in listener.incoming() {
                    if stop2.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let now = active2.load(Ordering::Acquire);
                    if now >= 2 * MAX_CLIENTS {
                        // Beyond even the refusals: close at once.
                        continue;
                    }
                    active2.fetch_add(1, Ordering::AcqRel);
                    let (handler, active3) = (handler.clone(), active2.clone());
                    let spawned = std::thread::Builder::new()
                        .name("iovm-api-client".into())
                        .spawn(move || {
                            sandbox::enter(sandbox::ThreadKind::ApiClient);
                            if now >= MAX_CLIENTS {
                                refuse_busy(stream);
                            } else {
                                serve_client(stream, &handler, limits);
                            }
                            active3.fetch_sub(1, Ordering::AcqRel);
                        });
                    if spawned.is_err() {
                        active2.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            })
            .map_err(io_err(path, "start the API thread"))?;
        Ok(Self {
            path: path.to_path_buf(),
            stop,
            active,
            accept: Some(accept),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, gives clients being answered up to `grace` to get
    /// their answers, and removes the socket.
    pub fn stop(mut self, grace: Duration) {
        self.shut(grace);
    }

    fn shut(&mut self, grace: Duration) {
        self.stop.store(true, Ordering::Release);
        if let Some(accept) = self.accept.take() {
            let _ = UnixStream::connect(&self.path);
            let _ = accept.join();
        }
        let deadline = Instant::now() + grace;
        while self.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shut(Duration::ZERO);
    }
}
