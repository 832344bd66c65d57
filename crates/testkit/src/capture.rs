//! Collecting a child's output while it runs: into memory, optionally a log file, and
//! optionally streamed line by line to stderr with a prefix.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Shared output buffer of one child.
#[derive(Debug, Clone, Default)]
pub(crate) struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl Capture {
    /// Starts a thread that copies `from` into the buffer (and `log`, and stderr with
    /// `prefix` when `stream`) until end of file.
    pub(crate) fn pump(
        &self,
        mut from: impl Read + Send + 'static,
        mut log: Option<File>,
        stream: Option<String>,
    ) -> JoinHandle<()> {
        let buf = Arc::clone(&self.buf);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            let mut pending: Vec<u8> = Vec::new();
            loop {
                let n = match from.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let data = &chunk[..n];
                if let Ok(mut b) = buf.lock() {
                    b.extend_from_slice(data);
                }
                if let Some(f) = log.as_mut() {
                    // Best effort: the in-memory copy is what the results use.
                    let _ = f.write_all(data);
                }
                if let Some(prefix) = &stream {
                    pending.extend_from_slice(data);
                    while let Some(pos) = pending.iter().position(|&c| c == b'\n') {
                        let line: Vec<u8> = pending.drain(..=pos).collect();
                        let text = String::from_utf8_lossy(&line);
                        eprint!("{prefix}{}", text.replace('\r', ""));
                    }
                }
            }
            if let (Some(prefix), false) = (&stream, pending.is_empty()) {
                eprintln!("{prefix}{}", String::from_utf8_lossy(&pending));
            }
        })
    }

    /// The output so far as text, `\r` removed.
    pub(crate) fn text(&self) -> String {
        let bytes = self.buf.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }
}

/// True if `IOVM_TEST_VERBOSE=1`.
pub(crate) fn verbose_env() -> bool {
    std::env::var("IOVM_TEST_VERBOSE").is_ok_and(|v| v == "1")
}
