//! The management API against a real guest: iovm starts with no machine
//! (`--api-socket` alone), a client creates and boots the guest through
//! the API (`iovm remote`: the test host has no curl), reads `vm.info`
//! (state Running, the PCI addresses the guest enumerated), pauses and
//! resumes the vCPUs (the guest's clock jumps over the pause, its disk
//! still reads back what it wrote), presses the power button (the guest
//! powers off, `vm.info` says so), and ends the VMM (`vmm.shutdown`: exit
//! 0, socket removed); `vm.counters` shows the guest's disk writes. A second run boots its VM from the command line
//! with the API beside it: `vm.info` reads it, `vm.shutdown` ends it and
//! iovm with it (exit 0). One batch.

mod common;

use std::sync::OnceLock;

use serde_json::{json, Value};
use testkit::{Batch, GuestRun, RunResult};

/// Where the socket, the disk and the guest's signal file live (tmpfs).
const WORK: &str = "/dev/shm/iovm-api";
/// How long the driver keeps the vCPUs paused, seconds.
const PAUSE_SECS: u32 = 3;

/// The guest: says READY, prints its uptime every 0.2 s for a while (the
/// pause falls in there), checks its disk, says BUTTON, waits for the
/// power button's input event and ends (the guest's init then powers off).
const GUEST_SCRIPT: &str = r#"
modprobe evdev
t=$(ls /sys/bus/pci/devices/*/tty | grep ttyS | head -1)
for d in /sys/bus/pci/devices/*; do echo "pcidev $(basename $d) $(cat $d/vendor)"; done
echo READY > /dev/$t
i=0
while [ $i -lt 50 ]; do echo "tick $(cut -d' ' -f1 /proc/uptime)"; sleep 0.2; i=$((i+1)); done
printf 'IOVM-API-MARK' | dd of=/dev/vda bs=4096 conv=sync,fsync 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
[ "$(dd if=/dev/vda bs=4096 count=1 2>/dev/null | head -c 13)" = IOVM-API-MARK ] && echo disk_after_resume=ok || echo disk_after_resume=bad
ev=
for d in /sys/class/input/input*; do
  grep -q "Power Button" $d/name 2>/dev/null && ev=$(ls $d | grep '^event')
done
echo "button_device=$ev"
echo BUTTON > /dev/$t
dd if=/dev/input/$ev of=/tmp/ev bs=24 count=1 2>/dev/null
echo power_button_seen=1
"#;

/// The client: everything it asks and gets lands in `{scratch}/api-*`.
const DRIVER: &str = r#"( S=WORK/api.sock R="{iovm} remote --api-socket WORK/api.sock"
  w() { i=0; while ! grep -q $1 WORK/signal 2>/dev/null && [ $i -lt 1500 ]; do sleep 0.2; i=$((i+1)); done; }
  i=0; while [ ! -S $S ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  stat -c %a $S > {scratch}/api-mode.txt
  $R ping > {scratch}/api-ping.txt 2>&1
  $R --json info > {scratch}/api-info-empty.txt 2>&1; echo "rc=$?" >> {scratch}/api-info-empty.txt
  $R create WORK/create.json > {scratch}/api-create.txt 2>&1; echo "rc=$?" >> {scratch}/api-create.txt
  $R --json info > {scratch}/api-info-created.json 2>&1
  $R boot > {scratch}/api-boot.txt 2>&1; echo "rc=$?" >> {scratch}/api-boot.txt
  w READY; sleep 1
  $R --json info > {scratch}/api-info-running.json 2>&1
  ( n=0; while [ $n -lt 48 ]; do $R ping > WORK/crowd-$n.txt 2>&1 & n=$((n+1)); done; wait )
  cat WORK/crowd-*.txt > {scratch}/api-crowd.txt
  $R pause > {scratch}/api-pause.txt 2>&1; echo "rc=$?" >> {scratch}/api-pause.txt
  $R --json info > {scratch}/api-info-paused.json 2>&1
  $R pause > {scratch}/api-pause-again.txt 2>&1; echo "rc=$?" >> {scratch}/api-pause-again.txt
  sleep PAUSE_SECS
  $R resume > {scratch}/api-resume.txt 2>&1; echo "rc=$?" >> {scratch}/api-resume.txt
  $R remove-device nothing-here > {scratch}/api-remove.txt 2>&1; echo "rc=$?" >> {scratch}/api-remove.txt
  w BUTTON; sleep 0.5
  $R --json counters > {scratch}/api-counters.json 2>&1
  $R counters > {scratch}/api-counters.txt 2>&1
  $R power-button > {scratch}/api-button.txt 2>&1; echo "rc=$?" >> {scratch}/api-button.txt
  i=0; while ! $R --json info 2>/dev/null | grep -q '"Shutdown"' && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
  $R --json info > {scratch}/api-info-after.json 2>&1
  $R shutdown-vmm > {scratch}/api-shutdown.txt 2>&1; echo "rc=$?" >> {scratch}/api-shutdown.txt
) >/dev/null 2>&1 &"#;

fn guest_run() -> GuestRun {
    let plain = GuestRun::new("api").script(GUEST_SCRIPT);
    let create = json!({
        "payload": {
            "kernel": "{guest}/vmlinuz",
            "initramfs": "{guest}/initramfs.cpio.gz",
            "cmdline": plain.kernel_cmdline(),
        },
        "cpus": {"boot_vcpus": 1, "max_vcpus": 1},
        "memory": {"size": 512u64 << 20},
        "disks": [{"path": format!("{WORK}/disk.img"), "id": "data"}],
        "serial": {"mode": "Tty"},
        "console": {"mode": "Off"},
        "iovm_devices": [
            {"kind": "root-port", "id": "rp0"},
            {"kind": "virtio-rng", "id": "rng0", "bus": "rp0"},
            {"kind": "pci-serial", "output": format!("{WORK}/signal")},
        ],
    });
    let driver = DRIVER
        .replace("WORK", WORK)
        .replace("PAUSE_SECS", &PAUSE_SECS.to_string());
    plain
        .empty_vmm()
    .host_before(format!(
        "mkdir -p {WORK} && dd if=/dev/zero of={WORK}/disk.img bs=1M count=8 2>/dev/null && \
         cat > {WORK}/create.json <<'EOF'\n{create}\nEOF\n{driver}"
    ))
    .host_after(format!(
        "sleep 0.5; [ -e {WORK}/api.sock ] && echo present > {{scratch}}/api-sock-after.txt; rm -rf {WORK}"
    ))
    .args(["--api-socket", &format!("{WORK}/api.sock")])
    .timeout(std::time::Duration::from_secs(240))
}

/// Where the command-line VM's socket and signal file live.
const WORK2: &str = "/dev/shm/iovm-api2";

/// A VM from the command line (`--kernel`, which the harness gives) that
/// the API also manages: read it, then end it with `vm.shutdown`.
fn cmdline_run() -> GuestRun {
    let driver = r#"( R="{iovm} remote --api-socket WORK2/api.sock"
  i=0; while ! grep -q READY WORK2/signal 2>/dev/null && [ $i -lt 1500 ]; do sleep 0.2; i=$((i+1)); done
  $R --json info > {scratch}/api2-info.json 2>&1
  $R shutdown > {scratch}/api2-shutdown.txt 2>&1; echo "rc=$?" >> {scratch}/api2-shutdown.txt
) >/dev/null 2>&1 &"#
        .replace("WORK2", WORK2);
    GuestRun::new("api-cmdline")
        .host_before(format!("mkdir -p {WORK2} && {driver}"))
        .host_after(format!("rm -rf {WORK2}"))
        .args(["--api-socket", &format!("{WORK2}/api.sock"), "--device"])
        .arg(format!("pci-serial,output={WORK2}/signal"))
        .script("t=$(ls /sys/bus/pci/devices/*/tty | grep ttyS | head -1)\necho READY > /dev/$t\nsleep 120")
        .timeout(std::time::Duration::from_secs(240))
}

