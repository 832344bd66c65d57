//! One HTTP/1.1 exchange on a Unix stream: read a request (RFC 9112 §2-6),
//! with its head parsed by `httparse`, and write a response. One request
//! per connection (`Connection: close`), as Cloud Hypervisor's clients and
//! curl use the socket.
//!
//! A client is not trusted: the head and the body have size limits, the
//! whole request a deadline, and file descriptors passed with it
//! (SCM_RIGHTS, as libvirt passes TAP devices) are bounded in number and
//! closed unless used.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The bounds on one request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request line and headers, bytes.
    pub head: usize,
    /// Body, bytes (`Content-Length` above it: 413).
    pub body: usize,
    /// The whole request must arrive within this.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            head: 8 << 10,
            body: 1 << 20,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The most file descriptors one request may carry.
pub const MAX_FDS: usize = 16;

/// A request as read.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The path, without a query.
    pub path: String,
    /// The body (empty when none).
    pub body: Vec<u8>,
    /// File descriptors that came with it.
    pub fds: Vec<OwnedFd>,
}

/// Why no request was read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Answer with this status and message, then close.
    Refuse(u16, String),
    /// The client went away (or sent nothing and closed): just close.
    Gone,
}

fn refuse(status: u16, text: impl Into<String>) -> ReadError {
    ReadError::Refuse(status, text.into())
}

