//! The device-path benchmark harness, shared by each device's bench binary
//! (`crates/devices/benches/nvme_path.rs`, `crates/virtio/benches/blk_path.rs`):
//! command-line options, guest RAM, an interrupt counter, CPU clocks, and
//! the closed-loop load generator that keeps `depth` 4 KiB requests in
//! flight through a [`DevicePath`] and measures IOPS, latency and CPU per
//! I/O.
//!
//! No VM is involved. The "guest driver" is the bench's main thread: it
//! writes rings in guest RAM and tells the device as a vCPU would (an NVMe
//! doorbell is a BAR write handled in place; a virtio notification is the
//! write to the queue's eventfd that KVM's ioeventfd would do), so what is
//! timed is the device model, its worker thread and its backend, not VM
//! exits.
//!
//! ```text
//!  main thread (guest driver)             device worker thread
//!  queue() requests ─ notify() ─────────▶ fetch, parse, map buffers ─▶ io_uring
//!  reap(): completions in guest RAM ◀──── complete, interrupt (counted) ◀┘
//! ```
//!
//! A support crate for bench binaries only: errors are `anyhow`.

#![deny(missing_docs)]

mod args;
mod figures;

pub use args::{Args, Reap, Role, Rw};
/// clap's parser trait, so that a bench binary calls [`Args::parse`]
/// without depending on clap itself.
pub use clap::Parser;
pub use figures::Figures;

use std::fs;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use backend::{BlockFile, DiskConfig};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// Bytes per request.
pub const IO_SIZE: u64 = 4096;

/// Guest RAM of `bytes` at guest address 0.
pub fn guest_ram(bytes: u64) -> Result<Arc<GuestMemoryMmap>> {
    let len = usize::try_from(bytes).context("guest RAM size")?;
    Ok(Arc::new(
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), len)]).context("guest RAM")?,
    ))
}

/// Sends the device's `tracing` output to standard error, filtered by
/// `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Sets up the seccomp filters `args.seccomp` asks for: device workers
/// started from now on enter their kind's filter, as in iovm.
pub fn sandbox(args: &Args) -> anyhow::Result<()> {
    if args.seccomp != sandbox::Mode::Off {
        sandbox::configure(args.seccomp, None, None)?;
    }
    Ok(())
}

/// Opens `args.file` as the device's disk: read-only for reads,
/// `O_DIRECT` as `--direct` asks (the file system permitting).
pub fn open_disk(args: &Args) -> Result<BlockFile> {
    BlockFile::open(&DiskConfig {
        path: args.file.clone(),
        readonly: args.rw == Rw::RandRead,
        direct: args.direct,
    })
    .with_context(|| format!("opening {}", args.file.display()))
}

/// Fills the `depth` 4 KiB data buffers at `at` with a pattern, so that
/// zero detection anywhere cannot help writes.
pub fn fill_data(mem: &GuestMemoryMmap, at: u64, depth: u16) -> Result<()> {
    let pattern: Vec<u8> = (0..u64::from(depth) * IO_SIZE)
        .map(|i| (i * 7 + 1) as u8)
        .collect();
    mem.write_slice(&pattern, GuestAddress(at))
        .context("guest RAM write")
}

/// Counts the interrupts a device sends and, in [`Reap::Irq`] mode, writes
/// an eventfd for each (what an irqfd costs). Each bench adapts it to its
/// device's interrupt port (NVMe's MSI vectors, virtio's `Signals`).
#[derive(Debug)]
pub struct Interrupts {
    sent: AtomicU64,
    irqfd: Option<EventFd>,
}

impl Interrupts {
    /// Counting only (`Reap::Poll`), or counting and signalling.
    pub fn new(reap: Reap) -> Result<Self> {
        let irqfd = match reap {
            Reap::Poll => None,
            Reap::Irq => Some(EventFd::new(0).context("interrupt eventfd")?),
        };
        Ok(Self {
            sent: AtomicU64::new(0),
            irqfd,
        })
    }

    /// The device sent one interrupt.
    pub fn send(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if let Some(fd) = &self.irqfd {
            let _ = fd.write(1);
        }
    }

    /// Interrupts sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Sleeps until an interrupt was sent since the last wait, or for at
    /// most 100 ms (returns at once in poll mode). The bound lets the
    /// driver's own deadline report a lost interrupt instead of hanging.
    pub fn wait(&self) {
        if let Some(fd) = &self.irqfd {
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll reads and writes one pollfd through the pointer,
            // which points at a live pollfd; the count says one.
            if unsafe { libc::poll(&mut p, 1, 100) } > 0 {
                let _ = fd.read();
            }
        }
    }
}

fn timeval_ns(t: libc::timeval) -> u64 {
    (t.tv_sec as u64) * 1_000_000_000 + (t.tv_usec as u64) * 1000
}

fn rusage_ns(who: libc::c_int) -> u64 {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage through the pointer, which points
    // at a live, writable rusage.
    let r = unsafe { libc::getrusage(who, &mut ru) };
    if r != 0 {
        return 0;
    }
    timeval_ns(ru.ru_utime) + timeval_ns(ru.ru_stime)
}

