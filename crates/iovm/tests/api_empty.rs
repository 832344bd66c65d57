//! The management API of an empty VMM (`iovm run --api-socket` with no
//! kernel), on this host: no guest, no KVM. What a client can do before
//! a VM runs, and what hostile clients cannot do: malformed and mistyped
//! bodies, unknown paths, wrong methods, silence, huge bodies and crowds
//! all get their status, and the server keeps serving.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api::client::{call, Reply};
use serde_json::{json, Value};

const IOVM: &str = env!("CARGO_BIN_EXE_iovm");

/// An `iovm run --api-socket` of its own; killed if the test leaves it.
struct Vmm {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Vmm {
    fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("iovm-api-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("api.sock");
        let child = Command::new(IOVM)
            .args(["run", "--api-socket"])
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start iovm");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the API socket never came up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, dir, socket }
    }

    fn call(&self, method: &str, endpoint: &str, body: Option<Value>) -> Reply {
        call(
            &self.socket,
            method,
            &format!("/api/v1/{endpoint}"),
            body.as_ref(),
            &[],
        )
        .expect("an answer")
    }

    /// Sends raw bytes, returns the raw answer.
    fn raw(&self, bytes: &[u8]) -> String {
        let mut s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(bytes);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    fn assert_serving(&self) {
        assert_eq!(self.call("GET", "vmm.ping", None).status, 200);
    }

    fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                return (status.code(), err);
            }
            assert!(Instant::now() < deadline, "iovm did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn error_of(r: &Reply) -> String {
    r.body
        .as_ref()
        .and_then(|b| b["error"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// A file vm.create takes for a kernel (an ELF header's magic; nothing
/// here boots it).
fn kernel_file(dir: &Path) -> PathBuf {
    let k = dir.join("vmlinux");
    std::fs::write(&k, b"\x7fELF and no more").unwrap();
    k
}

#[test]
fn test_socket_is_owner_only_and_removed_by_vmm_shutdown() {
    let vmm = Vmm::start("mode");
    let mode = std::fs::metadata(&vmm.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let r = vmm.call("PUT", "vmm.shutdown", None);

    assert_eq!(r.status, 204);
    let socket = vmm.socket.clone();
    let (code, err) = vmm.wait();
    assert_eq!(code, Some(0), "{err}");
    assert!(!socket.exists(), "the socket outlived iovm");
}

#[test]
fn test_sigterm_with_no_vm_ends_iovm_cleanly() {
    let vmm = Vmm::start("sigterm");
    let socket = vmm.socket.clone();

    let pid = vmm.child.id() as libc::pid_t;
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);

    let (code, err) = vmm.wait();
    assert_eq!(code, Some(0), "{err}");
    assert!(!socket.exists());
}

#[test]
fn test_vm_lifecycle_before_boot_follows_cloud_hypervisors_codes() {
    let vmm = Vmm::start("states");
    let kernel = kernel_file(&vmm.dir);
    let body = json!({"payload": {"kernel": kernel, "cmdline": "console=ttyS0"},
                      "cpus": {"boot_vcpus": 1, "max_vcpus": 1},
                      "memory": {"size": 256u64 << 20}});

    assert_eq!(vmm.call("GET", "vm.info", None).status, 404);
    assert_eq!(vmm.call("PUT", "vm.boot", None).status, 404);
    assert_eq!(vmm.call("PUT", "vm.pause", None).status, 404);
    assert_eq!(vmm.call("PUT", "vm.create", Some(body.clone())).status, 204);
    assert_eq!(vmm.call("PUT", "vm.create", Some(body)).status, 409);
    let info = vmm.call("GET", "vm.info", None);
    assert_eq!(info.status, 200);
    assert_eq!(info.body.as_ref().unwrap()["state"], "Created");
    assert_eq!(
        info.body.as_ref().unwrap()["config"]["memory"]["size"],
        256u64 << 20
    );
    let pause = vmm.call("PUT", "vm.pause", None);
    assert_eq!(pause.status, 405, "{pause:?}");
    assert!(error_of(&pause).contains("Running"), "{pause:?}");
    assert_eq!(vmm.call("PUT", "vm.power-button", None).status, 405);
    assert_eq!(vmm.call("GET", "vm.counters", None).status, 405);
    assert_eq!(
        vmm.call("PUT", "vm.remove-device", Some(json!({"id": "x"})))
            .status,
        405
    );
    assert_eq!(vmm.call("PUT", "vm.delete", None).status, 204);
    assert_eq!(vmm.call("GET", "vm.info", None).status, 404);
}

#[test]
fn test_bad_bodies_get_400_naming_the_field() {
    let vmm = Vmm::start("bodies");
    let kernel = kernel_file(&vmm.dir);
    let cases = [
        (
            json!({"payload": {"kernel": kernel}, "cpus": {"boot_vcpus": "two"}}),
            "cpus.boot_vcpus",
        ),
        (
            json!({"payload": {"kernel": kernel}, "memory": {"size": 1u64 << 30, "shared": true}}),
            "memory.shared",
        ),
        (
            json!({"payload": {"kernel": kernel}, "disks": [{"path": "/no/such/disk.img"}]}),
            "/no/such/disk.img",
        ),
        (
            json!({"payload": {"kernel": "/no/such/kernel"}}),
            "payload.kernel",
        ),
        (
            json!({"payload": {"kernel": kernel}, "surprise": 1}),
            "surprise",
        ),
        (
            json!({"payload": {"kernel": kernel}, "memory": {"size": 1}}),
            "too small",
        ),
        (json!([1, 2, 3]), "body"),
    ];
    for (body, needle) in cases {
        let r = vmm.call("PUT", "vm.create", Some(body.clone()));
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert!(error_of(&r).contains(needle), "{body}: {r:?}");
    }
    let r = vmm.raw(b"PUT /api/v1/vm.create HTTP/1.1\r\nContent-Length: 9\r\n\r\n{\"payload");
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("malformed JSON"),
        "{r}"
    );
    let r = vmm.raw(b"PUT /api/v1/vm.create HTTP/1.1\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("needs a JSON body"),
        "{r}"
    );
    let r = vmm.call("PUT", "vm.add-disk", Some(json!({"path": "/no/such.img"})));
    assert_eq!(r.status, 400, "{r:?}");
    vmm.assert_serving();
}

#[test]
fn test_unknown_paths_are_404_and_wrong_methods_405() {
    let vmm = Vmm::start("routes");

    let r = vmm.call("GET", "vm.nothing", None);
    assert_eq!(r.status, 404);
    let r = vmm.raw(b"GET /etc/passwd HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = vmm.raw(b"DELETE /api/v1/vm.info HTTP/1.1\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 405") && r.contains("Allow: GET"),
        "{r}"
    );
    let r = vmm.raw(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    vmm.assert_serving();
}

#[test]
fn test_silent_and_huge_clients_are_cut_off_and_the_server_goes_on() {
    let vmm = Vmm::start("hostile");
    let start = Instant::now();
    let silent = vmm.raw(b"");
    assert!(silent.starts_with("HTTP/1.1 408"), "{silent}");
    assert!(start.elapsed() < Duration::from_secs(15));

    let mut s = UnixStream::connect(&vmm.socket).unwrap();
    s.write_all(b"PUT /api/v1/vm.create HTTP/1.1\r\nContent-Length: 1073741824\r\n\r\n")
        .unwrap();
    let chunk = vec![b'{'; 1 << 20];
    for _ in 0..8 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let mut long_head = b"GET /api/v1/vmm.ping HTTP/1.1\r\nX-Junk: ".to_vec();
    long_head.extend(std::iter::repeat_n(b'a', 64 << 10));
    assert!(vmm.raw(&long_head).starts_with("HTTP/1.1 431"));
    vmm.assert_serving();
}

#[test]
fn test_a_crowd_of_clients_is_served_or_told_to_come_back() {
    let vmm = Vmm::start("crowd");
    let idle: Vec<UnixStream> = (0..40)
        .filter_map(|_| UnixStream::connect(&vmm.socket).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let busy = vmm.call("GET", "vmm.ping", None);
    assert_eq!(busy.status, 503, "{busy:?}");

    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    let socket = vmm.socket.clone();
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                call(&socket, "GET", "/api/v1/vmm.ping", None, &[])
                    .map(|r| r.status)
                    .unwrap_or(0)
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 32,
        "{statuses:?}"
    );
    vmm.assert_serving();
}

#[test]
fn test_iovm_remote_prints_tables_and_fails_with_one_line() {
    let vmm = Vmm::start("remote");
    let kernel = kernel_file(&vmm.dir);
    let spec = vmm.dir.join("vm.json");
    std::fs::write(
        &spec,
        json!({"payload": {"kernel": kernel}, "iovm_devices": [{"kind": "root-port", "id": "rp0"}]})
            .to_string(),
    )
    .unwrap();
    let remote = |args: &[&str]| {
        let out = Command::new(IOVM)
            .args(["remote", "--api-socket"])
            .arg(&vmm.socket)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    assert_eq!(remote(&["create", spec.to_str().unwrap()]).0, Some(0));
    let (code, table, _) = remote(&["info"]);
    assert_eq!(code, Some(0));
    assert!(table.contains("state          Created"), "{table}");
    assert!(
        table.contains("rp0") && table.contains("0000:00:01.0"),
        "{table}"
    );
    let (code, _, err) = remote(&["pause"]);
    assert_eq!(code, Some(1));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("405"), "{err}");
    let (code, json_text, _) = remote(&["--json", "ping"]);
    assert_eq!(code, Some(0));
    assert!(
        serde_json::from_str::<Value>(&json_text).is_ok(),
        "{json_text}"
    );

    let (code, _, err) = remote(&["add-net", "--open-tap", "a-name-far-too-long-for-linux"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--open-tap a-name-far-too-long"), "{err}");
    let (code, _, err) = remote(&["add-net", "--open-tap", "t0", "--tap-fd", "3"]);
    assert_eq!(code, Some(2), "one or the other: {err}");

    let gone = Command::new(IOVM)
        .args(["remote", "--api-socket", "/nonexistent/api.sock", "ping"])
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot connect"));
}

#[test]
fn test_run_without_kernel_or_api_socket_is_a_usage_error() {
    let out = Command::new(IOVM).args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kernel"));
}

#[test]
fn test_second_vmm_on_a_served_socket_is_refused() {
    let vmm = Vmm::start("twice");
    let out = Command::new(IOVM)
        .args(["run", "--api-socket"])
        .arg(&vmm.socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already serves"));
    vmm.assert_serving();
}
