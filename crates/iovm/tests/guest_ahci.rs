//! The stock Linux `ahci`/`libahci`/`libata` drivers on iovm's AHCI
//! controller, with host files behind two SATA disks on two ports; the
//! bytes the guest wrote are then looked for in those files, and synced
//! writes must survive a SIGKILL of iovm. One batch (one test-host boot).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use testkit::{Batch, GuestRun, RunResult};

mod common;
use common::{disks_in, disks_out, sparse_disks, Runs};

/// Disk images made in the batch's scratch directory: (file, MiB).
const DISKS: [(&str, u64); 4] = [
    ("sata-a.img", 64),
    ("sata-b.img", 64),
    ("sata-k.img", 16),
    ("sata-i.img", 16),
];

/// Where the guest writes a marker with `dd`, per disk: (file, byte
/// offset, text). The script below writes the same.
const MARKS: [(&str, u64, &str); 2] = [
    ("sata-a.img", 1 << 20, "IOVM-SATA-A-AT-1MIB"),
    ("sata-b.img", 5 << 20, "IOVM-SATA-B-AT-5MIB"),
];

/// Where a run's disks live while iovm runs: tmpfs in the test host.
const WORK: &str = "/dev/shm/iovm-ahci";

/// One controller with six ports, disk A on port 0 (ata1) and disk B on
/// port 2 (ata3).
const AHCI_ARGS: [&str; 6] = [
    "--device",
    "ahci,id=sata0",
    "--device",
    "sata-disk,bus=sata0,path=/dev/shm/iovm-ahci/sata-a.img,serial=IOVMSATAA",
    "--device",
    "sata-disk,bus=sata0,port=2,path=/dev/shm/iovm-ahci/sata-b.img,serial=IOVMSATAB",
];

/// Waits for both disks (`sd_mod` binds libata's SCSI devices), then what
/// the kernel said about the controller and disks, how it interrupts,
/// then markers, fio with verification at depth 32 on both
/// disks at once, and a discard.
const AHCI_SCRIPT: &str = r#"
modprobe sd_mod
i=0
until dd if=/dev/sda of=/dev/null bs=4k count=1 2>/dev/null \
    && dd if=/dev/sdb of=/dev/null bs=4k count=1 2>/dev/null || [ $i -ge 600 ]; do
  sleep 0.1; i=$((i+1))
done
echo "waited=$i"
dmesg | grep -E 'ahci|ata[0-9]|sd[ab]' | head -60
echo "banner=$(dmesg | grep -c 'AHCI 0001.0301 32 slots 6 ports 6 Gbps 0x3f impl SATA mode')"
echo "flags=$(dmesg | grep 'ahci.*flags:' | sed 's/.*flags: //' | tr ' ' '_')"
echo "lba48_ncq=$(dmesg | grep -c 'LBA48 NCQ (depth 32)')"
echo "link_up=$(dmesg | grep -c 'SATA link up 6.0 Gbps')"
echo "link_down=$(dmesg | grep -c 'SATA link down')"
grep -i ahci /proc/interrupts
echo "msi_lines=$(grep -i ahci /proc/interrupts | grep -c 'PCI-MSI')"
a=; b=
for d in /sys/block/sd*; do
  p=$(readlink -f $d)
  case $p in */ata1/*) a=$(basename $d);; */ata3/*) b=$(basename $d);; esac
done
echo "disk_a=$a disk_b=$b"
echo "qdepth=$(cat /sys/block/$a/device/queue_depth)"
echo "rotational=$(cat /sys/block/$a/queue/rotational)"
echo "discard_max=$(cat /sys/block/$a/queue/discard_max_bytes)"
mark() { printf "$3" | dd of=/dev/$1 bs=512 seek=$(($2 / 512)) conv=notrunc,fsync 2>/dev/null; }
mark $a 1048576 IOVM-SATA-A-AT-1MIB
mark $b 5242880 IOVM-SATA-B-AT-5MIB
echo "readback_a=$(dd if=/dev/$a bs=512 skip=2048 count=1 2>/dev/null | tr -d '\0')"
fio --direct=1 --ioengine=libaio --iodepth=32 --rw=randwrite --bs=4k --offset=8m --size=8m \
    --verify=crc32c --do_verify=1 --output-format=terse --terse-version=3 \
    --name=a --filename=/dev/$a --name=b --filename=/dev/$b > /tmp/fio 2>&1
echo "fio=$? fio_errors=$(cut -d';' -f5 /tmp/fio | sort -u | tr '\n' ',') jobs=$(grep -c '^3;' /tmp/fio)"
head -c 600 /tmp/fio; echo
dd if=/dev/urandom of=/dev/$a bs=1M seek=32 count=8 conv=fsync 2>/dev/null
blkdiscard -o 33554432 -l 8388608 /dev/$a
echo "blkdiscard=$?"
echo "discarded_nonzero=$(dd if=/dev/$a bs=1M skip=32 count=8 2>/dev/null | tr -d '\0' | wc -c)"
dmesg | grep -E 'exception Emask|failed command|hard resetting link|timeout|ATA bus error' | head
hdparm -I /dev/$a > /tmp/hd 2>&1
echo "hdparm=$?"
grep -E 'Model Number|Serial Number|Queue depth|LBA48|TRIM|Rotation|Write cache|FLUSH_CACHE_EXT|Checksum' /tmp/hd
echo "hd_serial=$(grep 'Serial Number' /tmp/hd | sed 's/.*: *//' | tr -d ' ')"
echo "hd_qdepth=$(grep -c 'Queue depth: 32' /tmp/hd)"
echo "hd_trim=$(grep -c 'Data Set Management TRIM supported' /tmp/hd)"
echo "hd_ssd=$(grep -c 'Solid State Device' /tmp/hd)"
echo "hd_checksum=$(grep -c 'Checksum: correct' /tmp/hd)"
echo "power_before=$(hdparm -C /dev/$b | grep -o -E 'active/idle|standby')"
hdparm -y /dev/$b > /dev/null
echo "power_after=$(hdparm -C /dev/$b | grep -o -E 'active/idle|standby')"
echo "ata_errors=$(dmesg | grep -c -E 'exception Emask|failed command|hard resetting link|timeout|ATA bus error')"
echo "irqs=$(grep -i ahci /proc/interrupts | tr -s ' ' | cut -d' ' -f3)"
sync
"#;

