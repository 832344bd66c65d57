//! Each thread kind's filter, installed for real in a child process (this
//! test binary run again with `SANDBOX_CHILD` set, since a filter cannot be
//! taken off): the thread reads `Seccomp: 2` in its own status, may still
//! do what its kind does, and a forbidden call ends the process with
//! `EXIT_SECCOMP` and one line naming the thread kind.

use std::process::Command;

use sandbox::{Mode, ThreadKind, EXIT_SECCOMP};

const CHILD: &str = "SANDBOX_CHILD";

/// Runs `child` below in a new process with `SANDBOX_CHILD=what`.
fn run_child(what: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads", "1"])
        .env(CHILD, what)
        .output()
        .unwrap()
}

fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// The child's side: `installed:KIND` or `violate:KIND` or `log:KIND`,
/// or `user` (below).
#[test]
fn child() {
    let Ok(what) = std::env::var(CHILD) else {
        return;
    };
    if what == "user" {
        return become_nobody_with_filtered_threads();
    }
    let (action, kind) = what.split_once(':').unwrap();
    let kind: ThreadKind = kind.parse().unwrap();
    let mode = if action == "log" { Mode::Log } else { Mode::On };
    let selftest = (action == "violate").then_some(kind);
    sandbox::configure(mode, selftest, None).unwrap();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        let tid = gettid();
        let before = sandbox::thread_seccomp_mode(tid).unwrap();
        sandbox::enter(kind);
        // Past here only what the kind may do: the unfiltered main
        // thread reads this one's status.
        tid_tx.send((tid, before)).unwrap();
        let _ = done_rx.recv();
    });
    let (tid, before) = tid_rx.recv().unwrap();
    let after = sandbox::thread_seccomp_mode(tid).unwrap();
    done_tx.send(()).unwrap();
    worker.join().unwrap();
    println!("seccomp before {before} after {after}");
    if action == "log" {
        // A call the filter forbids goes ahead in log mode.
        // SAFETY: personality(0xffffffff) only queries.
        let r = unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffff_u64) };
        println!("personality answered {}", r >= 0);
    }
}

/// Threads of several kinds in their filters, then the main thread
/// (filtered too) becomes 65534:65534: every thread changes IDs, none is
/// killed, and no capability remains.
fn become_nobody_with_filtered_threads() {
    let user = sandbox::privileges::Credentials {
        uid: 65534,
        gid: 65534,
    };
    sandbox::configure(Mode::On, None, Some(user)).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let done_rx = std::sync::Arc::new(std::sync::Mutex::new(done_rx));
    let kinds = [
        ThreadKind::Vcpu,
        ThreadKind::NvmeWorker,
        ThreadKind::VirtioNet,
        ThreadKind::Signals,
        ThreadKind::ApiWaiter,
    ];
    let threads: Vec<_> = kinds
        .into_iter()
        .map(|kind| {
            let (ready_tx, done_rx) = (ready_tx.clone(), done_rx.clone());
            std::thread::spawn(move || {
                sandbox::enter(kind);
                ready_tx.send(()).unwrap();
                let _ = done_rx.lock().unwrap().recv();
            })
        })
        .collect();
    for _ in kinds {
        ready_rx.recv().unwrap();
    }
    sandbox::enter(ThreadKind::Main);
    sandbox::privileges::drop_now().unwrap();
    let mut lines = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let status = std::fs::read_to_string(entry.unwrap().path().join("status")).unwrap();
        for l in status.lines() {
            if l.starts_with("Uid:")
                || l.starts_with("Gid:")
                || l.starts_with("CapEff:")
                || l.starts_with("CapPrm:")
            {
                lines.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
    }
    for _ in kinds {
        done_tx.send(()).unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    lines.sort();
    lines.dedup();
    println!("ids: {}", lines.join(" | "));
}

#[test]
fn test_every_thread_becomes_the_user_through_its_filter() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (it drops to 65534)");
    }
    let out = run_child("user");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "ids: CapEff: 0000000000000000 | CapPrm: 0000000000000000 | Gid: 65534 65534 65534 65534 | Uid: 65534 65534 65534 65534\n"
        ),
        "{stdout}"
    );
}

#[test]
fn test_every_kind_installs_its_filter() {
    for kind in ThreadKind::ALL {
        let out = run_child(&format!("installed:{kind}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{kind}: {stdout}\n{stderr}");
        assert!(
            stdout.contains("seccomp before 0 after 2"),
            "{kind}: {stdout}"
        );
    }
}

#[test]
fn test_a_forbidden_call_ends_iovm_with_one_line_for_every_kind() {
    for kind in ThreadKind::ALL {
        let out = run_child(&format!("violate:{kind}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_SECCOMP), "{kind}: {stderr}");
        let expected = format!(
            "iovm: error: seccomp: the {kind} thread made system call {}, which its filter forbids",
            libc::SYS_personality
        );
        assert!(stderr.contains(&expected), "{kind}: {stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("seccomp before"));
    }
}

#[test]
fn test_log_mode_lets_a_forbidden_call_through() {
    let out = run_child("log:vcpu");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("seccomp before 0 after 2"), "{stdout}");
    assert!(stdout.contains("personality answered true"), "{stdout}");
}