/// Reads into `buf`, collecting passed descriptors into `fds`; 0 at end
/// of stream.
fn receive(stream: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> std::io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for MAX_FDS descriptors in one control message, 8-byte aligned.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; every pointer set below is valid for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` points at `iov` (into `buf`) and `control`, both live for the call.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk its control buffer.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is a header inside `control`, as CMSG_FIRSTHDR/NXTHDR return.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is a constant computation.
            let data_len = header.cmsg_len as usize - unsafe { libc::CMSG_LEN(0) } as usize;
            let count = data_len / std::mem::size_of::<libc::c_int>();
            // SAFETY: the data of an SCM_RIGHTS message is `count` ints.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
            for i in 0..count {
                // SAFETY: `i < count`, inside the message; the kernel gave us
                // these descriptors, so we own them (and close them if unused).
                let fd = unsafe { data.add(i).read_unaligned() };
                // SAFETY: a descriptor just received is ours alone.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: `msg` and `cmsg` are as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(std::io::Error::other("too many file descriptors"));
    }
    Ok(n as usize)
}

/// Reads one request from `stream` within `limits`.
pub fn read_request(stream: &UnixStream, limits: Limits) -> Result<Request, ReadError> {
    let deadline = Instant::now() + limits.timeout;
    let mut data: Vec<u8> = Vec::with_capacity(1024);
    let mut fds = Vec::new();
    let mut chunk = [0u8; 4096];
    let (method, path, body_start, length) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(refuse(408, "the request did not arrive in time"));
        }
        let _ = stream.set_read_timeout(Some(left));
        let n = match receive(stream, &mut chunk, &mut fds) {
            Ok(0) if data.is_empty() => return Err(ReadError::Gone),
            Ok(0) => return Err(refuse(400, "the request ended before its headers did")),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(refuse(408, "the request did not arrive in time"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Other => {
                return Err(refuse(400, e.to_string()))
            }
            Err(_) => return Err(ReadError::Gone),
        };
        if fds.len() > MAX_FDS {
            return Err(refuse(
                400,
                format!("at most {MAX_FDS} file descriptors per request"),
            ));
        }
        data.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&data) {
            Ok(httparse::Status::Complete(head_len)) => {
                if head_len > limits.head {
                    return Err(refuse(
                        431,
                        format!("the request head is over {} bytes", limits.head),
                    ));
                }
                let length = content_length(req.headers)?;
                let method = req.method.unwrap_or_default().to_string();
                let target = req.path.unwrap_or_default();
                let path = target
                    .split(['?', '#'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                break (method, path, head_len, length);
            }
            Ok(httparse::Status::Partial) if data.len() > limits.head => {
                return Err(refuse(
                    431,
                    format!("the request head is over {} bytes", limits.head),
                ))
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(refuse(431, "more than 32 headers"))
            }
            Err(e) => return Err(refuse(400, format!("not an HTTP/1.1 request: {e}"))),
        }
    };
    if length > limits.body {
        return Err(refuse(
            413,
            format!(
                "the body is {length} bytes; iovm takes at most {}",
                limits.body
            ),
        ));
    }
    let mut body = data.split_off(body_start.min(data.len()));
    while body.len() < length {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(refuse(408, "the body did not arrive in time"));
        }
        let _ = stream.set_read_timeout(Some(left));
        match receive(stream, &mut chunk, &mut fds) {
            Ok(0) => return Err(refuse(400, "the body is shorter than its Content-Length")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(refuse(408, "the body did not arrive in time")),
        }
        if fds.len() > MAX_FDS {
            return Err(refuse(
                400,
                format!("at most {MAX_FDS} file descriptors per request"),
            ));
        }
    }
    body.truncate(length);
    Ok(Request {
        method,
        path,
        body,
        fds,
    })
}

fn content_length(headers: &[httparse::Header]) -> Result<usize, ReadError> {
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(refuse(
                411,
                "iovm takes bodies with a Content-Length, not chunked",
            ));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|t| t.trim().parse::<usize>().ok())
                .ok_or_else(|| refuse(400, "Content-Length is not a number"))?;
            if length.is_some_and(|l| l != n) {
                return Err(refuse(400, "two different Content-Length headers"));
            }
            length = Some(n);
        }
    }
    Ok(length.unwrap_or(0))
}

/// The reason phrase of the statuses iovm sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Writes a response with `body` as JSON (none for 204), and `allow` for
/// a 405.
pub fn write_response(
    mut stream: &UnixStream,
    status: u16,
    body: Option<&serde_json::Value>,
    allow: Option<&str>,
) -> std::io::Result<()> {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nServer: iovm\r\nConnection: close\r\n",
        reason(status)
    );
    if let Some(allow) = allow {
        head.push_str(&format!("Allow: {allow}\r\n"));
    }
    if status != 204 {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if status != 204 {
        stream.write_all(payload.as_bytes())?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn send(text: &[u8], limits: Limits) -> Result<Request, ReadError> {
        let (mut client, server) = UnixStream::pair().unwrap();
        client.write_all(text).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        read_request(&server, limits)
    }

    #[test]
    fn test_request_with_body_is_read_whole() {
        let r = send(
            b"PUT /api/v1/vm.add-disk?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\n{}  ",
            Limits::default(),
        )
        .unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("PUT", "/api/v1/vm.add-disk")
        );
        assert_eq!(r.body, b"{}  ");
    }

    #[test]
    fn test_body_over_the_limit_is_413_before_it_is_read() {
        let e = send(
            b"PUT /api/v1/vm.create HTTP/1.1\r\nContent-Length: 1073741824\r\n\r\n",
            Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(e, ReadError::Refuse(413, _)), "{e:?}");
    }

    #[test]
    fn test_silent_client_times_out_with_408() {
        let (_client, server) = UnixStream::pair().unwrap();
        let e = read_request(
            &server,
            Limits {
                timeout: Duration::from_millis(50),
                ..Limits::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, ReadError::Refuse(408, _)), "{e:?}");
    }

    #[test]
    fn test_client_that_closes_without_a_byte_is_gone() {
        assert_eq!(send(b"", Limits::default()).unwrap_err(), ReadError::Gone);
    }

    #[test]
    fn test_garbage_is_400_and_endless_head_is_431() {
        assert!(matches!(
            send(b"\x00\x01\x02 nonsense\r\n\r\n", Limits::default()),
            Err(ReadError::Refuse(400, _))
        ));
        let mut long = b"GET /api/v1/vmm.ping HTTP/1.1\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 10_000));
        assert!(matches!(
            send(&long, Limits::default()),
            Err(ReadError::Refuse(431, _))
        ));
    }

    #[test]
    fn test_chunked_body_is_411() {
        let e = send(
            b"PUT /api/v1/vm.create HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            Limits::default(),
        );
        assert!(matches!(e, Err(ReadError::Refuse(411, _))));
    }

    #[test]
    fn test_passed_descriptors_arrive_with_the_request() {
        let (client, server) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let text = b"PUT /api/v1/vm.add-net HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        crate::client::send_with_fds(&client, text, &[file.as_raw_fd()]).unwrap();
        let r = read_request(&server, Limits::default()).unwrap();
        assert_eq!(r.fds.len(), 1);
    }

    #[test]
    fn test_response_has_status_length_and_json() {
        let (mut client, server) = UnixStream::pair().unwrap();
        write_response(&server, 200, Some(&serde_json::json!({"a": 1})), None).unwrap();
        drop(server);
        let mut text = String::new();
        client.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 7\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"a\":1}"), "{text}");
    }
}