/// Where the panicking VM's socket lives.
const WORK3: &str = "/dev/shm/iovm-api3";

/// An API-owned VM whose kernel panics: `vm.info` says so and iovm stays;
/// booted again, it panics again (the VMM outlives its machines); then
/// `vmm.shutdown`.
fn panic_run() -> GuestRun {
    let plain = GuestRun::new("api-panic").script("echo c > /proc/sysrq-trigger");
    let create = json!({
        "payload": {
            "kernel": "{guest}/vmlinuz",
            "initramfs": "{guest}/initramfs.cpio.gz",
            "cmdline": plain.kernel_cmdline(),
        },
        "serial": {"mode": "Tty"},
    });
    let driver = r#"( R="{iovm} remote --api-socket WORK3/api.sock"
  i=0; while [ ! -S WORK3/api.sock ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  shut() { i=0; while ! $R --json info 2>/dev/null | grep -q '"Shutdown"' && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done; }
  $R create WORK3/create.json && $R boot; shut
  $R --json info > {scratch}/api3-info-1.json 2>&1
  $R boot; shut
  $R --json info > {scratch}/api3-info-2.json 2>&1
  $R shutdown-vmm
) >/dev/null 2>&1 &"#
        .replace("WORK3", WORK3);
    plain
        .empty_vmm()
        .host_before(format!(
            "mkdir -p {WORK3} && cat > {WORK3}/create.json <<'EOF'\n{create}\nEOF\n{driver}"
        ))
        .host_after(format!("rm -rf {WORK3}"))
        .args(["--api-socket", &format!("{WORK3}/api.sock")])
        .timeout(std::time::Duration::from_secs(240))
}

