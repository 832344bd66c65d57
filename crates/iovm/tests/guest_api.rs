//! The management API against a real guest: iovm starts with no machine
//! (`--api-socket` alone), a client creates and boots the guest through
//! the API (`iovm remote`: the test host has no curl), reads `vm.info`
//! (state Running, the PCI addresses the guest enumerated), pauses and
//! resumes the vCPUs (the guest's clock jumps over the pause, its disk
//! still reads back what it wrote), presses the power button (the guest
//! powers off, `vm.info` says so), and ends the VMM (`vmm.shutdown`: exit
//! 0, socket removed); `vm.counters` shows the guest's disk writes. A second run boots its VM from the command line
//! with the API beside it: `vm.info` reads it, `vm.shutdown` ends it and
//! iovm with it (exit 0). One batch, which also runs the guest-driven
//! `pciehp` power cycle of `hotplug/pciehp.rs` (one test-host boot for
//! both).

mod common;
#[path = "hotplug/pciehp.rs"]
mod pciehp;

use std::sync::OnceLock;

use serde_json::{json, Value};
use testkit::{Batch, GuestRun, RunResult, DEFAULT_INITRAMFS, DEFAULT_KERNEL};

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
            "kernel": format!("{{guest}}/{DEFAULT_KERNEL}"),
            "initramfs": format!("{{guest}}/{DEFAULT_INITRAMFS}"),
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
            "kernel": format!("{{guest}}/{DEFAULT_KERNEL}"),
            "initramfs": format!("{{guest}}/{DEFAULT_INITRAMFS}"),
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

/// Where the hot-plug run's socket, disks, signal file and received data
/// live (tmpfs).
const WORK4: &str = "/dev/shm/iovm-api4";
/// The network namespace the hot-plug run's iovm and its TAP live in.
const NETNS4: &str = "/run/iovm-api-netns";
/// The fio size the guest writes to the hot-added disk, MiB.
const FIO_MIB: u64 = 8;

