//! A machine's life as the guest and the host see it: ten reboots with
//! `--on-reboot restart` that leak nothing, SIGTERM as an ACPI power-button
//! press (obeyed, or ignored until the shutdown timeout), and a panicking
//! device worker ending iovm at once. One batch, so one test host boot.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use common::{disks_in, disks_out, sparse_disks, Runs};
use testkit::{Batch, GuestRun, RunResult};

/// Where iovm's disks and signal files live (tmpfs where iovm runs).
const WORK: &str = "/dev/shm/iovm-life";
/// The reboot run's disks.
const LOOP_DISKS: [&str; 2] = ["life-nvme.img", "life-vblk.img"];
/// Boots of the reboot run: the first, then ten reboots.
const BOOTS: u32 = 11;

/// The network namespace of the reboot run, with a host side that gives
/// every TAP named `ltap0` (each machine creates its own) its address.
const NETNS: &str = "/run/iovm-life-ns";
const NET_BEFORE: &str = r#"touch /run/iovm-life-ns && unshare --net=/run/iovm-life-ns true &&
nsenter --net=/run/iovm-life-ns sh -c '( i=0
  while [ $i -lt 6000 ] && [ ! -e /dev/shm/iovm-life/net-done ]; do
    if ip link show ltap0 >/dev/null 2>&1 && ! ip addr show ltap0 | grep -q 10.0.3.1; then
      ip addr add 10.0.3.1/24 dev ltap0; ip link set ltap0 up
    fi
    sleep 0.1; i=$((i+1))
  done ) >/dev/null 2>&1 &'"#;
const NET_AFTER: &str = "touch /dev/shm/iovm-life/net-done; sleep 0.3; \
umount /run/iovm-life-ns; rm -f /run/iovm-life-ns";

