//! The host end of the guest's serial console: standard input/output, a file,
//! a Unix socket, or nothing. One [`Console`] lives as long as the iovm
//! process, across guest restarts; each new machine attaches its UART to it.
//!
//! Input is handed to the UART only when the guest's driver has enabled the
//! receive interrupt and the FIFO has room (see
//! [`devices::legacy::Serial::accepts_input`]), so bytes typed before the
//! guest's shell opens the port are kept, not lost.
//!
//! On an interactive terminal, `Ctrl-A x` ends iovm (the guest cannot see that
//! sequence; `Ctrl-A Ctrl-A` sends one `Ctrl-A`).

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use devices::legacy::Serial;

use crate::config::SerialConfig;
use crate::vm::VmEvent;

/// The UART the console is currently attached to.
pub type SharedSerial = Arc<Mutex<Serial>>;

const CTRL_A: u8 = 0x01;
const INPUT_RETRY: Duration = Duration::from_millis(5);

/// Why the console could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The output file could not be created.
    #[error("cannot open serial output file {0}")]
    File(PathBuf, #[source] std::io::Error),
    /// Another process is listening on the socket path.
    #[error(
        "serial socket {0} is in use by another process; pick another path or stop that process"
    )]
    SocketInUse(PathBuf),
    /// Something else is at the socket path.
    #[error("serial socket path {0} exists and is not a socket; remove it or pick another path")]
    NotASocket(PathBuf),
    /// Binding the socket failed.
    #[error("cannot listen on serial socket {0}")]
    Socket(PathBuf, #[source] std::io::Error),
}

/// A guest device that takes the console's input: COM1, or a virtio
/// console when the machine has one.
pub trait ConsoleInput: Send + Sync {
    /// Takes as much of `data` as the guest can accept now; returns how
    /// many bytes it took (0: try again later).
    fn enqueue_input(&self, data: &[u8]) -> usize;
}

impl ConsoleInput for Mutex<Serial> {
    fn enqueue_input(&self, data: &[u8]) -> usize {
        self.lock()
            .unwrap_or_else(|p| p.into_inner())
            .enqueue_input(data)
    }
}

#[derive(Default)]
struct Attachment {
    input: Option<Arc<dyn ConsoleInput>>,
    events: Option<Sender<VmEvent>>,
}

/// Watches console output for a marker and reports when it first appears.
///
/// The time is taken when the marker is complete; the report waits for the
/// end of that console line, so it never splits the guest's line in two.
#[derive(Debug)]
pub struct MarkerWatch {
    marker: Vec<u8>,
    tail: Vec<u8>,
    start: Instant,
    seen_at: Option<Duration>,
    reported: bool,
}

impl MarkerWatch {
    /// Watches for `marker`, timing from `start`.
    pub fn new(marker: &str, start: Instant) -> Self {
        Self {
            marker: marker.as_bytes().to_vec(),
            tail: Vec::new(),
            start,
            seen_at: None,
            reported: false,
        }
    }

    /// Feeds output; returns the elapsed time once, after the marker is
    /// complete and the line it is on has ended.
    pub fn feed(&mut self, buf: &[u8]) -> Option<Duration> {
        if self.reported || self.marker.is_empty() {
            return None;
        }
        let mut rest = buf;
        if self.seen_at.is_none() {
            self.tail.extend_from_slice(buf);
            let Some(pos) = self
                .tail
                .windows(self.marker.len())
                .position(|w| w == self.marker.as_slice())
            else {
                let keep = self.marker.len() - 1;
                if self.tail.len() > keep {
                    self.tail.drain(..self.tail.len() - keep);
                }
                return None;
            };
            self.seen_at = Some(self.start.elapsed());
            let after_marker = self.tail.len() - (pos + self.marker.len());
            rest = &buf[buf.len() - after_marker.min(buf.len())..];
            self.tail = Vec::new();
        }
        if rest.contains(&b'\n') {
            self.reported = true;
            return self.seen_at;
        }
        None
    }
}