struct Results {
    run: RunResult,
    cmdline: RunResult,
    panic: RunResult,
    scratch: std::path::PathBuf,
}

fn results() -> &'static Results {
    static RESULTS: OnceLock<Results> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let iovm = std::path::Path::new(env!("CARGO_BIN_EXE_iovm"));
        let batch = Batch::new().expect("set up the test batch");
        let mut list = batch
            .run(iovm, &[guest_run(), cmdline_run(), panic_run()])
            .expect("run the guest batch");
        let scratch = batch.scratch_dir().to_path_buf();
        // Keep what the driver wrote: the batch's directory goes with it.
        let keep = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("guest-api");
        let _ = std::fs::remove_dir_all(&keep);
        let _ = std::fs::create_dir_all(&keep);
        for e in std::fs::read_dir(&scratch).into_iter().flatten().flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with("api") {
                let _ = std::fs::copy(e.path(), keep.join(name));
            }
        }
        let panic = list.remove(2);
        let cmdline = list.remove(1);
        Results {
            run: list.remove(0),
            cmdline,
            panic,
            scratch: keep,
        }
    })
}

fn file(name: &str) -> String {
    std::fs::read_to_string(results().scratch.join(name)).unwrap_or_default()
}

fn json_file(name: &str) -> Value {
    let text = file(name);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON ({e}): {text}"))
}

#[test]
fn test_empty_vmm_is_created_and_booted_through_the_api() {
    let r = &results().run;
    assert_eq!(file("api-mode.txt").trim(), "600", "{}", r.dump());
    assert!(file("api-ping.txt").contains("version"), "{}", r.dump());
    assert!(
        file("api-info-empty.txt").contains("404"),
        "{}",
        file("api-info-empty.txt")
    );
    assert!(
        file("api-create.txt").contains("rc=0"),
        "{}",
        file("api-create.txt")
    );
    assert_eq!(json_file("api-info-created.json")["state"], "Created");
    assert!(
        file("api-boot.txt").contains("rc=0"),
        "{}\n{}",
        file("api-boot.txt"),
        r.dump()
    );
    assert!(r.boot_done(), "{}", r.dump());
}

