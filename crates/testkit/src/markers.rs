//! The marker lines printed by the guest's `/init` and by the test host's batch script, and
//! the parsing of consoles by them. The strings here must match `xtask/guest/init` and the
//! batch script written by [`crate::testhost`], and `xtask/testhost/init`.

use std::collections::BTreeMap;

/// Printed by the guest's `/init` when user space is up: `IOVM-GUEST: boot done uptime=<s>`.
pub const GUEST_BOOT_DONE: &str = "IOVM-GUEST: boot done uptime=";
/// Printed by the guest's `/init` after the script: `IOVM-GUEST: exit status=<N>`.
pub const GUEST_EXIT_STATUS: &str = "IOVM-GUEST: exit status=";
/// Printed by the test host's `/init` once KVM and the shares are ready:
/// `IOVM-TESTHOST: ready uptime=<s> kvm=<yes|no>`.
pub const TESTHOST_READY: &str = "IOVM-TESTHOST: ready";
/// Prefix of the batch markers in the test host's console:
/// `@@IOVM-BATCH begin <name> t=<uptime>@@`, `@@IOVM-BATCH timeout <name>@@`,
/// `@@IOVM-BATCH end <name> rc=<N> t=<uptime>@@`.
pub const BATCH: &str = "@@IOVM-BATCH ";

fn value_after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let at = line.find(prefix)?;
    line[at + prefix.len()..].split_whitespace().next()
}

/// The last `exit status=` value.
pub fn guest_exit_status(console: &str) -> Option<i32> {
    console
        .lines()
        .rev()
        .find_map(|l| value_after(l, GUEST_EXIT_STATUS)?.parse().ok())
}

/// The first `boot done uptime=` value.
pub fn boot_uptime(console: &str) -> Option<f64> {
    console
        .lines()
        .find_map(|l| value_after(l, GUEST_BOOT_DONE)?.parse().ok())
}

/// The lines strictly between the `boot done` and `exit status` markers.
pub fn script_output(console: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in console.lines() {
        if line.contains(GUEST_BOOT_DONE) {
            inside = true;
        } else if line.contains(GUEST_EXIT_STATUS) {
            break;
        } else if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Kernel messages that signal a problem.
const PROBLEMS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "Oops",
    "Call Trace:",
    "Kernel panic",
    "general protection fault",
    "invalid opcode",
    "soft lockup",
    "hard LOCKUP",
    "hung_task",
    "blocked for more than",
    "segfault at",
    "UBSAN:",
    "KASAN:",
];

/// Lines containing any of the problem patterns.
pub fn kernel_problems(console: &str) -> Vec<String> {
    console
        .lines()
        .filter(|l| PROBLEMS.iter().any(|p| l.contains(p)))
        .map(str::to_owned)
        .collect()
}

/// The nested test host's known guest fault (docs/test-host.md, "a third
/// form"), if `console` shows it: the guest kernel died of a double fault on
/// the first instruction of the system-call entry, where nothing a VMM does
/// can interrupt it. `None` for every other death.
pub fn nested_fault(console: &str) -> Option<&'static str> {
    (console.contains("traps: PANIC: double fault")
        && console.contains("RIP: 0010:entry_SYSCALL_64+0x0/"))
    .then_some("the guest died of a double fault at entry_SYSCALL_64+0x0 (the nested test host's known fault)")
}

/// One run's part of a batch console.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Section {
    /// Lines between its `begin` and `end` markers (or to the end of the console).
    pub text: String,
    /// Saw the `begin` marker.
    pub begun: bool,
    /// The `rc=` of the `end` marker, if seen.
    pub rc: Option<i32>,
    /// Saw the `end` marker.
    pub ended: bool,
    /// Saw the `timeout` marker.
    pub timed_out: bool,
    /// Test host uptime at `begin` and `end`.
    pub t_begin: Option<f64>,
    /// Test host uptime at `end`.
    pub t_end: Option<f64>,
}

fn field<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words.iter().find_map(|w| w.strip_prefix(key))
}