/// Writes one whole line to standard error in a single write, so it does not
/// interleave with console output sharing the same pipe.
pub fn report_line(text: &str) {
    let line = format!("{text}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Output sink shared by the UART and the console.
#[derive(Clone)]
struct SharedOut {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    watch: Arc<Mutex<Option<MarkerWatch>>>,
}

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A console that cannot take output must not stop the guest.
        if out.write_all(buf).and_then(|()| out.flush()).is_err() {
            tracing::trace!("serial output dropped");
        }
        drop(out);
        let mut watch = self.watch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(elapsed) = watch.as_mut().and_then(|w| w.feed(buf)) {
            report_line(&format!(
                "iovm: timing: init marker seen {:.1} ms after start",
                elapsed.as_secs_f64() * 1e3
            ));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

/// Writes to whichever socket client is connected; drops output otherwise.
#[derive(Clone, Default)]
struct SocketOut(Arc<Mutex<Option<UnixStream>>>);

impl Write for SocketOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut client = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stream) = client.as_mut() {
            if stream.write_all(buf).is_err() {
                *client = None;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The host end of COM1.
pub struct Console {
    out: SharedOut,
    attachment: Arc<Mutex<Attachment>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Console {
    /// Opens the console `cfg` names; `interactive` enables the `Ctrl-A x`
    /// escape on standard input.
    pub fn open(cfg: &SerialConfig, interactive: bool) -> Result<Self, ConsoleError> {
        let attachment = Arc::new(Mutex::new(Attachment::default()));
        let out: Box<dyn Write + Send> = match cfg {
            SerialConfig::Stdio => {
                let att = attachment.clone();
                spawn_input("iovm-stdin", std::io::stdin(), att, interactive);
                Box::new(std::io::stdout())
            }
            SerialConfig::File(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(path)
                    .map_err(|e| ConsoleError::File(path.clone(), e))?,
            ),
            SerialConfig::Socket(path) => Box::new(listen(path, attachment.clone())?),
            SerialConfig::Off => Box::new(std::io::sink()),
        };
        Ok(Self {
            out: SharedOut {
                out: Arc::new(Mutex::new(out)),
                watch: Arc::new(Mutex::new(None)),
            },
            attachment,
        })
    }

    /// Reports on standard error when `marker` first appears in the output.
    pub fn watch_for(&self, marker: String, start: Instant) {
        *self.out.watch.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(MarkerWatch::new(&marker, start));
    }

    /// A writer for a new UART's output.
    pub fn writer(&self) -> Box<dyn Write + Send> {
        Box::new(self.out.clone())
    }

    /// Routes input to `serial` and the escape sequence to `events`.
    pub fn attach(&self, serial: SharedSerial, events: Sender<VmEvent>) {
        let mut a = self.attachment.lock().unwrap_or_else(|p| p.into_inner());
        a.input = Some(serial);
        a.events = Some(events);
    }

    /// Routes input to `input` instead (a virtio console: the guest's
    /// `hvc0` then gets what the user types; COM1 keeps its output).
    pub fn redirect_input(&self, input: Arc<dyn ConsoleInput>) {
        self.attachment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .input = Some(input);
    }

    /// Stops routing input (the machine is going away).
    pub fn detach(&self) {
        *self.attachment.lock().unwrap_or_else(|p| p.into_inner()) = Attachment::default();
    }

    /// Flushes pending output.
    pub fn flush(&self) {
        let _ = self.out.clone().flush();
    }
}

fn listen(path: &Path, attachment: Arc<Mutex<Attachment>>) -> Result<SocketOut, ConsoleError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(ConsoleError::NotASocket(path.to_path_buf()));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(ConsoleError::SocketInUse(path.to_path_buf()));
        }
        // A socket nobody listens on is left over from an earlier run.
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|e| match e.kind() {
        ErrorKind::AddrInUse => ConsoleError::SocketInUse(path.to_path_buf()),
        _ => ConsoleError::Socket(path.to_path_buf(), e),
    })?;
    let out = SocketOut::default();
    let client_slot = out.0.clone();
    thread::Builder::new()
        .name("iovm-serial-accept".into())
        .spawn(move || {
            sandbox::enter(sandbox::ThreadKind::Console);
            for stream in listener.incoming().flatten() {
                let Ok(reader) = stream.try_clone() else {
                    continue;
                };
                *client_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream);
                spawn_input("iovm-serial-client", reader, attachment.clone(), false);
            }
        })
        .map_err(|e| ConsoleError::Socket(path.to_path_buf(), e))?;
    Ok(out)
}

fn spawn_input<R: Read + Send + 'static>(
    name: &str,
    reader: R,
    attachment: Arc<Mutex<Attachment>>,
    escape: bool,
) {
    let spawned = thread::Builder::new().name(name.into()).spawn(move || {
        sandbox::enter(sandbox::ThreadKind::Console);
        pump_input(reader, &attachment, escape)
    });
    if let Err(e) = spawned {
        tracing::warn!("no console input: cannot start input thread: {e}");
    }
}

