//! `cargo xtask ci`'s API fuzz step and `cargo xtask api-fuzz`: schemathesis
//! (a property-based API fuzzer from PyPI, written by others) generates
//! requests from `docs/api/openapi.yaml` and checks iovm's answers against
//! the same document: no 5xx, only documented statuses, content types and
//! response shapes, schema-invalid bodies refused, 405 with `Allow` for
//! methods an operation does not have.
//!
//! ```text
//!  python3 -m venv target/schemathesis-venv; pip install schemathesis==VERSION (once)
//!  iovm run --api-socket target/tmp/api-fuzz/api.sock   (an empty VMM)
//!  vm.create (a VM that is never booted, so that vm.info and the others
//!  have one to answer about, until the fuzzer deletes it)
//!  127.0.0.1:PORT ──(this process copies bytes)──▶ the Unix socket
//!  schemathesis run docs/api/openapi.yaml --url http://127.0.0.1:PORT/api/v1
//!  iovm must still be running afterwards
//! ```
//!
//! Bounded: a time budget and a number of examples per operation. Left out:
//! `vmm.shutdown` (it ends the server the run is testing) and `vm.boot`
//! (which would build a machine on this host's KVM).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::run::{cargo, run_checked, run_status};

/// The schemathesis release the step installs.
pub const VERSION: &str = "4.32.5";
/// Time budget of the run, seconds.
pub const MAX_TIME: u64 = 120;
/// Examples per operation and phase.
const MAX_EXAMPLES: u32 = 30;

/// Options of `cargo xtask api-fuzz`.
#[derive(Debug, clap::Args)]
pub struct ApiFuzzArgs {
    /// Time budget, seconds.
    #[arg(long, default_value_t = MAX_TIME)]
    pub max_time: u64,
}

fn venv() -> PathBuf {
    crate::paths::target().join("schemathesis-venv")
}

/// Installs schemathesis into a virtual environment under `target/` unless
/// that release is there.
fn ensure_schemathesis() -> Result<PathBuf> {
    let bin = venv().join("bin").join("schemathesis");
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(VERSION));
    if installed {
        return Ok(bin);
    }
    println!(
        "xtask: api-fuzz: installing schemathesis {VERSION} into {}",
        venv().display()
    );
    run_checked(Command::new("python3").arg("-m").arg("venv").arg(venv()))?;
    run_checked(
        Command::new(venv().join("bin").join("pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .arg(format!("schemathesis=={VERSION}")),
    )
    .context("pip could not install schemathesis (PyPI unreachable?)")?;
    Ok(bin)
}

/// Copies bytes both ways between `tcp` and a new connection to `socket`.
fn relay(tcp: TcpStream, socket: &Path) {
    let Ok(unix) = UnixStream::connect(socket) else {
        return;
    };
    let (Ok(mut tcp_in), Ok(mut unix_out)) = (tcp.try_clone(), unix.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut tcp_in, &mut unix_out);
        let _ = unix_out.shutdown(Shutdown::Write);
    });
    let (mut unix_in, mut tcp_out) = (unix, tcp);
    let mut buf = [0u8; 16 << 10];
    loop {
        match unix_in.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tcp_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = tcp_out.shutdown(Shutdown::Both);
    let _ = upstream.join();
}

/// A loopback TCP port in front of `socket`; its port.
fn start_relay(socket: PathBuf) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let socket = socket.clone();
            std::thread::spawn(move || relay(tcp, &socket));
        }
    });
    Ok(port)
}

/// Creates a VM (not booted: its kernel is an ELF header and nothing
/// more) so that the operations on a VM reach one until the fuzzer's
/// `vm.delete` removes it.
fn create_vm(socket: &Path, dir: &Path) -> Result<()> {
    let kernel = dir.join("vmlinux");
    std::fs::write(&kernel, b"\x7fELF")?;
    let body = serde_json::json!({
        "payload": {"kernel": kernel, "cmdline": "console=ttyS0"},
        "cpus": {"boot_vcpus": 1, "max_vcpus": 1},
        "memory": {"size": 256u64 << 20},
        "iovm_devices": [{"kind": "root-port", "id": "rp0"},
                         {"kind": "virtio-rng", "id": "rng0", "bus": "rp0"}],
    })
    .to_string();
    let mut s = UnixStream::connect(socket)?;
    write!(
        s,
        "PUT /api/v1/vm.create HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    if !answer.starts_with("HTTP/1.1 204") {
        bail!("vm.create before the fuzz run failed: {answer}");
    }
    Ok(())
}

/// Runs schemathesis against an empty iovm VMM; its exit status, or 1 when
/// iovm did not survive the run.
pub fn run(args: &ApiFuzzArgs) -> Result<i32> {
    let schemathesis = ensure_schemathesis()?;
    run_checked(cargo().args(["build", "-p", "iovm"]))?;
    let iovm = crate::paths::target().join("debug").join("iovm");
    let dir = crate::paths::target().join("tmp").join("api-fuzz");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("api.sock");
    let mut child = Command::new(&iovm)
        .args(["run", "--api-socket"])
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("iovm.log"))?)
        .spawn()
        .with_context(|| format!("start {}", iovm.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&socket).is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("iovm's API socket did not come up");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    create_vm(&socket, &dir)?;
    let port = start_relay(socket)?;
    let spec = crate::paths::workspace().join("docs/api/openapi.yaml");
    let status = run_status(
        Command::new(&schemathesis)
            .arg("run")
            .arg(&spec)
            .args(["--url", &format!("http://127.0.0.1:{port}/api/v1")])
            .args(["--max-time", &args.max_time.to_string()])
            .args(["--max-examples", &MAX_EXAMPLES.to_string()])
            .args(["--workers", "2", "--request-timeout", "15"])
            .args(["--checks", "all"])
            .args(["--exclude-checks", "positive_data_acceptance,use_after_free,ensure_resource_availability,ignored_auth,object_level_authorization,missing_required_header"])
            .args(["--exclude-path", "/vmm.shutdown", "--exclude-path", "/vm.boot"])
            .args(["--suppress-health-check", "all", "--no-color"])
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(&dir),
    )?;
    let alive = child.try_wait()?.is_none();
    let _ = child.kill();
    let _ = child.wait();
    if !alive {
        println!(
            "xtask: api-fuzz: iovm did not survive the run (see {})",
            dir.join("iovm.log").display()
        );
        return Ok(1);
    }
    Ok(status.code().unwrap_or(1))
}