/// Each boot: count itself in CMOS (two ASCII digits at NVRAM byte 20; the
/// kernel itself writes the shutdown-status byte 1), check every device (a mark
/// written to both disks at the boot's own block, read back; entropy from
/// the virtio-rng; a ping over virtio-net), report, let the host sample
/// iovm, then reboot until the last boot.
const LOOP_SCRIPT: &str = r#"
nv=/sys/bus/nvmem/devices/cmos_nvram0/nvmem
n=$(dd if=$nv bs=1 skip=20 count=2 2>/dev/null)
case "$n" in [0-9][0-9]) ;; *) n=00 ;; esac
n=$(( ${n#0} + 1 ))
i=0
until dd if=/dev/nvme0n1 of=/dev/null bs=4k count=1 2>/dev/null || [ $i -ge 300 ]; do
  sleep 0.1; i=$((i+1)); done
mark() { printf 'IOVM-BOOT-%02d' $n | dd of=$1 bs=4096 seek=$n conv=sync,fsync 2>/dev/null
  sync; echo 3 > /proc/sys/vm/drop_caches
  [ "$(dd if=$1 bs=4096 skip=$n count=1 2>/dev/null | head -c 12)" = "$(printf 'IOVM-BOOT-%02d' $n)" ] && echo 1 || echo 0; }
nvme=$(mark /dev/nvme0n1)
vblk=$(mark /dev/vda)
rng=$(head -c 32 /dev/hwrng 2>/dev/null | od -An -tx1 | tr -d ' \n' | wc -c)
ip addr add 10.0.3.15/24 dev eth0 && ip link set eth0 up
ping -A -c 2 -W 5 10.0.3.1 >/dev/null 2>&1 && net=1 || net=0
echo "boot_$n=nvme:$nvme,vblk:$vblk,rng:$rng,net:$net"
t=$(ls /sys/bus/pci/devices/*/tty | grep ttyS | head -1)
echo "sample $n" > /dev/$t
sleep 1.5
if [ $n -lt BOOTS ]; then
  printf '%02d' $n | dd of=$nv bs=1 seek=20 count=2 conv=notrunc 2>/dev/null
  reboot -f
fi
echo "loop_done=$n"
"#;

/// Samples iovm's threads, open fds and RSS each time a boot says
/// `sample N` on the PCI serial card, into `{scratch}/life-samples.txt`.
const SAMPLER: &str = r#"( last=0; i=0
  while [ $i -lt 6000 ] && [ "$last" != BOOTS ]; do
    n=$(grep -o 'sample [0-9]*' /dev/shm/iovm-life/loop-signal 2>/dev/null | tail -1 | cut -d' ' -f2)
    if [ -n "$n" ] && [ "$n" != "$last" ]; then
      for p in /proc/[0-9]*; do
        if grep -q life-nvme.img $p/cmdline 2>/dev/null && grep -q '^Name:.*iovm' $p/status; then
          echo "$n $(ls $p/task | wc -l) $(cat $p/task/*/comm | grep -c iou-wrk) $(ls $p/fd | wc -l) $(grep ^VmRSS: $p/status | tr -dc 0-9)" >> {scratch}/life-samples.txt
        fi
      done
      last=$n
    fi
    sleep 0.1; i=$((i+1))
  done ) >/dev/null 2>&1 &"#;

fn loop_run() -> GuestRun {
    let nvme = format!("{WORK}/{}", LOOP_DISKS[0]);
    let vblk = format!("{WORK}/{}", LOOP_DISKS[1]);
    GuestRun::new("reboot-loop")
        // A retried test host runs this again: the samples start afresh.
        .host_before(format!(
            "rm -f {{scratch}}/life-samples.txt && {} && {{ {} }} && {{ {NET_BEFORE}; }}",
            disks_in(WORK, &LOOP_DISKS),
            SAMPLER.replace("BOOTS", &BOOTS.to_string())
        ))
        .host_after(format!("{NET_AFTER}; {}", disks_out(WORK, &LOOP_DISKS)))
        .netns(NETNS)
        .args(["--on-reboot", "restart", "--memory", "512M", "--cpus", "1"])
        .args(["--device", "nvme,id=n0", "--device"])
        .arg(format!("nvme-ns,bus=n0,path={nvme}"))
        .args(["--device"])
        .arg(format!("virtio-blk,path={vblk}"))
        .args(["--device", "virtio-rng", "--device", "virtio-net,tap=ltap0"])
        .args(["--device"])
        .arg(format!("pci-serial,output={WORK}/loop-signal"))
        .script(LOOP_SCRIPT.replace("BOOTS", &BOOTS.to_string()))
        .timeout(std::time::Duration::from_secs(720))
}

/// Waits for the power button, reports the input event the guest's
/// `button` driver produced, and ends (the guest then powers off).
const BUTTON_SCRIPT: &str = r#"
modprobe evdev
ev=
for d in /sys/class/input/input*; do
  grep -q "Power Button" $d/name 2>/dev/null && ev=$(ls $d | grep '^event')
done
echo "button_device=$ev"
t=$(ls /sys/bus/pci/devices/*/tty | grep ttyS | head -1)
if [ "$1" = ignore ]; then echo READY > /dev/$t; sleep 120; fi
echo READY > /dev/$t
dd if=/dev/input/$ev of=/tmp/ev bs=24 count=1 2>/dev/null
e=$(od -An -tx1 /tmp/ev | tr -d ' \n')
echo "power_button_event=$(echo $e | cut -c33-36):$(echo $e | cut -c37-40)"
"#;

/// Sends SIGTERM to the iovm whose command line names `signal` once the
/// guest wrote READY there.
fn sigterm_watcher(signal: &str) -> String {
    format!(
        r#"( i=0
  while ! grep -q READY {WORK}/{signal} 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.2; i=$((i+1)); done
  sleep 0.5
  for p in /proc/[0-9]*; do
    if grep -q {signal} $p/cmdline 2>/dev/null && grep -q '^Name:.*iovm' $p/status; then
      kill -TERM ${{p#/proc/}}
    fi
  done ) >/dev/null 2>&1 &"#
    )
}

fn button_run(name: &str, ignore: bool) -> GuestRun {
    let signal = format!("{name}-signal");
    let script = if ignore {
        BUTTON_SCRIPT.replace("\"$1\" = ignore", "1 = 1")
    } else {
        BUTTON_SCRIPT.replace("\"$1\" = ignore", "1 = 0")
    };
    GuestRun::new(name)
        .host_before(format!(
            "mkdir -p {WORK} && {{ {} }}",
            sigterm_watcher(&signal)
        ))
        .args(["--shutdown-timeout", "3s", "--device"])
        .arg(format!("pci-serial,output={WORK}/{signal}"))
        .script(script)
}

fn runs() -> Vec<GuestRun> {
    vec![
        button_run("sigterm-poweroff", false),
        button_run("sigterm-ignored", true),
        GuestRun::new("worker-panic")
            .env("IOVM_TEST_INJECT_PANIC", "device-worker")
            .args(["--device", "virtio-rng"])
            .script("sleep 60"),
        loop_run(),
    ]
}

struct Results {
    runs: Runs,
    samples: String,
    disks: BTreeMap<String, Vec<u8>>,
}

fn results() -> &'static Results {
    static RESULTS: OnceLock<Results> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let iovm = Path::new(env!("CARGO_BIN_EXE_iovm"));
        let batch = Batch::new().expect("set up the test batch");
        sparse_disks(batch.scratch_dir(), &LOOP_DISKS.map(|d| (d, 4)));
        let list = batch.run(iovm, &runs()).expect("run the guest batch");
        let scratch = batch.scratch_dir();
        Results {
            runs: Runs::new(list),
            samples: std::fs::read_to_string(scratch.join("life-samples.txt")).unwrap_or_default(),
            disks: LOOP_DISKS
                .iter()
                .map(|d| {
                    (
                        d.to_string(),
                        std::fs::read(scratch.join(d)).unwrap_or_default(),
                    )
                })
                .collect(),
        }
    })
}

#[track_caller]
fn run(name: &str) -> &'static RunResult {
    results().runs.get(name)
}

/// One sample of iovm: (boot, threads, io_uring io-wq threads, fds, RSS KiB).
fn samples() -> Vec<(u32, u64, u64, u64, u64)> {
    results()
        .samples
        .lines()
        .filter_map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (v.len() == 5).then(|| (v[0] as u32, v[1], v[2], v[3], v[4]))
        })
        .collect()
}

#[test]
fn test_guest_reboots_ten_times_and_every_boot_finds_its_devices() {
    let r = run("reboot-loop");
    r.assert_success();
    assert_eq!(
        r.console.matches("IOVM-GUEST: boot done").count(),
        BOOTS as usize,
        "{}",
        r.dump()
    );
    for n in 1..=BOOTS {
        assert_eq!(
            r.fact(&format!("boot_{n}")),
            "nvme:1,vblk:1,rng:64,net:1",
            "boot {n}\n{}",
            r.dump()
        );
    }
    assert_eq!(r.fact("loop_done"), BOOTS.to_string(), "{}", r.dump());
}

#[test]
fn test_every_boots_writes_reached_both_disks() {
    let _ = run("reboot-loop");
    for (name, disk) in &results().disks {
        for n in 1..=BOOTS as usize {
            let block = disk.get(n * 4096..n * 4096 + 12);
            assert_eq!(
                block,
                Some(format!("IOVM-BOOT-{n:02}").as_bytes()),
                "{name}: boot {n}'s mark"
            );
        }
    }
}

#[test]
fn test_reboots_leak_no_thread_fd_or_memory() {
    let r = run("reboot-loop");
    let s = samples();
    assert_eq!(
        s.iter().map(|x| x.0).collect::<Vec<_>>(),
        (1..=BOOTS).collect::<Vec<_>>(),
        "one sample per boot: {s:?}\n{}",
        r.dump()
    );
    let after_second: Vec<_> = s.iter().filter(|x| x.0 >= 2).collect();
    let (_, threads, iowq, fds, rss) = *after_second[0];
    for &&(boot, t, w, f, kib) in &after_second {
        assert_eq!(
            t - w,
            threads - iowq,
            "boot {boot}: iovm's own threads (io-wq workers aside) {s:?}"
        );
        assert_eq!(f, fds, "boot {boot}: open fds {s:?}");
        assert!(
            kib * 10 <= rss * 11 && kib * 10 >= rss * 9,
            "boot {boot}: RSS {kib} KiB against {rss} KiB at boot 2 {s:?}"
        );
    }
}

#[test]
fn test_sigterm_presses_the_power_button_and_the_guest_powers_off() {
    let r = run("sigterm-poweroff");
    assert!(!r.timed_out, "{}", r.dump());
    assert_eq!(r.exit_code, Some(0), "{}", r.dump());
    assert!(r.fact("button_device").starts_with("event"), "{}", r.dump());
    // EV_KEY (1), KEY_POWER (116 = 0x74), little-endian.
    assert_eq!(r.fact("power_button_event"), "0100:7400", "{}", r.dump());
    assert!(
        r.console.contains("pressing the guest's power button"),
        "{}",
        r.dump()
    );
}

#[test]
fn test_guest_that_ignores_the_power_button_is_ended_after_the_timeout() {
    let r = run("sigterm-ignored");
    assert!(!r.timed_out, "{}", r.dump());
    assert_eq!(r.exit_code, Some(6), "{}", r.dump());
    assert!(
        r.console.contains("did not power off within 3 s"),
        "{}",
        r.dump()
    );
}

#[test]
fn test_panicking_device_worker_ends_iovm_with_status_7() {
    let r = run("worker-panic");
    assert!(!r.timed_out, "{}", r.dump());
    assert_eq!(r.exit_code, Some(7), "{}", r.dump());
    assert!(
        r.console
            .contains("iovm: internal error: thread 'virtio-rng' panicked at"),
        "{}",
        r.dump()
    );
    assert!(
        !r.console.contains("IOVM-GUEST: exit status"),
        "the guest script must not have finished\n{}",
        r.dump()
    );
}
