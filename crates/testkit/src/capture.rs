//! Collecting a child's output while it runs: into memory, optionally a log file, and
//! optionally streamed line by line to stderr or stdout with a prefix.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Where a [`crate::Batch`] streams consoles while they run, line by line, each line
/// prefixed with `[<run name>] ` (direct mode) or `[testhost] ` (test host mode: the whole
/// test host console, guests' consoles included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stream {
    /// Not streamed; the results still carry the consoles.
    #[default]
    Off,
    /// To standard error (what `IOVM_TEST_VERBOSE=1` selects).
    Stderr,
    /// To standard output.
    Stdout,
}

/// `text` without terminal control sequences (escape sequences such as SeaBIOS's
/// `ESC c` terminal reset and `ESC [2J` screen clear, and other control characters but tab
/// and newline), so that streaming a console cannot disturb the terminal it goes to.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            // ESC: a CSI sequence (parameters, then one final byte in @..~), or a
            // two-character sequence (ESC c, ESC 7, ...). A line end always stays.
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if c == '\n' {
                            out.push(c);
                        }
                        if c == '\n' || ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some('\n') => out.push('\n'),
                _ => {}
            },
            '\t' | '\n' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

impl Stream {
    fn write_line(self, prefix: &str, text: &str) {
        let line = format!("{prefix}{}", printable(text));
        // Best effort: a closed stdout or stderr must not stop the capture.
        match self {
            Stream::Off => {}
            Stream::Stderr => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(line.as_bytes());
                let _ = out.flush();
            }
        }
    }
}

/// What the pumps of one child share.
#[derive(Debug, Default)]
struct State {
    /// Everything read so far.
    bytes: Vec<u8>,
    /// Pumps started and not yet at end of file.
    open: usize,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Notified whenever `state` changes (more output, a pump at end of file).
    changed: Condvar,
}

/// Shared output buffer of one child.
#[derive(Debug, Clone, Default)]
pub(crate) struct Capture {
    shared: Arc<Shared>,
}

impl Capture {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A pump that panicked leaves valid bytes behind: keep using them.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes captured so far.
    pub(crate) fn len(&self) -> usize {
        self.lock().bytes.len()
    }

    /// Starts a thread that copies `from` into the buffer (and `log`, and to `stream` with
    /// `prefix` before each line) until end of file.
    pub(crate) fn pump(
        &self,
        mut from: impl Read + Send + 'static,
        mut log: Option<File>,
        stream: Stream,
        prefix: String,
    ) -> JoinHandle<()> {
        // Counted before the thread starts, so that a waiter started after `pump` returns
        // never sees the capture as finished too early.
        self.lock().open += 1;
        let capture = self.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            let mut pending: Vec<u8> = Vec::new();
            loop {
                let n = match from.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let data = &chunk[..n];
                capture.lock().bytes.extend_from_slice(data);
                capture.shared.changed.notify_all();
                if let Some(f) = log.as_mut() {
                    // Best effort: the in-memory copy is what the results use.
                    let _ = f.write_all(data);
                }
                if stream != Stream::Off {
                    pending.extend_from_slice(data);
                    while let Some(pos) = pending.iter().position(|&c| c == b'\n') {
                        let line: Vec<u8> = pending.drain(..=pos).collect();
                        let text = String::from_utf8_lossy(&line);
                        stream.write_line(&prefix, &text.replace('\r', ""));
                    }
                }
            }
            if stream != Stream::Off && !pending.is_empty() {
                let text = String::from_utf8_lossy(&pending);
                stream.write_line(&prefix, &format!("{}\n", text.replace('\r', "")));
            }
            capture.lock().open -= 1;
            capture.shared.changed.notify_all();
        })
    }

    /// Blocks until the output contains `needle` (true) or every pump has reached end of
    /// file without it (false). Call it after starting the pumps.
    pub(crate) fn wait_for(&self, needle: &str) -> bool {
        let needle = needle.as_bytes();
        if needle.is_empty() {
            return true;
        }
        let mut searched: usize = 0;
        let mut state = self.lock();
        loop {
            // Only the new bytes, plus enough before them for a needle split across reads.
            let from = searched.saturating_sub(needle.len().saturating_sub(1));
            if state.bytes[from..]
                .windows(needle.len())
                .any(|w| w == needle)
            {
                return true;
            }
            searched = state.bytes.len();
            if state.open == 0 {
                return false;
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Blocks until every pump has reached end of file (the child closed its output,
    /// normally by exiting).
    pub(crate) fn wait_closed(&self) {
        let mut state = self.lock();
        while state.open > 0 {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// The output so far as text, `\r` removed.
    pub(crate) fn text(&self) -> String {
        let bytes = self.lock().bytes.clone();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }
}

/// True if `IOVM_TEST_VERBOSE=1`.
pub(crate) fn verbose_env() -> bool {
    std::env::var("IOVM_TEST_VERBOSE").is_ok_and(|v| v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_printable_drops_escape_sequences_and_controls() {
        let seabios = "\u{1b}c\u{1b}[?7l\u{1b}[2J\u{1b}[0mSeaBIOS (version 1.16)\r\n";

        assert_eq!(printable(seabios), "SeaBIOS (version 1.16)\n");
        assert_eq!(printable("a\tb\u{7}c\n"), "a\tbc\n");
        assert_eq!(printable("x\u{1b}[12\n"), "x\n");
        assert_eq!(printable("x\u{1b}\n"), "x\n");
    }

    /// A reader handing out `parts` one per read, each after `delay`.
    struct Slow {
        parts: Vec<&'static [u8]>,
        delay: std::time::Duration,
    }

    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.delay);
            if self.parts.is_empty() {
                return Ok(0);
            }
            let part = self.parts.remove(0);
            buf[..part.len()].copy_from_slice(part);
            Ok(part.len())
        }
    }

    #[test]
    fn test_wait_for_finds_needle_split_across_reads() {
        let capture = Capture::default();
        let parts = vec![
            &b"noise\nIOVM-GUEST: bo"[..],
            b"ot done uptime=1.0\n",
            b"$ ",
        ];
        let delay = std::time::Duration::from_millis(20);
        let pump = capture.pump(Slow { parts, delay }, None, Stream::Off, String::new());

        let found = capture.wait_for("IOVM-GUEST: boot done uptime=");

        assert!(found);
        capture.wait_closed();
        pump.join().unwrap();
        assert!(capture.text().ends_with("$ "));
    }

    #[test]
    fn test_wait_for_false_when_output_ends_without_needle() {
        let capture = Capture::default();
        let parts = vec![&b"kernel panic\n"[..]];
        let delay = std::time::Duration::from_millis(10);
        let pump = capture.pump(Slow { parts, delay }, None, Stream::Off, String::new());

        let found = capture.wait_for("boot done");

        assert!(!found);
        pump.join().unwrap();
    }
}