/// The guest of the hot-plug run: loads the virtio drivers first (the
/// guest image has no udev to load them when a device appears later, and
/// no virtio device is there at boot to make its coldplug load them),
/// waits for a disk to appear (pciehp),
/// runs fio with crc32c verification on it, reports its own block
/// statistics, waits for the disk to go; then waits for a network card,
/// pings the namespace's address and sends it a random MiB, waits for
/// the card to go. Each step says so on the pci-serial signal file.
const HOTPLUG_SCRIPT: &str = r#"
modprobe virtio_pci; modprobe virtio_blk; modprobe virtio_net
t=$(ls /sys/bus/pci/devices/*/tty | grep ttyS | head -1)
echo READY > /dev/$t
i=0; until [ -e /sys/block/vda ] || [ $i -ge 1200 ]; do sleep 0.1; i=$((i+1)); done
echo "hp_disk_seen=$([ -e /sys/block/vda ] && echo 1 || echo 0)"
pci=$(basename $(readlink -f /sys/block/vda/device/..))
echo "hp_disk_pci=$pci"
fio --name=hp --filename=/dev/vda --direct=1 --ioengine=psync --rw=randwrite --bs=4k \
    --size=FIO_MIBm --verify=crc32c --do_verify=1 --output-format=terse --terse-version=3 > /tmp/fio 2>&1
echo "hp_fio=$? hp_fio_errors=$(cut -d';' -f5 /tmp/fio | head -1)"
echo "hp_fio_read_kb=$(cut -d';' -f6 /tmp/fio | head -1) hp_fio_write_kb=$(cut -d';' -f47 /tmp/fio | head -1)"
set -- $(cat /sys/block/vda/stat)
echo "hp_stat_read_ios=$1 hp_stat_read_sectors=$3 hp_stat_write_ios=$5 hp_stat_write_sectors=$7"
echo DISK_DONE > /dev/$t
i=0; while [ -e /sys/block/vda ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
echo "hp_disk_gone=$([ -e /sys/block/vda ] && echo 0 || echo 1)"
echo "hp_disk_fn_gone=$([ -e /sys/bus/pci/devices/$pci ] && echo 0 || echo 1)"
echo DISK_GONE > /dev/$t
i=0; until [ -e /sys/class/net/eth0 ] || [ $i -ge 1200 ]; do sleep 0.1; i=$((i+1)); done
echo "hp_net_seen=$([ -e /sys/class/net/eth0 ] && echo 1 || echo 0)"
echo "hp_net_mac=$(cat /sys/class/net/eth0/address)"
ip link set lo up
ip addr add 10.0.4.2/24 dev eth0 && ip link set eth0 up
i=0; until ping -c 1 -W 2 10.0.4.1 > /dev/null 2>&1 || [ $i -ge 15 ]; do i=$((i+1)); done
ping -A -c 3 -W 5 10.0.4.1 > /dev/null 2>&1
echo "hp_ping=$?"
head -c 1048576 /dev/urandom > /tmp/blob
echo "hp_blob_sum=$(sha256sum /tmp/blob | cut -d' ' -f1)"
nc 10.0.4.1 5002 < /tmp/blob
echo "hp_nc=$?"
echo NET_DONE > /dev/$t
i=0; while [ -e /sys/class/net/eth0 ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
echo "hp_net_gone=$([ -e /sys/class/net/eth0 ] && echo 0 || echo 1)"
echo NET_GONE > /dev/$t
dmesg | grep -i 'pciehp\|virtio'
dmesg | grep -v 'clock\|pciehp' | tail -n 40
"#;

/// The client of the hot-plug run: creates and boots the VM, counts
/// iovm's threads and descriptors (/proc), adds a disk, reads `vm.info`
/// and the counters, asks for a second disk with no port free, removes
/// the disk and waits for the counts to come back; then adds a card on a
/// TAP it opens in the namespace and passes as a descriptor, gives the
/// TAP an address and a listener, reads the counters, removes the card.
const HOTPLUG_DRIVER: &str = r#"( S=WORKDIR/api.sock R="{iovm} remote --api-socket WORKDIR/api.sock" O={scratch}/api-hp
  w() { i=0; while ! grep -q $1 WORKDIR/signal 2>/dev/null && [ $i -lt 1500 ]; do sleep 0.2; i=$((i+1)); done; }
  i=0; while [ ! -S $S ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  me=$(readlink -f {iovm}); P=
  for p in /proc/[0-9]*; do
    [ "$(readlink -f $p/exe 2>/dev/null)" = "$me" ] && grep -qa -- --api-socket $p/cmdline 2>/dev/null &&
      ! grep -qa remote $p/cmdline && P=${p#/proc/}
  done
  echo "pid=$P" > $O-pid.txt
  cnt() { echo "threads=$(ls /proc/$P/task | wc -l) fds=$(ls /proc/$P/fd | wc -l)"; }
  settle() { i=0; while [ "$(cnt)" != "$(cat $O-count-before.txt)" ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done; cnt; }
  $R create WORKDIR/create.json > $O-create.txt 2>&1; echo "rc=$?" >> $O-create.txt
  $R boot > $O-boot.txt 2>&1; echo "rc=$?" >> $O-boot.txt
  w READY; sleep 2
  cnt > $O-count-before.txt
  $R --json add-disk WORKDIR/hp.img --id hpdisk > $O-add-disk.json 2>$O-add-disk.err
  $R --json info > $O-info-disk.json 2>&1
  cnt > $O-count-disk.txt
  $R add-disk WORKDIR/hp2.img --id hpdisk2 > $O-add-full.txt 2>&1; echo "rc=$?" >> $O-add-full.txt
  w DISK_DONE
  $R --json counters > $O-counters-disk.json 2>&1
  $R remove-device hpdisk > $O-remove-disk.txt 2>&1; echo "rc=$?" >> $O-remove-disk.txt
  $R --json info > $O-info-removed.json 2>&1
  $R --json counters > $O-counters-removed.json 2>&1
  settle > $O-count-disk-removed.txt
  w DISK_GONE
  nsenter --net=NETNSFILE $R --json add-net --open-tap hptap0 --id hpnet --mac 52:54:00:12:34:77 > $O-add-net.json 2>$O-add-net.err
  cnt > $O-count-net.txt
  nsenter --net=NETNSFILE sh -c 'ip addr add 10.0.4.1/24 dev hptap0 && ip link set hptap0 up
    ( sleep 3600 | nc -l -p 5002 > WORKDIR/net.bin ) >/dev/null 2>&1 &'
  w NET_DONE
  i=0; while [ "$(wc -c < WORKDIR/net.bin)" -lt 1048576 ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
  $R --json counters > $O-counters-net.json 2>&1
  sha256sum WORKDIR/net.bin | cut -d' ' -f1 > $O-net-sum.txt
  $R remove-device hpnet > $O-remove-net.txt 2>&1; echo "rc=$?" >> $O-remove-net.txt
  settle > $O-count-net-removed.txt
  echo "tap_after=$(nsenter --net=NETNSFILE ip -o link show | grep -c hptap0) lo_seen=$(nsenter --net=NETNSFILE ip -o link show | grep -c ': lo:')" > $O-tap-after.txt
  w NET_GONE
  i=0; while ! $R --json info 2>/dev/null | grep -q '"Shutdown"' && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
  $R shutdown-vmm > $O-shutdown.txt 2>&1; echo "rc=$?" >> $O-shutdown.txt
) >/dev/null 2>&1 &"#;

/// An API-owned VM with one free hot-plug root port: a virtio-blk disk and
/// then a virtio-net card are added and removed through the API while the
/// guest's pciehp takes them in and lets them go.
fn hotplug_run() -> GuestRun {
    let plain = GuestRun::new("api-hotplug")
        .script(HOTPLUG_SCRIPT.replace("FIO_MIB", &FIO_MIB.to_string()));
    let create = json!({
        "payload": {
            "kernel": format!("{{guest}}/{DEFAULT_KERNEL}"),
            "initramfs": format!("{{guest}}/{DEFAULT_INITRAMFS}"),
            "cmdline": plain.kernel_cmdline(),
        },
        "cpus": {"boot_vcpus": 1, "max_vcpus": 1},
        "memory": {"size": 512u64 << 20},
        "serial": {"mode": "Tty"},
        "console": {"mode": "Off"},
        "iovm_devices": [
            {"kind": "root-port", "id": "rp1"},
            {"kind": "pci-serial", "output": format!("{WORK4}/signal")},
        ],
    });
    let driver = HOTPLUG_DRIVER
        .replace("WORKDIR", WORK4)
        .replace("NETNSFILE", NETNS4);
    plain
        .empty_vmm()
        .netns(NETNS4)
        .host_before(format!(
            "mkdir -p {WORK4} && touch {NETNS4} && unshare --net={NETNS4} true && \
             dd if=/dev/zero of={WORK4}/hp.img bs=1M count=32 2>/dev/null && \
             dd if=/dev/zero of={WORK4}/hp2.img bs=1M count=1 2>/dev/null && \
             cat > {WORK4}/create.json <<'EOF'\n{create}\nEOF\n{driver}"
        ))
        .host_after(format!("umount {NETNS4}; rm -f {NETNS4}; rm -rf {WORK4}"))
        .args(["--api-socket", &format!("{WORK4}/api.sock")])
        .timeout(std::time::Duration::from_secs(420))
}

struct Results {
    run: RunResult,
    cmdline: RunResult,
    panic: RunResult,
    hotplug: RunResult,
    scratch: std::path::PathBuf,
    /// The `pciehp` run ([`pciehp::runs`]).
    pciehp: RunResult,
    /// [`pciehp::head`].
    pciehp_head: Vec<u8>,
}

fn results() -> &'static Results {
    static RESULTS: OnceLock<Results> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let iovm = std::path::Path::new(env!("CARGO_BIN_EXE_iovm"));
        let batch = Batch::new().expect("set up the test batch");
        common::sparse_disks(batch.scratch_dir(), &pciehp::DISKS);
        let mut runs = vec![guest_run(), cmdline_run(), panic_run(), hotplug_run()];
        runs.extend(pciehp::runs());
        let mut list = batch.run(iovm, &runs).expect("run the guest batch");
        let scratch = batch.scratch_dir().to_path_buf();
        let pciehp_head = pciehp::head(&scratch);
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
        let pciehp = list.remove(4);
        let hotplug = list.remove(3);
        let panic = list.remove(2);
        let cmdline = list.remove(1);
        Results {
            run: list.remove(0),
            cmdline,
            panic,
            hotplug,
            scratch: keep,
            pciehp,
            pciehp_head,
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
    assert!(kernel.ends_with(&format!("/{DEFAULT_KERNEL}")), "{info}");
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

/// `threads=N fds=M` as the hot-plug driver counted them.
fn counts(name: &str) -> (u64, u64) {
    let text = file(name);
    let get = |key: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {name}: {text:?}"))
    };
    (get("threads="), get("fds="))
}

#[test]
fn test_disk_added_through_the_api_is_behind_the_free_port_in_info_and_counters() {
    let r = &results().hotplug;
    let added = json_file("api-hp-add-disk.json");
    assert_eq!(
        added["id"],
        "hpdisk",
        "{added}\n{}",
        file("api-hp-add-disk.err")
    );
    let bdf = added["bdf"].as_str().unwrap_or_default().to_string();
    assert!(
        bdf.ends_with(":00.0") && !bdf.starts_with("0000:00:"),
        "behind the root port: {added}"
    );
    let info = json_file("api-hp-info-disk.json");
    let node = &info["device_tree"]["hpdisk"];
    assert_eq!(node["kind"], "virtio-blk", "{info}");
    assert_eq!(node["parent"], "rp1", "{info}");
    assert_eq!(node["pci_bdf"].as_str(), Some(bdf.as_str()), "{info}");
    let config = &info["config"];
    let listed = ["disks", "iovm_devices"]
        .iter()
        .flat_map(|k| config[k].as_array().cloned().unwrap_or_default())
        .any(|d| d["id"] == "hpdisk");
    assert!(listed, "the config lists the added disk: {info}");
    let c = json_file("api-hp-counters-disk.json");
    assert!(c["hpdisk"]["write_ops"].is_u64(), "{c}");
    assert!(
        r.console
            .contains("Slot(1) Powering on due to button press"),
        "the guest's pciehp took the button the add pressed\n{}",
        r.dump()
    );
}

#[test]
fn test_hot_added_disk_appears_in_the_guest_and_passes_fio_verify() {
    let r = &results().hotplug;
    let bdf = json_file("api-hp-add-disk.json")["bdf"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(r.fact("hp_disk_seen"), "1", "{}", r.dump());
    assert_eq!(r.fact("hp_disk_pci"), bdf, "{}", r.dump());
    assert_eq!(r.fact("hp_fio"), "0", "{}", r.dump());
    assert_eq!(r.fact("hp_fio_errors"), "0", "{}", r.dump());
    assert_eq!(r.fact("hp_disk_gone"), "1", "{}", r.dump());
    assert_eq!(r.fact("hp_disk_fn_gone"), "1", "{}", r.dump());
}

#[test]
fn test_a_second_device_with_no_free_hotplug_port_is_409() {
    let text = file("api-hp-add-full.txt");
    assert!(
        text.contains("409") && text.contains("root-port") && text.contains("rc=1"),
        "{text}"
    );
}

#[test]
fn test_hot_added_disk_counters_match_what_fio_did() {
    let r = &results().hotplug;
    let c = json_file("api-hp-counters-disk.json");
    let d = &c["hpdisk"];
    let n = |k: &str| d[k].as_u64().unwrap_or_else(|| panic!("no {k}: {c}"));
    let fact = |k: &str| -> u64 {
        r.fact(k)
            .parse()
            .unwrap_or_else(|_| panic!("{k}: {}", r.dump()))
    };
    let fio_bytes = FIO_MIB << 20;
    // fio wrote FIO_MIB in 4 KiB blocks and read them all back to verify.
    assert!(n("write_bytes") >= fio_bytes, "{c}");
    assert!(n("write_ops") >= fio_bytes / 4096, "{c}");
    assert!(n("read_bytes") >= fio_bytes, "{c}");
    assert!(n("read_ops") >= fio_bytes / 4096, "{c}");
    assert_eq!(fact("hp_fio_write_kb") << 10, fio_bytes, "{}", r.dump());
    // Every request the guest's block layer completed, and at most a few
    // more it does not count there (a serial number read).
    let near = |device: u64, guest: u64, what: &str| {
        assert!(
            (guest..=guest + 8).contains(&device),
            "{what}: the device counted {device}, the guest {guest}\n{c}\n{}",
            r.dump()
        );
    };
    near(n("write_ops"), fact("hp_stat_write_ios"), "writes");
    near(n("read_ops"), fact("hp_stat_read_ios"), "reads");
    near(
        n("write_bytes") / 512,
        fact("hp_stat_write_sectors"),
        "written sectors",
    );
    assert!(
        n("read_bytes") / 512 >= fact("hp_stat_read_sectors"),
        "read sectors: {c}\n{}",
        r.dump()
    );
    assert_eq!(
        n("errors_io") + n("errors_invalid") + n("errors_dma"),
        0,
        "{c}"
    );
    let removed = json_file("api-hp-counters-removed.json");
    assert!(
        removed.get("hpdisk").is_none(),
        "counters outlived the device: {removed}"
    );
}

#[test]
fn test_removed_disk_goes_from_info_and_counters_and_iovm_gives_back_its_threads_and_fds() {
    let r = &results().hotplug;
    let text = file("api-hp-remove-disk.txt");
    assert!(text.contains("rc=0"), "{text}\n{}", r.dump());
    assert!(
        r.console
            .contains("Slot(1): Powering off due to button press"),
        "the guest let it go through pciehp\n{}",
        r.dump()
    );
    let removed = json_file("api-hp-counters-removed.json");
    assert!(removed.get("hpdisk").is_none(), "{removed}");
    let info = json_file("api-hp-info-removed.json");
    assert!(info["device_tree"].get("hpdisk").is_none(), "{info}");
    let before = counts("api-hp-count-before.txt");
    let during = counts("api-hp-count-disk.txt");
    assert!(
        during.1 > before.1,
        "the disk holds descriptors: {before:?} {during:?}"
    );
    assert_eq!(
        counts("api-hp-count-disk-removed.txt"),
        before,
        "{during:?}"
    );
}

#[test]
fn test_hot_added_net_on_a_passed_tap_moves_data_and_goes_cleanly() {
    let r = &results().hotplug;
    let added = json_file("api-hp-add-net.json");
    assert_eq!(
        added["id"],
        "hpnet",
        "{added}\n{}",
        file("api-hp-add-net.err")
    );
    assert_eq!(r.fact("hp_net_seen"), "1", "{}", r.dump());
    assert_eq!(r.fact("hp_net_mac"), "52:54:00:12:34:77", "{}", r.dump());
    assert_eq!(r.fact("hp_ping"), "0", "{}", r.dump());
    assert_eq!(r.fact("hp_nc"), "0", "{}", r.dump());
    assert_eq!(
        file("api-hp-net-sum.txt").trim(),
        r.fact("hp_blob_sum"),
        "the namespace received what the guest sent\n{}",
        r.dump()
    );
    let c = json_file("api-hp-counters-net.json");
    let tx = c["hpnet"]["tx_bytes"].as_u64().unwrap_or(0);
    assert!(tx >= 1 << 20, "{c}");
    assert!(c["hpnet"]["rx_frames"].as_u64().unwrap_or(0) > 0, "{c}");
    let text = file("api-hp-remove-net.txt");
    assert!(text.contains("rc=0"), "{text}\n{}", r.dump());
    assert_eq!(r.fact("hp_net_gone"), "1", "{}", r.dump());
    let before = counts("api-hp-count-before.txt");
    let during = counts("api-hp-count-net.txt");
    assert!(
        during.1 > before.1,
        "the card holds descriptors: {before:?} {during:?}"
    );
    assert_eq!(counts("api-hp-count-net-removed.txt"), before, "{during:?}");
    assert_eq!(
        file("api-hp-tap-after.txt").trim(),
        "tap_after=0 lo_seen=1",
        "iovm closed the TAP, so it went (and the namespace was there to look in)"
    );
    assert!(file("api-hp-shutdown.txt").contains("rc=0"), "{}", r.dump());
    assert_eq!(r.exit_code, Some(0), "{}", r.dump());
}