/// Splits a test host console by the batch markers into one section per run name.
/// Text outside any run is dropped. Console text may precede a marker on its line (a guest
/// that printed no final newline); it belongs to the open section.
pub fn split(console: &str) -> BTreeMap<String, Section> {
    let mut out: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    for raw in console.split('\n') {
        let line = raw.trim_end_matches('\r');
        let Some(at) = line.find(BATCH) else {
            if let Some(name) = &current {
                if let Some(s) = out.get_mut(name) {
                    s.text.push_str(line);
                    s.text.push('\n');
                }
            }
            continue;
        };
        let before = &line[..at];
        if let (Some(name), false) = (&current, before.is_empty()) {
            if let Some(s) = out.get_mut(name) {
                s.text.push_str(before);
                s.text.push('\n');
            }
        }
        let rest = &line[at + BATCH.len()..];
        let Some(body) = rest.split("@@").next() else {
            continue;
        };
        let words: Vec<&str> = body.split_whitespace().collect();
        let (Some(&kind), Some(&name)) = (words.first(), words.get(1)) else {
            continue;
        };
        let t = field(&words, "t=").and_then(|v| v.parse().ok());
        match kind {
            "begin" => {
                let s = out.entry(name.to_owned()).or_default();
                s.begun = true;
                s.t_begin = t;
                current = Some(name.to_owned());
            }
            "timeout" => out.entry(name.to_owned()).or_default().timed_out = true,
            "end" => {
                let s = out.entry(name.to_owned()).or_default();
                s.ended = true;
                s.rc = field(&words, "rc=").and_then(|v| v.parse().ok());
                s.t_end = t;
                if current.as_deref() == Some(name) {
                    current = None;
                }
            }
            _ => {}
        }
    }
    for s in out.values_mut() {
        // The batch script prints a newline before each marker: drop that empty line.
        if s.text.ends_with("\n\n") {
            s.text.pop();
        }
        if s.text.starts_with('\n') {
            s.text.remove(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn test_nested_fault_is_the_double_fault_at_syscall_entry_only() {
        let seen = "[ 12.98] traps: PANIC: double fault, error_code: 0x0\n\
                    [ 12.98] RIP: 0010:entry_SYSCALL_64+0x0/0x29\n";
        assert!(nested_fault(seen).is_some());
        let elsewhere = "[ 1.0] traps: PANIC: double fault, error_code: 0x0\n\
                         [ 1.0] RIP: 0010:asm_exc_page_fault+0x1/0x30\n";
        assert_eq!(
            nested_fault(elsewhere),
            None,
            "a double fault anywhere else is real"
        );
        assert_eq!(nested_fault("Kernel panic - not syncing: VFS\n"), None);
    }

    use super::*;

    #[test]
    fn test_split_two_runs_with_timeout_and_partial_line() {
        let console = "boot noise\r\n\
            @@IOVM-BATCH begin a t=3.10@@\r\n\
            hello\r\n\
            no newline\r\n\
            @@IOVM-BATCH end a rc=0 t=5.60@@\r\n\
            between\n\
            \n@@IOVM-BATCH begin b t=6.00@@\n\
            stuck\n\
            \n@@IOVM-BATCH timeout b@@\n\
            partial@@IOVM-BATCH end b rc=143 t=9.00@@\n";

        let s = split(console);

        assert_eq!(s["a"].text, "hello\nno newline\n");
        assert_eq!(s["a"].rc, Some(0));
        assert!(s["a"].ended && !s["a"].timed_out);
        assert_eq!(s["a"].t_begin, Some(3.10));
        assert_eq!(s["a"].t_end, Some(5.60));
        assert_eq!(s["b"].text, "stuck\n\npartial\n");
        assert!(s["b"].timed_out);
        assert_eq!(s["b"].rc, Some(143));
    }

    #[test]
    fn test_split_unfinished_run_keeps_text() {
        let console = "@@IOVM-BATCH begin a t=1@@\nbooting\n[ panic ]\n";

        let s = split(console);

        assert!(s["a"].begun);
        assert!(!s["a"].ended);
        assert_eq!(s["a"].text, "booting\n[ panic ]\n");
    }

    #[test]
    fn test_guest_markers_parse() {
        let console = "x\nIOVM-GUEST: boot done uptime=12.34\nout1\nout2\n\
                       IOVM-GUEST: exit status=7\n[ 1.0] reboot: Power down\n";

        assert_eq!(boot_uptime(console), Some(12.34));
        assert_eq!(guest_exit_status(console), Some(7));
        assert_eq!(script_output(console), "out1\nout2\n");
    }

    #[test]
    fn test_kernel_problems_finds_warning() {
        let console = "ok\n[ 1.2] WARNING: CPU: 0 PID: 1 at foo\nfine\n";

        assert_eq!(
            kernel_problems(console),
            ["[ 1.2] WARNING: CPU: 0 PID: 1 at foo"]
        );
    }
}
