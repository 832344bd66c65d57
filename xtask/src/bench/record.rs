//! One measured run as the probe records it: a line of `key=value` words appended to the
//! records file (`$S/bench/records.txt`), read back by `cargo xtask bench`.
//!
//! `name=boot.iovm.1 exit=code:0 marker_ms=812.345 exit_ms=990.100 rss_kb=- pss_kb=- …`
//! (`-` where there is no value; `exit=` is `code:N`, `signal:N` or `timeout`).

use std::fmt;

/// How the measured process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status.
    Code(i32),
    /// Killed by this signal (not by the probe).
    Signal(i32),
    /// The probe killed it when its timeout expired.
    TimedOut,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "code:{c}"),
            Exit::Signal(s) => write!(f, "signal:{s}"),
            Exit::TimedOut => f.write_str("timeout"),
        }
    }
}

impl Exit {
    fn parse(s: &str) -> Option<Exit> {
        if s == "timeout" {
            return Some(Exit::TimedOut);
        }
        let (kind, n) = s.split_once(':')?;
        let n = n.parse().ok()?;
        match kind {
            "code" => Some(Exit::Code(n)),
            "signal" => Some(Exit::Signal(n)),
            _ => None,
        }
    }
}

/// The process's memory from `/proc/PID/smaps_rollup`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size.
    pub rss_kb: u64,
    /// Proportional set size (shared pages divided among their users).
    pub pss_kb: u64,
    /// Anonymous resident memory (guest RAM the guest touched, heaps).
    pub anon_kb: u64,
    /// Of that, in transparent huge pages.
    pub anon_huge_kb: u64,
}

/// Reads the fields of [`Memory`] from the text of `/proc/PID/smaps_rollup`.
pub fn parse_smaps_rollup(text: &str) -> Option<Memory> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some(Memory {
        rss_kb: field("Rss")?,
        pss_kb: field("Pss")?,
        anon_kb: field("Anonymous")?,
        anon_huge_kb: field("AnonHugePages").unwrap_or(0),
    })
}

/// What the probe measured for one run. Times are from just before the process was
/// started.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The run's name (`<figure>.<vmm>.<repetition>`).
    pub name: String,
    /// How the process ended.
    pub exit: Exit,
    /// Until the marker was first read from its output.
    pub marker_ms: Option<f64>,
    /// Until it had exited (been waited for).
    pub exit_ms: Option<f64>,
    /// Its memory, sampled a while after the marker.
    pub memory: Option<Memory>,
}

fn opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

impl Record {
    /// The record as one line (no newline).
    pub fn to_line(&self) -> String {
        let m = self.memory;
        format!(
            "name={} exit={} marker_ms={} exit_ms={} rss_kb={} pss_kb={} anon_kb={} \
             anon_huge_kb={}",
            self.name,
            self.exit,
            opt(self.marker_ms.map(|v| format!("{v:.3}"))),
            opt(self.exit_ms.map(|v| format!("{v:.3}"))),
            opt(m.map(|m| m.rss_kb)),
            opt(m.map(|m| m.pss_kb)),
            opt(m.map(|m| m.anon_kb)),
            opt(m.map(|m| m.anon_huge_kb)),
        )
    }

    /// Parses a line written by [`Record::to_line`].
    pub fn parse(line: &str) -> Option<Record> {
        let get = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        };
        let num = |key: &str| get(key).and_then(|v| v.parse::<f64>().ok());
        let kb = |key: &str| get(key).and_then(|v| v.parse::<u64>().ok());
        let memory = match (kb("rss_kb"), kb("pss_kb"), kb("anon_kb")) {
            (Some(rss_kb), Some(pss_kb), Some(anon_kb)) => Some(Memory {
                rss_kb,
                pss_kb,
                anon_kb,
                anon_huge_kb: kb("anon_huge_kb").unwrap_or(0),
            }),
            _ => None,
        };
        Some(Record {
            name: get("name")?.to_owned(),
            exit: Exit::parse(get("exit")?)?,
            marker_ms: num("marker_ms"),
            exit_ms: num("exit_ms"),
            memory,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_record_line_round_trips() {
        let r = Record {
            name: "memory.qemu-q35.2".into(),
            exit: Exit::Code(0),
            marker_ms: Some(812.3456),
            exit_ms: Some(3001.0),
            memory: Some(Memory {
                rss_kb: 100,
                pss_kb: 90,
                anon_kb: 80,
                anon_huge_kb: 2048,
            }),
        };

        let line = r.to_line();
        let back = Record::parse(&line).unwrap();

        assert_eq!(
            line,
            "name=memory.qemu-q35.2 exit=code:0 marker_ms=812.346 exit_ms=3001.000 \
             rss_kb=100 pss_kb=90 anon_kb=80 anon_huge_kb=2048"
        );
        assert_eq!(back.memory, r.memory);
        assert_eq!(back.marker_ms, Some(812.346));
    }

    #[test]
    fn test_record_missing_values_and_timeout() {
        let r = Record {
            name: "boot.iovm.1".into(),
            exit: Exit::TimedOut,
            marker_ms: None,
            exit_ms: Some(1.0),
            memory: None,
        };

        let back = Record::parse(&r.to_line()).unwrap();

        assert_eq!(back, r);
        assert_eq!(
            Record::parse("name=x exit=signal:9").unwrap().exit,
            Exit::Signal(9)
        );
        assert!(Record::parse("exit=code:0").is_none());
        assert!(Record::parse("name=x exit=weird").is_none());
    }

    #[test]
    fn test_parse_smaps_rollup() {
        let text = "55d0c0000000-7ffc00000000 ---p 00000000 00:00 0   [rollup]\n\
                    Rss:              123456 kB\n\
                    Pss:              120000 kB\n\
                    Pss_Anon:         110000 kB\n\
                    Shared_Clean:       3000 kB\n\
                    Anonymous:        111111 kB\n\
                    AnonHugePages:     40960 kB\n";

        let m = parse_smaps_rollup(text).unwrap();

        assert_eq!(
            m,
            Memory {
                rss_kb: 123456,
                pss_kb: 120000,
                anon_kb: 111111,
                anon_huge_kb: 40960,
            }
        );
        assert!(parse_smaps_rollup("Rss: 1 kB\n").is_none());
    }
}