/// Splits host input into what the guest gets and whether the user asked to
/// quit, handling the `Ctrl-A` escape across reads.
#[derive(Debug, Default)]
pub struct EscapeFilter {
    pending_ctrl_a: bool,
}

impl EscapeFilter {
    /// Filters `input`; returns the bytes for the guest and whether `Ctrl-A x` was seen.
    pub fn filter(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.pending_ctrl_a {
                self.pending_ctrl_a = false;
                match b {
                    b'x' | b'X' => return (out, true),
                    CTRL_A => out.push(CTRL_A),
                    other => out.extend_from_slice(&[CTRL_A, other]),
                }
            } else if b == CTRL_A {
                self.pending_ctrl_a = true;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

fn pump_input<R: Read>(mut reader: R, attachment: &Mutex<Attachment>, escape: bool) {
    let mut filter = EscapeFilter::default();
    let mut buf = [0u8; 256];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let (data, quit) = if escape {
            filter.filter(&buf[..n])
        } else {
            (buf[..n].to_vec(), false)
        };
        deliver(&data, attachment);
        if quit {
            let a = attachment.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(events) = &a.events {
                let _ = events.send(VmEvent::UserQuit);
            }
        }
    }
}

/// Hands `data` to the attached input device as fast as the guest takes it.
fn deliver(mut data: &[u8], attachment: &Mutex<Attachment>) {
    while !data.is_empty() {
        let input = attachment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .input
            .clone();
        let taken = input.map_or(0, |i| i.enqueue_input(data));
        data = &data[taken..];
        if taken == 0 {
            thread::sleep(INPUT_RETRY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_marker_watch_finds_marker_split_across_writes() {
        let mut w = MarkerWatch::new("boot done", Instant::now());
        assert!(w.feed(b"xx boot d").is_none());
        assert!(
            w.feed(b"one uptime=1").is_none(),
            "waits for the end of the line"
        );
        assert!(w.feed(b"2\r\n").is_some());
        assert!(w.feed(b"boot done\n").is_none(), "reported once");
    }

    #[test]
    fn test_marker_watch_reports_when_line_ends_in_same_write() {
        let mut w = MarkerWatch::new("boot done", Instant::now());
        assert!(w.feed(b"boot done uptime=3\n").is_some());
    }

    #[test]
    fn test_marker_watch_newline_before_marker_does_not_count() {
        let mut w = MarkerWatch::new("boot done", Instant::now());
        assert!(w.feed(b"line\nboot done").is_none());
        assert!(w.feed(b"\n").is_some());
    }

    #[test]
    fn test_escape_filter_passes_plain_input() {
        let mut f = EscapeFilter::default();
        assert_eq!(f.filter(b"ls -l\r"), (b"ls -l\r".to_vec(), false));
    }

    #[test]
    fn test_escape_filter_ctrl_a_x_quits_across_reads() {
        let mut f = EscapeFilter::default();
        assert_eq!(f.filter(b"ab\x01"), (b"ab".to_vec(), false));
        assert_eq!(f.filter(b"x"), (vec![], true));
    }

    #[test]
    fn test_escape_filter_double_ctrl_a_sends_one() {
        let mut f = EscapeFilter::default();
        assert_eq!(
            f.filter(b"\x01\x01\x01c"),
            (vec![CTRL_A, CTRL_A, b'c'], false)
        );
    }

    #[test]
    fn test_socket_in_use_is_refused() {
        let dir = std::env::temp_dir().join(format!("iovm-console-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let _first = Console::open(&SerialConfig::Socket(path.clone()), false).unwrap();
        let err = Console::open(&SerialConfig::Socket(path.clone()), false).unwrap_err();
        assert!(matches!(err, ConsoleError::SocketInUse(_)), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_socket_path_that_is_a_file_is_refused() {
        let path = std::env::temp_dir().join(format!("iovm-console-file-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let err = Console::open(&SerialConfig::Socket(path.clone()), false).unwrap_err();
        assert!(matches!(err, ConsoleError::NotASocket(_)), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