#[test]
fn test_info_shows_running_and_the_guests_pci_addresses() {
    let info = json_file("api-info-running.json");
    assert_eq!(info["state"], "Running", "{info}");
    let tree = &info["device_tree"];
    assert_eq!(tree["data"]["kind"], "virtio-blk", "{info}");
    assert_eq!(tree["data"]["pci_bdf"], "0000:00:01.0", "{info}");
    assert_eq!(tree["rp0"]["pci_bdf"], "0000:00:02.0", "{info}");
    let rng = tree["rng0"]["pci_bdf"].as_str().unwrap_or_default();
    assert!(
        rng.ends_with(":00.0") && !rng.starts_with("0000:00:"),
        "the rng behind the root port is on the bus the guest numbered: {info}"
    );
    let seen: std::collections::BTreeMap<String, String> = results()
        .run
        .console
        .lines()
        .filter_map(|l| {
            let mut w = l.trim().strip_prefix("pcidev ")?.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect();
    for (id, vendor) in [("data", "0x1af4"), ("rng0", "0x1af4"), ("rp0", "0x1b36")] {
        let bdf = tree[id]["pci_bdf"].as_str().unwrap_or_default();
        assert_eq!(
            seen.get(bdf).map(String::as_str),
            Some(vendor),
            "{id} at {bdf}: the guest's devices are {seen:?}"
        );
    }
    assert_eq!(info["config"]["cpus"]["boot_vcpus"], 1, "{info}");
    assert_eq!(info["config"]["disks"][0]["id"], "data", "{info}");
}

#[test]
fn test_pause_stops_the_guest_and_resume_goes_on_consistently() {
    let r = &results().run;
    assert!(
        file("api-pause.txt").contains("rc=0"),
        "{}",
        file("api-pause.txt")
    );
    assert_eq!(json_file("api-info-paused.json")["state"], "Paused");
    assert!(
        file("api-pause-again.txt").contains("405"),
        "{}",
        file("api-pause-again.txt")
    );
    assert!(
        file("api-resume.txt").contains("rc=0"),
        "{}",
        file("api-resume.txt")
    );
    let ticks: Vec<f64> = r
        .console
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tick ")?.trim().parse().ok())
        .collect();
    assert_eq!(ticks.len(), 50, "{}", r.dump());
    let gap = ticks.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(
        gap >= f64::from(PAUSE_SECS) - 0.5,
        "no tick gap of the pause: largest {gap} s\n{}",
        r.dump()
    );
    assert!(
        ticks.windows(2).all(|w| w[1] >= w[0]),
        "the guest clock went back"
    );
    assert_eq!(r.fact("disk_after_resume"), "ok", "{}", r.dump());
}

#[test]
fn test_removing_a_device_that_is_not_there_is_404() {
    let text = file("api-remove.txt");
    assert!(
        text.contains("404") && text.contains("nothing-here"),
        "{text}"
    );
}

#[test]
fn test_power_button_powers_the_guest_off_and_the_vmm_exits_0() {
    let r = &results().run;
    assert!(
        file("api-button.txt").contains("rc=0"),
        "{}",
        file("api-button.txt")
    );
    assert_eq!(r.fact("power_button_seen"), "1", "{}", r.dump());
    let after = json_file("api-info-after.json");
    assert_eq!(after["state"], "Shutdown", "{after}");
    assert_eq!(after["outcome"]["reason"], "PowerOff", "{after}");
    assert!(
        file("api-shutdown.txt").contains("rc=0"),
        "{}",
        file("api-shutdown.txt")
    );
    assert_eq!(r.exit_code, Some(0), "{}", r.dump());
    assert_eq!(file("api-sock-after.txt"), "", "the socket outlived iovm");
}

#[test]
fn test_command_line_vm_is_managed_and_vm_shutdown_ends_iovm_0() {
    let r = &results().cmdline;
    assert!(r.boot_done(), "{}", r.dump());
    let info = json_file("api2-info.json");
    assert_eq!(info["state"], "Running", "{info}\n{}", r.dump());
    let kernel = info["config"]["payload"]["kernel"]
        .as_str()
        .unwrap_or_default();
    assert!(kernel.ends_with("/vmlinuz"), "{info}");
    assert!(
        file("api2-shutdown.txt").contains("rc=0"),
        "{}",
        file("api2-shutdown.txt")
    );
    assert_eq!(r.exit_code, Some(0), "{}", r.dump());
    assert!(
        r.console.contains("shut down through the API"),
        "{}",
        r.dump()
    );
}

#[test]
fn test_guest_panic_shows_in_info_and_the_vmm_boots_it_again() {
    let r = &results().panic;
    assert!(r.boot_done(), "{}", r.dump());
    let first = json_file("api3-info-1.json");
    assert_eq!(first["state"], "Shutdown", "{first}\n{}", r.dump());
    assert_eq!(first["outcome"]["reason"], "Panic", "{first}");
    assert_eq!(first["outcome"]["exit_code"], 4, "{first}");
    let second = json_file("api3-info-2.json");
    assert_eq!(second["outcome"]["reason"], "Panic", "{second}");
    assert_eq!(second["boots"], 2, "{second}");
    assert_eq!(
        r.console.matches("IOVM-GUEST: boot done").count(),
        2,
        "{}",
        r.dump()
    );
    assert_eq!(r.exit_code, Some(0), "{}", r.dump());
}

#[test]
fn test_counters_show_the_guests_disk_writes_and_the_vcpu_exits() {
    let c = json_file("api-counters.json");
    let data = &c["data"];
    assert!(data["write_ops"].as_u64().unwrap_or(0) >= 1, "{c}");
    assert!(data["write_bytes"].as_u64().unwrap_or(0) >= 4096, "{c}");
    assert!(data["read_ops"].as_u64().unwrap_or(0) >= 1, "{c}");
    assert!(c["vmm"]["exits"].as_u64().unwrap_or(0) > 0, "{c}");
    assert!(c["rng0"].is_object(), "{c}");
    let table = file("api-counters.txt");
    assert!(
        table.contains("DEVICE") && table.contains("write_ops"),
        "{table}"
    );
}

#[test]
fn test_a_crowd_of_clients_while_the_guest_runs_is_served_or_told_to_come_back() {
    let crowd = file("api-crowd.txt");
    let served = crowd.lines().filter(|l| l.starts_with("pid ")).count();
    let refused = crowd.lines().filter(|l| l.contains(": 503 ")).count();
    assert_eq!(served + refused, 48, "{crowd}");
    assert!(served >= 32, "{crowd}");
    assert!(results().run.boot_done(), "{}", results().run.dump());
}
