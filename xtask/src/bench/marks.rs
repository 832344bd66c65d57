//! KVM exit counters and the VMM's CPU time read where the VMMs run, at marks the guest
//! prints.
//!
//! A guest script prints `IOVM-BENCH: mark <name>` lines on its console around the work
//! it measures (e.g. `randread-qd32.begin`, `randread-qd32.end`); the probe, reading the
//! VMM's console as it comes, reads KVM's global exit counters from debugfs
//! (`/sys/kernel/debug/kvm/`) and the VMM process's CPU time, per thread
//! ([`ProcessCpu`]), at each mark and keeps a [`Snapshot`]. Only one VM runs at a time,
//! so the global counters are that VM's; the difference between a job's two marks is
//! what the job cost (give or take the few exits of printing the mark line and of the
//! guest's idle ticks).
//!
//! The probe writes the snapshots one a line (`mark=<name> exits=N io_exits=N …
//! clk_tck=N proc=… task=…`) to the file its `--marks` option names.

use std::path::Path;

use super::proc_stat::ProcessCpu;

/// What a mark line starts with (after anything else on the console line).
pub const MARK: &str = "IOVM-BENCH: mark ";

/// The debugfs counters read at each mark, those present: every exit; port I/O exits
/// (all of them, handled in the kernel or not); MMIO accesses emulated for user space
/// (not those an ioeventfd absorbs); `hlt` exits (the vCPU idling, waiting for an
/// interrupt); exits for a host interrupt (`irq_exits`: also the kick that makes a
/// running vCPU take a new interrupt); interrupts injected into the guest; instructions
/// KVM emulated. Each is a row of the block report ([`super::block::Metric`]).
pub const COUNTERS: [&str; 7] = [
    "exits",
    "io_exits",
    "mmio_exits",
    "halt_exits",
    "irq_exits",
    "irq_injections",
    "insn_emulation",
];

/// The counters and the VMM's CPU time at one mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The mark's name.
    pub name: String,
    /// `(counter, value)` for each of [`COUNTERS`] that could be read.
    pub counters: Vec<(String, u64)>,
    /// The VMM process's CPU time, if it could be read.
    pub cpu: Option<ProcessCpu>,
}

impl Snapshot {
    /// Reads the counters in the debugfs KVM directory `dir` and the CPU time of
    /// process `pid` (the VMM).
    pub fn read(name: &str, dir: &Path, pid: u32) -> Snapshot {
        let counters = COUNTERS
            .iter()
            .filter_map(|c| {
                let text = std::fs::read_to_string(dir.join(c)).ok()?;
                Some(((*c).to_owned(), text.trim().parse().ok()?))
            })
            .collect();
        Snapshot {
            name: name.to_owned(),
            counters,
            cpu: ProcessCpu::read(pid),
        }
    }

    /// One line: `mark=<name> exits=N …`, then the CPU time's words.
    pub fn to_line(&self) -> String {
        let mut s = format!("mark={}", self.name);
        for (c, v) in &self.counters {
            s.push_str(&format!(" {c}={v}"));
        }
        for w in self.cpu.iter().flat_map(ProcessCpu::to_words) {
            s.push(' ');
            s.push_str(&w);
        }
        s
    }

    /// Parses a line of [`Snapshot::to_line`]. Counters are the words of
    /// [`COUNTERS`]' names.
    pub fn parse(line: &str) -> Option<Snapshot> {
        let mut words = line.split_whitespace();
        let name = words.next()?.strip_prefix("mark=")?.to_owned();
        let pairs: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
        let counters = pairs
            .iter()
            .filter(|(k, _)| COUNTERS.contains(k))
            .filter_map(|(k, v)| Some(((*k).to_owned(), v.parse().ok()?)))
            .collect();
        Some(Snapshot {
            name,
            counters,
            cpu: ProcessCpu::from_words(pairs.into_iter()),
        })
    }

    fn get(&self, counter: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(c, _)| c == counter)
            .map(|(_, v)| *v)
    }
}

/// Parses a marks file.
pub fn parse_all(text: &str) -> Vec<Snapshot> {
    text.lines().filter_map(Snapshot::parse).collect()
}

