//! The seccomp filters (crates/sandbox) around a real guest:
//!
//! - **Every thread filtered, no call missing.** One machine with every
//!   emulated device kind that has a worker (NVMe, AHCI, virtio-blk,
//!   virtio-net, virtio-rng, virtio-console, e1000e) runs disk I/O with
//!   flushes on each disk, reads the entropy device, writes the console,
//!   pings over the network, reboots (the main thread builds the second
//!   machine under its filter) and powers off, all with `--seccomp log`:
//!   the test host's kernel log shows no call outside a filter
//!   (`audit: type=1326`), and every thread iovm has while the guest runs
//!   reads `Seccomp: 2` in its `/proc` status.
//! - **A forbidden call kills.** With the test hook
//!   `--seccomp-selftest KIND`, a thread of that kind makes a call no
//!   filter allows right after entering its filter: iovm ends with status
//!   8 and one line naming the thread kind and the call, for the main
//!   thread, the signal thread, a vCPU and the device workers.
//!
//! - **Unprivileged.** The same machine runs with `--user 65534:65534`:
//!   iovm opens everything as root, becomes the user for good (every
//!   thread's IDs, no capability in any set, `NoNewPrivs`), and builds the
//!   second machine after the reboot from what it kept open.
//!
//! - **A hostile driver.** `pci-hostile` (guest-tools) takes one function
//!   of every kind with a device model (NVMe, AHCI, virtio-blk, -net, -rng,
//!   -console, e1000e, PCI serial card, root port) from its driver and
//!   writes random values to its configuration space and every register
//!   of its BARs (Bus Master and MSI enables kept clear, so that the guest
//!   itself survives); iovm, filters on, runs on, and a witness disk that
//!   was not attacked passes fio verification before and after.
//!
//! The filters are on by default, so every other guest test also runs
//! with them enforced.

mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use common::{disks_in, disks_out, sparse_disks, Runs};
use testkit::{Batch, GuestRun, RunResult};

const WORK: &str = "/dev/shm/iovm-seccomp";
const DISKS: [(&str, u64); 3] = [
    ("sc-nvme.img", 16),
    ("sc-vblk.img", 16),
    ("sc-sata.img", 16),
];
const NETNS: &str = "/run/iovm-netns-sc";
/// virtio-net's MAC, so the guest finds its interface among two.
const VNET_MAC: &str = "52:54:00:12:34:a1";