/// User + system CPU time of the whole process, every thread (also those
/// that exited, such as io_uring's io-wq workers), in ns.
pub fn process_cpu_ns() -> u64 {
    rusage_ns(libc::RUSAGE_SELF)
}

/// User + system CPU time of the calling thread, in ns.
pub fn this_thread_cpu_ns() -> u64 {
    rusage_ns(libc::RUSAGE_THREAD)
}

/// The thread of this process named `name` (as `comm` shows it).
pub fn find_thread(name: &str) -> Option<u32> {
    fs::read_dir("/proc/self/task").ok()?.find_map(|e| {
        let e = e.ok()?;
        let comm = fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim_end() == name)
            .then(|| e.file_name().to_str()?.parse().ok())
            .flatten()
    })
}

/// CPU time of thread `tid` of this process, in ns: from `schedstat`
/// (ns on the CPU), else from `stat` (utime + stime, in clock ticks).
pub fn thread_cpu_ns(tid: u32) -> Option<u64> {
    let dir = PathBuf::from(format!("/proc/self/task/{tid}"));
    if let Ok(s) = fs::read_to_string(dir.join("schedstat")) {
        if let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok()) {
            return Some(ns);
        }
    }
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    // Fields after the parenthesised command; utime and stime are the 14th
    // and 15th of the line, the 12th and 13th after ")".
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf takes no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

/// xorshift64*: cheap, reproducible random offsets.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a nonzero seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A random [`IO_SIZE`]-aligned byte offset of a request inside `bytes`.
    pub fn offset(&mut self, bytes: u64) -> u64 {
        (self.next_u64() % (bytes / IO_SIZE)) * IO_SIZE
    }
}

/// One device's data path as the guest driver sees it: one submission and
/// one completion ring (an NVMe SQ/CQ pair, a virtqueue's avail/used rings),
/// `depth` request slots each with its own 4 KiB buffer in guest RAM.
pub trait DevicePath {
    /// Short name in the report (`nvme`, `virtio-blk`).
    fn name(&self) -> &'static str;

    /// Name of the device's I/O thread, whose CPU time is reported apart.
    fn worker_thread(&self) -> &'static str;

    /// Writes request `slot` (a 4 KiB transfer at byte `offset`) into the
    /// submission ring without telling the device.
    fn queue(&mut self, slot: u16, rw: Rw, offset: u64) -> Result<()>;

    /// Makes every queued request visible to the device and tells it, if
    /// it needs telling (NVMe: always, one SQ doorbell write; virtio: a
    /// notification only where the device's event index or flags ask for
    /// one). Returns whether the device was told.
    fn notify(&mut self) -> Result<bool>;

    /// Appends the slots of finished requests to `done` and, if there were
    /// any, hands the ring space back to the device (NVMe: the CQ head
    /// through its shadow doorbell, and the doorbell itself only when the
    /// EventIdx asks; virtio: nothing to write). A request that failed is
    /// an error.
    fn reap(&mut self, done: &mut Vec<u16>) -> Result<()>;
}

/// Clocks and counters at one instant.
#[derive(Clone, Copy, Debug)]
struct Snapshot {
    at: Instant,
    process: u64,
    driver: u64,
    worker: Option<u64>,
    interrupts: u64,
}

impl Snapshot {
    fn take(worker: Option<u32>, interrupts: &Interrupts) -> Self {
        Self {
            at: Instant::now(),
            process: process_cpu_ns(),
            driver: this_thread_cpu_ns(),
            worker: worker.and_then(thread_cpu_ns),
            interrupts: interrupts.sent(),
        }
    }
}

/// What one measured window gave.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Length of the window.
    pub seconds: f64,
    /// Requests completed in it.
    pub ios: u64,
    /// Sum of their latencies (queued in the ring → seen completed), ns.
    pub latency_ns: u128,
    /// Process CPU over the window, ns.
    pub process_ns: u64,
    /// The driver thread's CPU, ns.
    pub driver_ns: u64,
    /// The device worker's CPU, ns, if its thread was found.
    pub worker_ns: Option<u64>,
    /// Interrupt messages sent.
    pub interrupts: u64,
    /// Submission doorbell writes (virtio: notifications sent).
    pub notifies: u64,
    /// [`DevicePath::notify`] calls (one per batch of resubmissions).
    pub notify_calls: u64,
    /// Batches of completions reaped (NVMe: completion doorbell writes).
    pub reaps: u64,
    /// Wall time of [`DevicePath::notify`] and of [`DevicePath::reap`]
    /// calls that found completions, ns: long when the device holds its
    /// lock.
    pub doorbell_ns: u128,
}

