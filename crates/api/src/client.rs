//! A client of iovm's API socket (what `iovm remote` and the tests use):
//! one request per connection, file descriptors passed with SCM_RIGHTS.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to {path}: is iovm running with --api-socket {path}?")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Sending or receiving failed.
    #[error("the API socket failed")]
    Io(#[from] std::io::Error),
    /// The answer is not HTTP.
    #[error("the answer is not an HTTP response: {0}")]
    Malformed(String),
}

/// An answer: the status and the JSON body, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body, parsed (`None` when empty).
    pub body: Option<Value>,
}

/// Writes `bytes`, the first chunk with `fds` attached (SCM_RIGHTS).
pub fn send_with_fds(stream: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    if fds.is_empty() {
        return (&mut &*stream).write_all(bytes);
    }
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let data_len = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a constant computation.
    let space = unsafe { libc::CMSG_SPACE(data_len as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; every pointer set below is valid for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer has room for one header and `fds`.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data_len as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
    }
    // SAFETY: `msg` points at live buffers for the call.
    let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    (&mut &*stream).write_all(&bytes[n as usize..])
}

/// Sends `method path` with `body` (JSON) and `fds` to the API at
/// `socket`, and reads the answer.
pub fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
    fds: &[RawFd],
) -> Result<Reply, ClientError> {
    let stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut text =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n");
    if body.is_some() {
        text.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    text.push_str("\r\n");
    text.push_str(&payload);
    send_with_fds(&stream, text.as_bytes(), fds)?;
    let mut answer = Vec::new();
    (&stream).take(16 << 20).read_to_end(&mut answer)?;
    parse_reply(&answer)
}

fn parse_reply(answer: &[u8]) -> Result<Reply, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(answer) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(ClientError::Malformed("cut short".into())),
        Err(e) => return Err(ClientError::Malformed(e.to_string())),
    };
    let status = resp.code.unwrap_or_default();
    let rest = &answer[head..];
    let body = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(rest).map_err(|e| ClientError::Malformed(e.to_string()))?)
    };
    Ok(Reply { status, body })
}
