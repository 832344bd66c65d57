//! `cargo xtask bench-probe` (hidden): runs one VMM process and times it from just before
//! it starts to the first appearance of a marker in its output and to its exit, and
//! optionally samples its memory a while after the marker. The bench script runs it where
//! the VMMs run (inside the test host, or on this machine), once per measured run:
//! busybox's shell has no sub-second clock, and a process reading the VMM's output in
//! large chunks disturbs the guest less than a shell loop would.
//!
//! The process's stdout (the guest console) and stderr are kept in memory while it runs
//! and written to `--log` after, stdout first, then [`STDERR_HEADING`] and stderr (kept
//! apart: a VMM may write one stderr line in several pieces, which would land inside
//! console lines); the [`Record`] is appended to `--record`.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::marks::{MarkScan, Snapshot};
use super::record::{parse_smaps_rollup, Exit, Memory, Record};

/// The line between stdout and stderr in the log.
pub const STDERR_HEADING: &str = "==== stderr ====";

/// Options of `cargo xtask bench-probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The run's name, copied into the record.
    #[arg(long)]
    pub name: String,

    /// Seconds after which the process is killed (and the run marked `timeout`).
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    pub timeout: u64,

    /// Output text whose first appearance is timed.
    #[arg(long, value_name = "TEXT")]
    pub marker: String,

    /// Also sample /proc/PID/smaps_rollup this many milliseconds after the marker.
    #[arg(long, value_name = "MS")]
    pub sample_after: Option<u64>,

    /// Where to write the process's output.
    #[arg(long, value_name = "PATH")]
    pub log: PathBuf,

    /// File the record line is appended to.
    #[arg(long, value_name = "PATH")]
    pub record: PathBuf,

    /// Read KVM's exit counters in this debugfs directory, and the process's CPU time
    /// per thread from /proc, at every `IOVM-BENCH: mark NAME` line of the console (see
    /// [`super::marks`]).
    #[arg(long, value_name = "DIR", requires = "marks")]
    pub kvm_stats: Option<PathBuf>,

    /// Where to write the counters and CPU times read at marks, one line per mark.
    #[arg(long, value_name = "PATH", requires = "kvm_stats")]
    pub marks: Option<PathBuf>,

    /// The command to run.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Finds the first occurrence of a marker in a stream fed in pieces.
#[derive(Debug)]
pub struct MarkerScan {
    marker: Vec<u8>,
    tail: Vec<u8>,
    found: bool,
}

impl MarkerScan {
    /// Scans for `marker` (which must not be empty).
    pub fn new(marker: &str) -> Self {
        MarkerScan {
            marker: marker.as_bytes().to_vec(),
            tail: Vec::new(),
            found: false,
        }
    }

    /// Feeds the next piece; true the first time the marker is complete.
    pub fn feed(&mut self, data: &[u8]) -> bool {
        if self.found || self.marker.is_empty() {
            return false;
        }
        self.tail.extend_from_slice(data);
        if self
            .tail
            .windows(self.marker.len())
            .any(|w| w == self.marker.as_slice())
        {
            self.found = true;
            self.tail = Vec::new();
            return true;
        }
        let keep = self.marker.len() - 1;
        if self.tail.len() > keep {
            self.tail.drain(..self.tail.len() - keep);
        }
        false
    }
}

enum Event {
    Marker(Instant),
    Eof,
}

/// Where a pump reads KVM's counters and the VMM's CPU time at console marks, and what
/// it read.
struct MarkSink {
    dir: PathBuf,
    pid: u32,
    scan: MarkScan,
    snaps: Arc<Mutex<Vec<Snapshot>>>,
}

