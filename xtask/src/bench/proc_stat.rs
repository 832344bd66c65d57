//! The CPU time of a process and of each of its threads, read from `/proc/PID/stat` and
//! `/proc/PID/task/TID/stat` (fields 14 `utime`, 15 `stime` and 43 `guest_time`, in
//! clock ticks), and written as words of a marks line ([`super::marks`]).
//!
//! The kernel counts a vCPU thread's time in the guest as user time too, so
//! `utime + stime − guest_time` is the time a thread spent outside the guest: in the
//! VMM's own code and in the kernel on its behalf (KVM's exit handling included). The
//! process's line also holds the time of threads that have ended; a thread's line ends
//! with it.

use std::path::Path;

/// CPU time in clock ticks ([`ProcessCpu::ticks_per_second`] a second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Times {
    /// `utime` (field 14): user time, time in the guest included.
    pub user: u64,
    /// `stime` (field 15): system time.
    pub system: u64,
    /// `guest_time` (field 43): time running a guest's vCPU.
    pub guest: u64,
}

impl Times {
    /// Ticks outside the guest: user + system − guest. Signed: the kernel scales user
    /// and system time to the scheduler's exact run time but samples guest time at the
    /// tick, so a vCPU thread that runs little besides its guest, and wakes with the
    /// tick, can come out below zero.
    pub fn outside(self) -> i64 {
        self.user as i64 + self.system as i64 - self.guest as i64
    }
}

/// One stat line: a process's or a thread's id, name and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The process or thread id (field 1).
    pub id: u32,
    /// Its name (field 2, `comm`, without the parentheses; it may hold spaces and
    /// parentheses of its own).
    pub comm: String,
    /// Its CPU time.
    pub times: Times,
}

/// Parses a line of `/proc/PID/stat` or `/proc/PID/task/TID/stat`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let (id, rest) = line.split_once(" (")?;
    // The name ends at the last `)`: it may contain `)` itself, the fields after it not.
    let close = rest.rfind(')')?;
    let comm = &rest[..close];
    // Fields from 3 (`state`) on.
    let fields: Vec<&str> = rest[close + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        id: id.trim().parse().ok()?,
        comm: comm.to_owned(),
        times: Times {
            user: field(14)?,
            system: field(15)?,
            guest: field(43)?,
        },
    })
}

/// A process's CPU time at one moment: the whole process and each thread alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessCpu {
    /// The process id (its main thread's id).
    pub pid: u32,
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    pub ticks_per_second: u64,
    /// The whole process, threads that have ended included.
    pub process: Times,
    /// Each thread alive, by thread id.
    pub threads: Vec<Stat>,
}

fn read_stat(path: &Path) -> Option<Stat> {
    let bytes = std::fs::read(path).ok()?;
    parse_stat(&String::from_utf8_lossy(&bytes))
}

/// Clock ticks per second of the times in stat files.
fn ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf only reads a system value; it takes no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|&n| n > 0)
}

impl ProcessCpu {
    /// Reads process `pid`'s times and its threads' (`None` if it is gone). The
    /// process's line is read last, so that it holds at least what its threads' did.
    pub fn read(pid: u32) -> Option<ProcessCpu> {
        let dir = Path::new("/proc").join(pid.to_string());
        let mut threads: Vec<Stat> = std::fs::read_dir(dir.join("task"))
            .ok()?
            .filter_map(|e| read_stat(&e.ok()?.path().join("stat")))
            .collect();
        threads.sort_by_key(|t| t.id);
        let process = read_stat(&dir.join("stat"))?.times;
        Some(ProcessCpu {
            pid,
            ticks_per_second: ticks_per_second()?,
            process,
            threads,
        })
    }

    /// Words for a marks line: `clk_tck=N proc=PID:U:S:G` and a
    /// `task=TID:U:S:G:NAME` per thread, the name escaped ([`escape`]).
    pub fn to_words(&self) -> Vec<String> {
        let t = |t: Times| format!("{}:{}:{}", t.user, t.system, t.guest);
        let mut out = vec![
            format!("clk_tck={}", self.ticks_per_second),
            format!("proc={}:{}", self.pid, t(self.process)),
        ];
        out.extend(
            self.threads
                .iter()
                .map(|s| format!("task={}:{}:{}", s.id, t(s.times), escape(&s.comm))),
        );
        out
    }

    /// Reads the words of [`ProcessCpu::to_words`] among the `(key, value)` pairs of a
    /// marks line (others are ignored); `None` without `clk_tck` and `proc`.
    pub fn from_words<'a>(words: impl Iterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let (mut tps, mut process, mut threads) = (None, None, Vec::new());
        for (k, v) in words {
            match k {
                "clk_tck" => tps = v.parse().ok(),
                "proc" => process = parse_id_times(v).map(|(id, t, _)| (id, t)),
                "task" => {
                    if let Some((id, times, Some(name))) = parse_id_times(v) {
                        threads.push(Stat {
                            id,
                            comm: unescape(name),
                            times,
                        });
                    }
                }
                _ => {}
            }
        }
        let (pid, process) = process?;
        Some(ProcessCpu {
            pid,
            ticks_per_second: tps?,
            process,
            threads,
        })
    }
}