/// The guest writes a pattern through the page cache, runs `sync`, then
/// says SYNCED through a PCI serial card whose output is a file where
/// iovm runs; a watcher started before iovm kills it with SIGKILL then.
/// The disk shows up once `sd_mod` is loaded and the SCSI scan found it.
const KILL_SCRIPT: &str = r#"
modprobe sd_mod
i=0
until [ -b /dev/sda ] && dd if=/dev/sda of=/dev/null bs=4k count=1 2>/dev/null \
    || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done
yes IOVM-DURABLE-0123456789 | head -c 1048576 > /tmp/pattern
dd if=/tmp/pattern of=/dev/sda bs=64k seek=32 2>/tmp/dd-err
echo "dd=$? waited=$i size=$(cat /sys/block/sda/size)"
cat /tmp/dd-err
sync
t=$(ls /sys/bus/pci/devices/*/tty | grep ttyS | head -1)
echo "synced on $t"
echo SYNCED > /dev/$t
sleep 120
"#;

/// fio with verification through the one disk of a controller without
/// MSI, and how it interrupts.
const INTX_SCRIPT: &str = r#"
modprobe sd_mod
i=0
until dd if=/dev/sda of=/dev/null bs=4k count=1 2>/dev/null || [ $i -ge 600 ]; do
  sleep 0.1; i=$((i+1))
done
fio --name=v --filename=/dev/sda --direct=1 --ioengine=libaio --iodepth=32 --rw=randwrite \
    --bs=4k --size=4m --verify=crc32c --do_verify=1 --output-format=terse --terse-version=3 \
    > /tmp/fio 2>&1
echo "fio=$? fio_errors=$(cut -d';' -f5 /tmp/fio | head -1)"
grep -i ahci /proc/interrupts
echo "irq_chip=$(grep -i ahci /proc/interrupts | tr -s ' ' | cut -d' ' -f4)"
echo "irq_count=$(grep -i ahci /proc/interrupts | tr -s ' ' | cut -d' ' -f3)"
echo "ata_errors=$(dmesg | grep -c -E 'exception Emask|failed command|hard resetting link|timeout')"
"#;

/// Kills the iovm whose command line names the kill run's disk, once the
/// signal file says SYNCED (gives up after 240 s).
const KILL_WATCHER: &str = r#"( i=0
  while ! grep -q SYNCED /dev/shm/iovm-ahci/signal 2>/dev/null && [ $i -lt 1200 ]; do
    sleep 0.2; i=$((i+1))
  done
  for p in /proc/[0-9]*; do
    if grep -q sata-k.img $p/cmdline 2>/dev/null && grep -q '^Name:.*iovm' $p/status; then
      kill -9 ${p#/proc/}
    fi
  done ) >/dev/null 2>&1 &"#;

fn runs() -> Vec<GuestRun> {
    let main_disks = ["sata-a.img", "sata-b.img"];
    vec![
        GuestRun::new("ahci")
            .host_before(disks_in(WORK, &main_disks))
            .host_after(disks_out(WORK, &main_disks))
            .args(AHCI_ARGS)
            // One vCPU: see docs/test-host.md (the nested host's KVM).
            .args(["--cpus", "1", "--memory", "1G"])
            .script(AHCI_SCRIPT)
            .timeout(Duration::from_secs(300)),
        GuestRun::new("ahci-kill")
            .host_before(format!(
                "{} && {{ {KILL_WATCHER} }}",
                disks_in(WORK, &["sata-k.img"])
            ))
            .host_after(disks_out(WORK, &["sata-k.img"]))
            .args([
                "--device",
                "ahci,id=s0,ports=1",
                "--device",
                "sata-disk,bus=s0,path=/dev/shm/iovm-ahci/sata-k.img",
                "--device",
                "pci-serial,output=/dev/shm/iovm-ahci/signal",
                "--cpus",
                "1",
            ])
            .script(KILL_SCRIPT),
        GuestRun::new("ahci-intx")
            .host_before(disks_in(WORK, &["sata-i.img"]))
            .host_after(disks_out(WORK, &["sata-i.img"]))
            .args([
                "--device",
                "ahci,id=s0,ports=1,msi=off",
                "--device",
                "sata-disk,bus=s0,path=/dev/shm/iovm-ahci/sata-i.img",
                "--cpus",
                "1",
            ])
            .script(INTX_SCRIPT),
    ]
}

struct Results {
    runs: Runs,
    /// What the host files hold at each marker's offset.
    marks: BTreeMap<String, Vec<u8>>,
    /// The kill run's disk from 2 MiB to 3 MiB.
    durable: Vec<u8>,
    /// Allocated 512-byte blocks of sata-a.img after its run.
    blocks_a: Option<u64>,
}

fn results() -> &'static Results {
    static RESULTS: OnceLock<Results> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let iovm = Path::new(env!("CARGO_BIN_EXE_iovm"));
        let batch = Batch::new().expect("set up the test batch");
        sparse_disks(batch.scratch_dir(), &DISKS);
        let list = batch.run(iovm, &runs()).expect("run the guest batch");
        let scratch = batch.scratch_dir();
        let durable = std::fs::read(scratch.join("sata-k.img"))
            .ok()
            .and_then(|b| b.get(2 << 20..3 << 20).map(<[u8]>::to_vec))
            .unwrap_or_default();
        let blocks_a = std::fs::read_to_string(scratch.join("sata-a.img.blocks"))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let marks = MARKS
            .iter()
            .map(|(file, offset, text)| {
                let bytes = std::fs::read(scratch.join(file)).unwrap_or_default();
                let at = *offset as usize;
                let got = bytes.get(at..at + text.len()).unwrap_or_default().to_vec();
                (file.to_string(), got)
            })
            .collect();
        Results {
            runs: Runs::new(list),
            marks,
            durable,
            blocks_a,
        }
    })
}

#[track_caller]
fn run(name: &str) -> &'static RunResult {
    results().runs.get(name)
}

#[test]
fn test_ahci_driver_binds_with_32_slots_ncq_and_two_lba48_ncq_disks() {
    let r = run("ahci");
    r.assert_success();
    r.assert_clean_dmesg();
    assert_eq!(r.fact("banner"), "1", "{}", r.dump());
    assert!(r.fact("flags").contains("ncq"), "{}", r.dump());
    assert_eq!(r.fact("lba48_ncq"), "2", "{}", r.dump());
    assert_eq!(r.fact("link_up"), "2", "{}", r.dump());
    assert_eq!(r.fact("link_down"), "4", "four empty ports\n{}", r.dump());
    assert_eq!(r.fact("qdepth"), "32", "{}", r.dump());
    assert_eq!(r.fact("rotational"), "0", "an SSD\n{}", r.dump());
}

#[test]
fn test_ahci_interrupts_are_pci_msi() {
    let r = run("ahci");
    assert_eq!(r.fact("msi_lines"), "1", "{}", r.dump());
}

#[test]
fn test_ahci_fio_verify_at_depth_32_on_two_disks_at_once() {
    let r = run("ahci");
    assert_eq!(r.fact("fio"), "0", "{}", r.dump());
    assert_eq!(r.fact("fio_errors"), "0,", "{}", r.dump());
    assert_eq!(r.fact("jobs"), "2", "{}", r.dump());
}

#[test]
fn test_ahci_dd_markers_land_at_their_offsets_in_the_host_files() {
    let r = run("ahci");
    assert_eq!(r.fact("readback_a"), "IOVM-SATA-A-AT-1MIB", "{}", r.dump());
    for (file, offset, text) in MARKS {
        assert_eq!(
            String::from_utf8_lossy(&results().marks[file]),
            text,
            "{file} at {offset}\n{}",
            r.dump()
        );
    }
}

#[test]
fn test_ahci_blkdiscard_punches_a_hole_in_the_host_file() {
    let r = run("ahci");
    assert_ne!(r.fact("discard_max"), "0", "TRIM offered\n{}", r.dump());
    assert_eq!(r.fact("blkdiscard"), "0", "{}", r.dump());
    assert_eq!(
        r.fact("discarded_nonzero"),
        "0",
        "reads zeros\n{}",
        r.dump()
    );
    // Copied in with every block written (64 MiB = 131072 blocks);
    // discarding 8 MiB gives back at least that much.
    let blocks = results().blocks_a.expect("block count of sata-a.img");
    assert!(blocks <= 131072 - 16384, "{blocks} blocks\n{}", r.dump());
}

#[test]
fn test_ahci_hdparm_reads_the_identity_and_drives_power_modes() {
    let r = run("ahci");
    assert_eq!(r.fact("hdparm"), "0", "{}", r.dump());
    assert_eq!(r.fact("hd_serial"), "IOVMSATAA", "{}", r.dump());
    assert_eq!(r.fact("hd_qdepth"), "1", "{}", r.dump());
    assert_eq!(r.fact("hd_trim"), "1", "{}", r.dump());
    assert_eq!(r.fact("hd_ssd"), "1", "{}", r.dump());
    assert_eq!(r.fact("hd_checksum"), "1", "{}", r.dump());
    assert_eq!(r.fact("power_before"), "active/idle", "{}", r.dump());
    assert_eq!(r.fact("power_after"), "standby", "{}", r.dump());
}

#[test]
fn test_ahci_fio_verify_with_intx_through_the_ioapic_when_msi_is_off() {
    let r = run("ahci-intx");
    r.assert_success();
    r.assert_clean_dmesg();
    assert_eq!(r.fact("fio"), "0", "{}", r.dump());
    assert_eq!(r.fact("fio_errors"), "0", "{}", r.dump());
    assert_eq!(r.fact("irq_chip"), "IO-APIC", "{}", r.dump());
    let count: u64 = r.fact("irq_count").parse().unwrap_or(0);
    assert!(
        count > 100,
        "INTx interrupts counted: {count}\n{}",
        r.dump()
    );
    assert_eq!(r.fact("ata_errors"), "0", "{}", r.dump());
}

#[test]
fn test_ahci_no_ata_errors_in_dmesg() {
    let r = run("ahci");
    assert_eq!(r.fact("ata_errors"), "0", "{}", r.dump());
}

#[test]
fn test_ahci_synced_writes_survive_sigkill_of_iovm() {
    let r = run("ahci-kill");
    assert!(!r.timed_out, "{}", r.dump());
    assert!(r.console.contains("synced on"), "{}", r.dump());
    assert_eq!(r.fact("dd"), "0", "{}", r.dump());
    assert_eq!(r.fact("size"), "32768", "16 MiB in sectors\n{}", r.dump());
    assert_eq!(r.guest_exit_status(), None, "killed first\n{}", r.dump());
    let pattern: Vec<u8> = b"IOVM-DURABLE-0123456789\n"
        .iter()
        .copied()
        .cycle()
        .take(1 << 20)
        .collect();
    assert!(
        results().durable == pattern,
        "the synced megabyte is not in the host file\n{}",
        r.dump()
    );
}