/// The snapshots at marks `<job>.begin` and `<job>.end`.
pub fn window<'a>(snaps: &'a [Snapshot], job: &str) -> Option<(&'a Snapshot, &'a Snapshot)> {
    let at = |m: String| snaps.iter().find(|s| s.name == m);
    Some((at(format!("{job}.begin"))?, at(format!("{job}.end"))?))
}

/// How much `counter` grew from mark `<job>.begin` to mark `<job>.end`.
pub fn delta(snaps: &[Snapshot], job: &str, counter: &str) -> Option<u64> {
    let (a, b) = window(snaps, job)?;
    b.get(counter)?.checked_sub(a.get(counter)?)
}

/// Finds mark lines in a console fed in pieces.
#[derive(Debug, Default)]
pub struct MarkScan {
    line: Vec<u8>,
}

impl MarkScan {
    /// Feeds the next piece; returns the names of the marks whose lines it completed.
    pub fn feed(&mut self, data: &[u8]) -> Vec<String> {
        let mut found = Vec::new();
        for &b in data {
            if b != b'\n' {
                // A console line cannot be longer than this in a mark; keep memory bounded.
                if self.line.len() < 4096 {
                    self.line.push(b);
                }
                continue;
            }
            let text = String::from_utf8_lossy(&self.line);
            if let Some((_, rest)) = text.split_once(MARK) {
                if let Some(name) = rest.split_whitespace().next() {
                    found.push(name.to_owned());
                }
            }
            self.line.clear();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mark_scan_finds_names_across_pieces() {
        let mut scan = MarkScan::default();

        let a = scan.feed(b"boot\r\nIOVM-BENCH: mark qd1.be");
        let b = scan.feed(b"gin\r\nfio output\nIOVM-BENCH: mark qd1.end\n");

        assert!(a.is_empty());
        assert_eq!(b, ["qd1.begin", "qd1.end"]);
    }

    #[test]
    fn test_snapshot_line_round_trips_and_deltas() {
        let snaps = [
            Snapshot {
                name: "j.begin".into(),
                counters: vec![("exits".into(), 100), ("io_exits".into(), 7)],
                cpu: None,
            },
            Snapshot {
                name: "j.end".into(),
                counters: vec![("exits".into(), 1100), ("io_exits".into(), 7)],
                cpu: None,
            },
        ];
        let text: String = snaps.iter().map(|s| s.to_line() + "\n").collect();

        let back = parse_all(&text);

        assert_eq!(back, snaps);
        assert_eq!(delta(&back, "j", "exits"), Some(1000));
        assert_eq!(delta(&back, "j", "io_exits"), Some(0));
        assert_eq!(delta(&back, "j", "mmio_exits"), None);
        assert_eq!(delta(&back, "k", "exits"), None);
    }

    #[test]
    fn test_read_counters_from_a_directory() {
        let dir = std::env::temp_dir().join(format!("iovm-marks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("exits"), "12345\n").unwrap();
        std::fs::write(dir.join("mmio_exits"), "67\n").unwrap();

        let s = Snapshot::read("m", &dir, std::process::id());
        let _ = std::fs::remove_dir_all(&dir);

        assert_eq!(
            s.counters,
            vec![("exits".into(), 12345), ("mmio_exits".into(), 67)]
        );
        assert_eq!(s.cpu.map(|c| c.pid), Some(std::process::id()));
    }

    #[test]
    fn test_snapshot_line_with_cpu_round_trips() {
        let line = "mark=net.end exits=9 clk_tck=100 proc=7:50:20:30 \
                    task=7:10:5:0:qemu-system-x86 task=9:40:15:30:CPU%200/KVM";

        let s = Snapshot::parse(line).unwrap();
        let cpu = s.cpu.as_ref().unwrap();

        assert_eq!(s.counters, vec![("exits".into(), 9)]);
        assert_eq!((cpu.pid, cpu.ticks_per_second), (7, 100));
        assert_eq!(cpu.threads[1].comm, "CPU 0/KVM");
        assert_eq!(cpu.threads[1].times.guest, 30);
        assert_eq!(
            s.to_line(),
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        assert_eq!(Snapshot::parse("mark=a exits=1").unwrap().cpu, None);
    }
}