/// Boot 1 and boot 2 (the count kept in vda's first bytes): I/O with
/// verification and flushes on each disk, entropy, the console, a ping
/// and 256 KiB over virtio-net, the e1000e link up; "sample N" on the PCI
/// serial card asks the host to look at iovm's threads; boot 1 then
/// reboots, boot 2 ends (power off).
const SCRIPT: &str = r#"
modprobe sd_mod 2>/dev/null
n=$(dd if=/dev/vda bs=1 count=1 2>/dev/null | tr -dc 0-9); [ -z "$n" ] && n=0; n=$((n+1))
printf '%d' $n | dd of=/dev/vda bs=1 count=1 conv=notrunc,fsync 2>/dev/null
echo "boot=$n"
i=0; until [ -e /dev/sda ] && [ -e /dev/nvme0n1 ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done
for d in nvme0n1 vda sda; do
  fio --name=s --filename=/dev/$d --offset=1M --size=2M --bs=4k --rw=randwrite --direct=1 \
      --ioengine=libaio --iodepth=8 --verify=crc32c --end_fsync=1 --minimal > /tmp/fio-$d 2>&1
  echo "fio_${d}_$n=$?"
done
echo "rng_$n=$(head -c 64 /dev/hwrng | wc -c)"
echo "hvc_$n=$(echo console-line > /dev/hvc0 && echo 1)"
ip link set lo up
for i in /sys/class/net/eth*; do
  ip link set $(basename $i) up
  [ "$(cat $i/address)" = VNET_MAC ] && vn=$(basename $i)
done
ip addr add 10.0.7.2/24 dev $vn
echo "ping_$n=$(ping -c 3 -W 5 10.0.7.1 >/dev/null 2>&1 && echo 1 || echo 0)"
t=$(ls /sys/bus/pci/devices/*/tty | grep ttyS | head -1)
echo "sample $n" > /dev/$t
sleep 3
if [ $n -lt 2 ]; then reboot -f; fi
echo "done=$n"
"#;

/// In the namespace, once iovm has made the TAPs: the peer's address, and
/// the e1000e's TAP up. Then a sampler that, each time a boot says
/// `sample N`, writes each iovm thread's name and seccomp mode.
const BEFORE: &str = r#"dmesg -c >/dev/null 2>&1; touch NETNS && unshare --net=NETNS true &&
nsenter --net=NETNS sh -c '( i=0
  while ! ip link show sctap0 >/dev/null 2>&1 && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
  ip addr add 10.0.7.1/24 dev sctap0 && ip link set sctap0 up; ip link set sctap1 up ) >/dev/null 2>&1 &' &&
( last=0; i=0
  while [ $i -lt 6000 ] && [ "$last" != 2 ]; do
    n=$(grep -o 'sample [0-9]*' WORK/signal 2>/dev/null | tail -1 | cut -d' ' -f2)
    if [ -n "$n" ] && [ "$n" != "$last" ]; then
      for p in /proc/[0-9]*; do
        if grep -q sc-nvme.img $p/cmdline 2>/dev/null && grep -q '^Name:.*iovm' $p/status; then
          for t in $p/task/*; do
            echo "$n $(cat $t/comm) $(grep '^Seccomp:' $t/status | tr -dc 0-9) $(grep '^Uid:' $t/status | tr -s ' \t' ,)"
          done >> {scratch}/seccomp-threads.txt
          grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' $p/status | tr -s ' \t' ' ' | sed "s/^/$n /" >> {scratch}/seccomp-ids.txt
        fi
      done
      last=$n
    fi
    sleep 0.1; i=$((i+1))
  done ) >/dev/null 2>&1 &"#;

/// The kernel's log of calls outside a filter, then the namespace goes.
const AFTER: &str = "dmesg | grep 'type=1326' > {scratch}/seccomp-audit.txt; \
umount NETNS; rm -f NETNS";

fn log_run() -> GuestRun {
    let names = DISKS.map(|d| d.0);
    GuestRun::new("seccomp-log")
        .host_before(format!(
            "{} && {}",
            disks_in(WORK, &names),
            BEFORE.replace("NETNS", NETNS).replace("WORK", WORK)
        ))
        .host_after(format!(
            "{}; {}",
            AFTER.replace("NETNS", NETNS),
            disks_out(WORK, &names)
        ))
        .netns(NETNS)
        .args(["--seccomp", "log", "--on-reboot", "restart"])
        .args(["--user", "65534:65534"])
        .args(["--cpus", "1", "--memory", "768M"])
        .args(["--device", "nvme,id=n0", "--device"])
        .arg(format!("nvme-ns,bus=n0,path={WORK}/{}", names[0]))
        .args(["--device"])
        .arg(format!("virtio-blk,path={WORK}/{}", names[1]))
        .args(["--device", "ahci,id=s0,ports=1", "--device"])
        .arg(format!("sata-disk,bus=s0,path={WORK}/{}", names[2]))
        .args(["--device", "virtio-rng", "--device", "virtio-console"])
        .args(["--device"])
        .arg(format!("virtio-net,tap=sctap0,mac={VNET_MAC}"))
        .args(["--device", "e1000e,tap=sctap1"])
        .args(["--device"])
        .arg(format!("pci-serial,output={WORK}/signal"))
        .script(SCRIPT.replace("VNET_MAC", VNET_MAC))
        .timeout(Duration::from_secs(600))
}

/// The functions the hostile run attacks, one of each kind with a device
/// model (slot numbers in hex), and the seed of its random accesses.
const ATTACKED: [(&str, &str); 9] = [
    ("03", "nvme"),
    ("04", "ahci"),
    ("05", "virtio-blk"),
    ("06", "virtio-net"),
    ("07", "virtio-rng"),
    ("08", "virtio-console"),
    ("09", "e1000e"),
    ("0a", "pci-serial"),
    ("0b", "root-port"),
];
const HOSTILE_SEED: u64 = 20261208;
const HOSTILE_ACCESSES: u32 = 3000;

/// The witness disk (virtio-blk at 00:02.0) is verified before and after
/// `pci-hostile` attacks every other function.
const HOSTILE_SCRIPT: &str = r#"
i=0; until [ -e /dev/vda ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done
w() { fio --name=w --filename=/dev/vda --size=4M --bs=4k --rw=randwrite --direct=1       --ioengine=libaio --iodepth=8 --verify=crc32c --end_fsync=1 --minimal > /tmp/fio 2>&1; echo $?; }
echo "witness_before=$(w)"
pci-hostile SEED ACCESSES BDFS > /tmp/hostile 2>&1; echo "hostile_rc=$?"
cat /tmp/hostile
echo "hostile_attacked=$(grep -c '^hostile 0000' /tmp/hostile)"
echo "witness_after=$(w)"
echo "kernel_bugs=$(dmesg | grep -c 'BUG:\|Oops\|Kernel panic')"
"#;

fn hostile_run() -> GuestRun {
    let bdfs: Vec<String> = ATTACKED
        .iter()
        .map(|(slot, _)| format!("0000:00:{slot}.0"))
        .collect();
    let script = HOSTILE_SCRIPT
        .replace("SEED", &HOSTILE_SEED.to_string())
        .replace("ACCESSES", &HOSTILE_ACCESSES.to_string())
        .replace("BDFS", &bdfs.join(" "));
    let k = "/dev/shm/sc-h";
    let mut run = GuestRun::new("hostile")
        .host_before(format!(
            "mkdir -p {k} && for d in w n s b; do dd if=/dev/zero of={k}/$d.img bs=1M count=8 2>/dev/null; done && \
             touch {NETNS}h && unshare --net={NETNS}h true"
        ))
        .host_after(format!("umount {NETNS}h; rm -f {NETNS}h; rm -rf {k}"))
        .netns(format!("{NETNS}h"))
        .cmdline("iomem=relaxed")
        .args(["--cpus", "1", "--memory", "768M"])
        .args(["--device"])
        .arg(format!("virtio-blk,path={k}/w.img,addr=2"));
    for (slot, kind) in ATTACKED {
        let spec = match kind {
            "nvme" => format!("nvme,id=hn,addr={slot}"),
            "ahci" => format!("ahci,id=hs,ports=1,addr={slot}"),
            "virtio-blk" => format!("virtio-blk,path={k}/b.img,addr={slot}"),
            "virtio-net" => format!("virtio-net,tap=hostile0,addr={slot}"),
            "e1000e" => format!("e1000e,tap=hostile1,addr={slot}"),
            other => format!("{other},addr={slot}"),
        };
        run = run.args(["--device"]).arg(spec);
    }
    run.args(["--device"])
        .arg(format!("nvme-ns,bus=hn,path={k}/n.img"))
        .args(["--device"])
        .arg(format!("sata-disk,bus=hs,path={k}/s.img"))
        .script(script)
        .timeout(Duration::from_secs(420))
}

/// The thread kinds whose forbidden call is tried in a real iovm, with
/// the devices that make the kind's thread start.
const SELFTESTS: [(&str, &[&str]); 7] = [
    ("main", &[]),
    ("signals", &[]),
    ("vcpu", &[]),
    (
        "nvme",
        &[
            "--device",
            "nvme,id=n0",
            "--device",
            "nvme-ns,bus=n0,path=/dev/shm/sc-k.img",
        ],
    ),
    (
        "virtio-blk",
        &["--device", "virtio-blk,path=/dev/shm/sc-k.img"],
    ),
    ("virtio-rng", &["--device", "virtio-rng"]),
    (
        "ahci",
        &[
            "--device",
            "ahci,id=s0,ports=1",
            "--device",
            "sata-disk,bus=s0,path=/dev/shm/sc-k.img",
        ],
    ),
];

fn selftest_runs() -> Vec<GuestRun> {
    SELFTESTS
        .iter()
        .map(|(kind, devices)| {
            GuestRun::new(format!("seccomp-kill-{kind}"))
                .host_before("dd if=/dev/zero of=/dev/shm/sc-k.img bs=1M count=4 2>/dev/null")
                .host_after("rm -f /dev/shm/sc-k.img")
                .args([
                    "--seccomp-selftest",
                    kind,
                    "--cpus",
                    "1",
                    "--memory",
                    "256M",
                ])
                .args(devices.iter().copied())
                .script("echo selftest-not-stopped")
                .timeout(Duration::from_secs(180))
        })
        .collect()
}

struct Results {
    runs: Runs,
    /// `N COMM SECCOMP` per iovm thread, sampled during boot N.
    threads: String,
    /// `N Uid: …`, `N CapEff: …` and the like of iovm's main thread, boot N.
    ids: String,
    /// The kernel's `type=1326` lines (calls outside a filter, logged).
    audit: Option<String>,
}

fn results() -> &'static Results {
    static RESULTS: OnceLock<Results> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let iovm = Path::new(env!("CARGO_BIN_EXE_iovm"));
        let batch = Batch::new().expect("set up the test batch");
        sparse_disks(batch.scratch_dir(), &DISKS);
        let mut runs = vec![log_run(), hostile_run()];
        runs.extend(selftest_runs());
        let list = batch.run(iovm, &runs).expect("run the guest batch");
        let read = |f: &str| std::fs::read_to_string(batch.scratch_dir().join(f));
        Results {
            runs: Runs::new(list),
            threads: read("seccomp-threads.txt").unwrap_or_default(),
            ids: read("seccomp-ids.txt").unwrap_or_default(),
            audit: read("seccomp-audit.txt").ok(),
        }
    })
}

#[track_caller]
fn run(name: &str) -> &'static RunResult {
    results().runs.get(name)
}

#[test]
fn test_the_guest_uses_every_device_through_a_reboot_with_filters_in_place() {
    let r = run("seccomp-log");
    r.assert_success();
    assert_eq!(r.fact("done"), "2", "{}", r.dump());
    for n in 1..=2 {
        for d in ["nvme0n1", "vda", "sda"] {
            assert_eq!(r.fact(&format!("fio_{d}_{n}")), "0", "{}", r.dump());
        }
        assert_eq!(r.fact(&format!("rng_{n}")), "64", "{}", r.dump());
        assert_eq!(r.fact(&format!("hvc_{n}")), "1", "{}", r.dump());
    }
    // As a user iovm keeps the TAP it opened for the first machine (it
    // could not attach again), so the namespace's side stays up.
    assert_eq!(r.fact("ping_1"), "1", "{}", r.dump());
    assert_eq!(r.fact("ping_2"), "1", "{}", r.dump());
}

#[test]
fn test_no_thread_made_a_call_outside_its_filter() {
    let r = run("seccomp-log");
    let audit = results()
        .audit
        .as_ref()
        .unwrap_or_else(|| panic!("no kernel log was collected\n{}", r.dump()));
    assert!(
        audit.trim().is_empty(),
        "calls outside a filter (comm= names the thread, syscall= the call):\n{audit}\n{}",
        r.dump()
    );
}

#[test]
fn test_every_iovm_thread_is_filtered_while_the_guest_runs() {
    let r = run("seccomp-log");
    let threads = &results().threads;
    for n in ["1", "2"] {
        let sample: Vec<(&str, &str, &str)> = threads
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(n)).then(|| {
                    let (comm, mode) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
                    (comm, mode, w.next().unwrap_or(""))
                })
            })
            .collect();
        for name in [
            "iovm",
            "iovm-vcpu0",
            "iovm-signals",
            "nvme-worker",
            "ahci-worker",
            "virtio-blk",
            "virtio-net",
            "virtio-rng",
            "virtio-console",
            "e1000e",
        ] {
            assert!(
                sample.iter().any(|(comm, _, _)| *comm == name),
                "boot {n}: no thread {name} in {sample:?}\n{}",
                r.dump()
            );
        }
        // io_uring's kernel workers (iou-wrk-*, iou-sqp-*) run no user code.
        for (comm, mode, _) in sample.iter().filter(|(c, _, _)| !c.starts_with("iou-")) {
            assert_eq!(
                *mode, "2",
                "boot {n}: thread {comm} is not filtered\n{threads}"
            );
        }
        // Every thread, io_uring's too, runs as the user.
        for (comm, _, uid) in &sample {
            assert_eq!(
                *uid, "Uid:,65534,65534,65534,65534",
                "boot {n}: {comm}\n{threads}"
            );
        }
    }
}

#[test]
fn test_iovm_runs_as_the_user_with_no_capabilities_through_a_reboot() {
    let r = run("seccomp-log");
    let ids = &results().ids;
    for n in ["1", "2"] {
        for expected in [
            "Uid: 65534 65534 65534 65534",
            "Gid: 65534 65534 65534 65534",
            "CapInh: 0000000000000000",
            "CapPrm: 0000000000000000",
            "CapEff: 0000000000000000",
            "CapBnd: 0000000000000000",
            "CapAmb: 0000000000000000",
            "NoNewPrivs: 1",
        ] {
            let line = format!("{n} {expected}");
            assert!(
                ids.lines().any(|l| l.trim_end() == line),
                "boot {n}: no {expected:?} in\n{ids}\n{}",
                r.dump()
            );
        }
    }
}

#[test]
fn test_a_forbidden_call_from_each_thread_kind_ends_iovm_with_one_line() {
    for (kind, _) in SELFTESTS {
        let r = run(&format!("seccomp-kill-{kind}"));
        assert_eq!(r.exit_code, Some(8), "{kind}\n{}", r.dump());
        let line = format!(
            "iovm: error: seccomp: the {kind} thread made system call {}, which its filter forbids",
            libc::SYS_personality
        );
        assert!(
            r.console.contains(&line),
            "{kind}: no line {line:?}\n{}",
            r.dump()
        );
        assert!(!r.console.contains("selftest-not-stopped"), "{}", r.dump());
    }
}

#[test]
fn test_random_writes_to_every_function_leave_iovm_and_the_witness_disk_working() {
    let r = run("hostile");
    // iovm ran on (the guest powered off, status 0) with its filters on.
    r.assert_success();
    assert_eq!(r.fact("witness_before"), "0", "{}", r.dump());
    assert_eq!(r.fact("hostile_rc"), "0", "{}", r.dump());
    assert_eq!(
        r.fact("hostile_attacked"),
        ATTACKED.len().to_string(),
        "{}",
        r.dump()
    );
    for (slot, kind) in ATTACKED {
        let line = r
            .console
            .lines()
            .find(|l| l.starts_with(&format!("hostile 0000:00:{slot}.0 ")))
            .unwrap_or_else(|| panic!("{kind}: no line\n{}", r.dump()));
        let writes: u64 = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .filter(|(k, _)| k.ends_with("_writes"))
            .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
            .sum();
        assert!(
            writes > 500,
            "{kind}: too few writes landed: {line}\n{}",
            r.dump()
        );
    }
    assert_eq!(r.fact("witness_after"), "0", "{}", r.dump());
    assert_eq!(r.fact("kernel_bugs"), "0", "{}", r.dump());
}