/// Keeps `args.depth` requests in flight through `path` for the warm-up
/// and then `args.seconds`, resubmitting each slot as soon as it completes
/// (at a new random offset inside `bytes`); then drains.
pub fn run(
    path: &mut dyn DevicePath,
    interrupts: &Interrupts,
    args: &Args,
    bytes: u64,
) -> Result<Measured> {
    if bytes < IO_SIZE {
        bail!("the file holds no 4 KiB block");
    }
    let depth = usize::from(args.depth);
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    let mut issued = vec![start; depth];
    for slot in 0..args.depth {
        path.queue(slot, args.rw, rng.offset(bytes))?;
    }
    path.notify()?;
    let mut in_flight = depth;
    let mut done = Vec::with_capacity(depth);
    let mut m = Measured::default();
    let warm_end = start + Duration::from_secs_f64(args.warmup);
    let mut window: Option<(Snapshot, Instant)> = None;
    let mut worker = None;
    let mut stop: Option<Instant> = None;
    loop {
        let before = Instant::now();
        path.reap(&mut done)?;
        let now = Instant::now();
        if done.is_empty() {
            if stop.is_some() && in_flight == 0 {
                break;
            }
            if stop.is_some_and(|s| now > s + Duration::from_secs(30)) {
                bail!("{in_flight} requests did not complete within 30 s");
            }
            match args.reap {
                Reap::Irq if in_flight > 0 => interrupts.wait(),
                _ => std::hint::spin_loop(),
            }
        } else {
            in_flight -= done.len();
            let counting = window.is_some() && stop.is_none();
            if counting {
                m.reaps += 1;
                m.doorbell_ns += now.duration_since(before).as_nanos();
            }
            for &slot in &done {
                let s = usize::from(slot);
                if counting {
                    m.ios += 1;
                    m.latency_ns += now.duration_since(issued[s]).as_nanos();
                }
                if stop.is_none() {
                    path.queue(slot, args.rw, rng.offset(bytes))?;
                    issued[s] = now;
                    in_flight += 1;
                }
            }
            if stop.is_none() {
                let t = Instant::now();
                let told = path.notify()?;
                if counting {
                    m.notifies += u64::from(told);
                    m.notify_calls += 1;
                    m.doorbell_ns += t.elapsed().as_nanos();
                }
            }
            done.clear();
        }
        match (window, stop) {
            (None, _) if now >= warm_end => {
                // Looked up once the load runs: a thread names itself when
                // it first runs, which on a busy host can be late.
                worker = find_thread(path.worker_thread());
                if worker.is_none() {
                    eprintln!(
                        "{}: no thread named {}: device CPU not reported",
                        path.name(),
                        path.worker_thread()
                    );
                }
                let s = Snapshot::take(worker, interrupts);
                window = Some((s, s.at + Duration::from_secs_f64(args.seconds)));
            }
            (Some((s0, end)), None) if now >= end => {
                let s1 = Snapshot::take(worker, interrupts);
                m.seconds = s1.at.duration_since(s0.at).as_secs_f64();
                m.process_ns = s1.process - s0.process;
                m.driver_ns = s1.driver - s0.driver;
                m.worker_ns = s0.worker.zip(s1.worker).map(|(a, b)| b - a);
                m.interrupts = s1.interrupts - s0.interrupts;
                stop = Some(now);
            }
            _ => {}
        }
    }
    Ok(m)
}

/// What the report says about the run besides the figures.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// Device path name.
    pub device: &'static str,
    /// Whether the backend got O_DIRECT.
    pub direct: bool,
    /// The logical block size the device reported to the driver.
    pub block_size: u32,
}

/// One line for people.
pub fn summary(args: &Args, ctx: &RunInfo, m: &Measured) -> String {
    let ios = m.ios.max(1) as f64;
    format!(
        "{} {} depth {} ({}, {}): {:.0} IOPS, mean latency {:.1} us, CPU per I/O {:.0} ns \
         (device worker {}, driver {:.0}), {:.2} interrupts per I/O, {:.1} I/Os per doorbell, \
         {:.1} us per notify or reap call",
        ctx.device,
        args.rw.id(),
        args.depth,
        if ctx.direct { "O_DIRECT" } else { "buffered" },
        args.reap.id(),
        m.ios as f64 / m.seconds,
        m.latency_ns as f64 / ios / 1000.0,
        m.process_ns as f64 / ios,
        m.worker_ns
            .map_or_else(|| "?".into(), |w| format!("{:.0}", w as f64 / ios)),
        m.driver_ns as f64 / ios,
        m.interrupts as f64 / ios,
        ios / m.notifies.max(1) as f64,
        m.doorbell_ns as f64 / (m.notify_calls + m.reaps).max(1) as f64 / 1000.0,
    )
}

/// Prints the summary and writes the JSON report if asked.
pub fn report(args: &Args, ctx: &RunInfo, m: &Measured) -> Result<()> {
    println!("{}", summary(args, ctx, m));
    if let Some(out) = &args.json {
        let text = Figures::new(args, ctx, m).to_json()?;
        fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rng_offset_is_aligned_and_inside() {
        let mut rng = Rng::new(7);

        let offsets: Vec<u64> = (0..1000).map(|_| rng.offset(64 * IO_SIZE)).collect();

        assert!(offsets
            .iter()
            .all(|o| o % IO_SIZE == 0 && *o < 64 * IO_SIZE));
    }
}