/// `ID:U:S:G` with an optional `:REST`.
fn parse_id_times(v: &str) -> Option<(u32, Times, Option<&str>)> {
    let mut parts = v.splitn(5, ':');
    let id = parts.next()?.parse().ok()?;
    let mut num = || parts.next()?.parse::<u64>().ok();
    let times = Times {
        user: num()?,
        system: num()?,
        guest: num()?,
    };
    Some((id, times, parts.next()))
}

/// A thread name as one word: `%`, white space and control characters as `%XX` (each
/// byte of their UTF-8).
pub fn escape(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c == '%' || c.is_whitespace() || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The name [`escape`] made `word` of.
pub fn unescape(word: &str) -> String {
    let mut bytes = Vec::new();
    let raw = word.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (raw[i], hex) {
            (b'%', Some(b)) => {
                bytes.push(b);
                i += 3;
            }
            (b, _) => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line of `id` named `comm` with the given times (other fields made up).
    fn line(id: u32, comm: &str, user: u64, system: u64, guest: u64) -> String {
        format!(
            "{id} ({comm}) S 1 {id} {id} 0 -1 4194624 2917 0 0 0 {user} {system} 0 0 20 0 \
             9 0 4567 1234567 890 18446744073709551615 1 1 0 0 0 0 0 4096 17663 0 0 0 \
             17 1 0 0 0 {guest} 0 0 0 0 0 0 0 0 0\n"
        )
    }

    #[test]
    fn test_parse_stat_takes_fields_14_15_43() {
        let s = parse_stat(&line(4242, "iovm-vcpu0", 700, 250, 600)).unwrap();

        assert_eq!(
            s,
            Stat {
                id: 4242,
                comm: "iovm-vcpu0".into(),
                times: Times {
                    user: 700,
                    system: 250,
                    guest: 600
                }
            }
        );
        assert_eq!(s.times.outside(), 350);
    }

    #[test]
    fn test_parse_stat_name_with_spaces_and_parentheses() {
        let qemu = parse_stat(&line(7, "CPU 0/KVM", 1, 2, 1)).unwrap();
        let odd = parse_stat(&line(8, "a) S 1 (b", 5, 6, 7)).unwrap();
        let empty = parse_stat(&line(9, "", 1, 1, 0)).unwrap();

        assert_eq!(qemu.comm, "CPU 0/KVM");
        assert_eq!(qemu.times.system, 2);
        assert_eq!(odd.comm, "a) S 1 (b");
        assert_eq!(
            odd.times,
            Times {
                user: 5,
                system: 6,
                guest: 7
            }
        );
        assert_eq!(empty.comm, "");
    }

    #[test]
    fn test_parse_stat_refuses_short_or_broken_lines() {
        let full = line(1, "x", 1, 2, 3);
        let cut: String = full.split(' ').take(30).collect::<Vec<_>>().join(" ");

        assert!(parse_stat(&cut).is_none());
        assert!(parse_stat("1 x S 1").is_none());
        assert!(parse_stat(&full.replacen("1 (x)", "one (x)", 1)).is_none());
        assert!(parse_stat(&full.replace(" 1 2 0 0 20 ", " 1 -2 0 0 20 ")).is_none());
    }

    #[test]
    fn test_outside_may_be_negative() {
        let t = Times {
            user: 10,
            system: 0,
            guest: 11,
        };

        assert_eq!(t.outside(), -1);
    }

    #[test]
    fn test_escape_round_trips_names() {
        for name in ["CPU 0/KVM", "100%\tdone", "iou-wrk-12", "a\nb", "", "é ü"] {
            let word = escape(name);

            assert!(!word.contains(char::is_whitespace), "{word:?}");
            assert_eq!(unescape(&word), name);
        }
        assert_eq!(escape("CPU 0/KVM"), "CPU%200/KVM");
        assert_eq!(unescape("50%"), "50%");
    }

    #[test]
    fn test_words_round_trip() {
        let p = ProcessCpu {
            pid: 100,
            ticks_per_second: 100,
            process: Times {
                user: 900,
                system: 300,
                guest: 700,
            },
            threads: vec![
                Stat {
                    id: 100,
                    comm: "qemu-system-x86".into(),
                    times: Times {
                        user: 50,
                        system: 80,
                        guest: 0,
                    },
                },
                Stat {
                    id: 103,
                    comm: "CPU 0/KVM".into(),
                    times: Times {
                        user: 800,
                        system: 200,
                        guest: 700,
                    },
                },
            ],
        };

        let words = p.to_words();
        let back = ProcessCpu::from_words(words.iter().filter_map(|w| w.split_once('=')));

        assert_eq!(words[1], "proc=100:900:300:700");
        assert_eq!(words[3], "task=103:800:200:700:CPU%200/KVM");
        assert_eq!(back, Some(p));
        assert_eq!(
            ProcessCpu::from_words([("exits", "5"), ("clk_tck", "100")].into_iter()),
            None
        );
    }

    #[test]
    fn test_read_this_process() {
        let me = ProcessCpu::read(std::process::id()).unwrap();

        assert_eq!(me.pid, std::process::id());
        assert!(me.ticks_per_second > 0);
        assert!(me.threads.iter().any(|t| t.id == me.pid));
        assert!(ProcessCpu::read(u32::MAX).is_none());
    }
}