/// Copies `from` into `console` until end of file, reporting the marker and the end,
/// and snapshotting KVM's counters and the VMM's CPU time at marks if `marks` is given.
fn pump(
    mut from: impl Read + Send + 'static,
    console: Arc<Mutex<Vec<u8>>>,
    marker: &str,
    events: Sender<Event>,
    mut marks: Option<MarkSink>,
) -> JoinHandle<()> {
    let mut scan = MarkerScan::new(marker);
    std::thread::spawn(move || {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            if scan.feed(&chunk[..n]) {
                let _ = events.send(Event::Marker(now));
            }
            if let Some(m) = marks.as_mut() {
                for name in m.scan.feed(&chunk[..n]) {
                    let snap = Snapshot::read(&name, &m.dir, m.pid);
                    lock(&m.snaps).push(snap);
                }
            }
            console
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(&chunk[..n]);
        }
        let _ = events.send(Event::Eof);
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1e3
}

/// Runs the probe; its exit status is 0 whenever a record was written.
pub fn run(args: &ProbeArgs) -> Result<i32> {
    let Some((program, rest)) = args.command.split_first() else {
        bail!("bench-probe: no command");
    };
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("bench-probe: starting {program}"))?;
    let snaps = Arc::new(Mutex::new(Vec::new()));
    let sink = args.kvm_stats.as_ref().map(|dir| MarkSink {
        dir: dir.clone(),
        pid: child.id(),
        scan: MarkScan::default(),
        snaps: Arc::clone(&snaps),
    });
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(pump(
            out,
            Arc::clone(&stdout),
            &args.marker,
            tx.clone(),
            sink,
        ));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(pump(
            err,
            Arc::clone(&stderr),
            &args.marker,
            tx.clone(),
            None,
        ));
    }
    drop(tx);

    let deadline = start + Duration::from_secs(args.timeout);
    let mut open = pumps.len();
    let mut marker_at = None;
    let mut sample_at = None;
    let mut memory: Option<Memory> = None;
    let mut timed_out = false;
    // Until the process has closed its output (it exits), or the deadline.
    while open > 0 {
        let wake = sample_at.map_or(deadline, |s: Instant| s.min(deadline));
        match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(Event::Marker(t)) => {
                if marker_at.is_none() {
                    marker_at = Some(t);
                    sample_at = args.sample_after.map(|d| t + Duration::from_millis(d));
                }
            }
            Ok(Event::Eof) => open -= 1,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                if sample_at.is_some_and(|s| now >= s) {
                    sample_at = None;
                    let path = format!("/proc/{}/smaps_rollup", child.id());
                    memory = std::fs::read_to_string(path)
                        .ok()
                        .and_then(|t| parse_smaps_rollup(&t));
                }
                if now >= deadline {
                    timed_out = true;
                    let _ = child.kill();
                    break;
                }
            }
        }
    }
    let status = child
        .wait()
        .context("bench-probe: waiting for the process")?;
    let end = Instant::now();
    for p in pumps {
        let _ = p.join();
    }
    let exit = if timed_out {
        Exit::TimedOut
    } else if let Some(code) = status.code() {
        Exit::Code(code)
    } else {
        use std::os::unix::process::ExitStatusExt;
        Exit::Signal(status.signal().unwrap_or(0))
    };
    let record = Record {
        name: args.name.clone(),
        exit,
        marker_ms: marker_at.map(|t| ms(start, t)),
        exit_ms: (!timed_out).then(|| ms(start, end)),
        memory,
    };

    let take = |buf: &Mutex<Vec<u8>>| {
        std::mem::take(
            &mut *buf
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    };
    let mut text = take(&stdout);
    if !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(format!("{STDERR_HEADING}\n").as_bytes());
    text.extend(take(&stderr));
    std::fs::write(&args.log, text)
        .with_context(|| format!("bench-probe: writing {}", args.log.display()))?;
    if let Some(path) = &args.marks {
        let text: String = lock(&snaps).iter().map(|s| s.to_line() + "\n").collect();
        std::fs::write(path, text)
            .with_context(|| format!("bench-probe: writing {}", path.display()))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.record)
        .with_context(|| format!("bench-probe: opening {}", args.record.display()))?;
    writeln!(file, "{}", record.to_line())
        .with_context(|| format!("bench-probe: writing {}", args.record.display()))?;
    println!("bench:   {}", summary(&record));
    Ok(0)
}

/// One line saying what a record holds, for the progress output.
pub fn summary(r: &Record) -> String {
    let secs = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{:.2} s", v / 1e3));
    let mut s = format!(
        "{}: init marker {}, exit {} ({})",
        r.name,
        secs(r.marker_ms),
        secs(r.exit_ms),
        r.exit
    );
    if let Some(m) = r.memory {
        s.push_str(&format!(
            ", RSS {:.1} MiB, PSS {:.1} MiB",
            m.rss_kb as f64 / 1024.0,
            m.pss_kb as f64 / 1024.0
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_marker_scan_across_pieces_once() {
        let mut scan = MarkerScan::new("boot done");

        assert!(!scan.feed(b"xx boot d"));
        assert!(scan.feed(b"one yy"));
        assert!(!scan.feed(b"boot done again"));
    }

    #[test]
    fn test_marker_scan_keeps_only_a_tail() {
        let mut scan = MarkerScan::new("abc");

        for _ in 0..1000 {
            assert!(!scan.feed(b"xxxxxxxxxxxxxxxxxxxxab"));
        }

        assert!(scan.tail.len() <= 2);
        assert!(scan.feed(b"c"));
    }

    #[test]
    fn test_probe_times_marker_and_exit_of_a_shell() {
        let dir = std::env::temp_dir().join(format!("bench-probe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let args = ProbeArgs {
            name: "t.sh.1".into(),
            timeout: 20,
            marker: "READY".into(),
            sample_after: Some(50),
            log: dir.join("t.log"),
            record: dir.join("records.txt"),
            kvm_stats: None,
            marks: None,
            command: ["sh", "-c", "sleep 0.1; echo READY; sleep 0.3; echo bye >&2"]
                .map(String::from)
                .to_vec(),
        };

        run(&args).unwrap();

        let text = std::fs::read_to_string(&args.record).unwrap();
        let r = Record::parse(text.lines().next().unwrap()).unwrap();
        let log = std::fs::read_to_string(&args.log).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(log, "READY\n==== stderr ====\nbye\n");
        assert_eq!(r.exit, Exit::Code(0));
        let (m, e) = (r.marker_ms.unwrap(), r.exit_ms.unwrap());
        assert!((90.0..2000.0).contains(&m), "marker at {m} ms");
        assert!(e >= m + 250.0, "exit at {e} ms, marker at {m} ms");
        assert!(r.memory.is_some_and(|m| m.rss_kb > 0));
    }
}
