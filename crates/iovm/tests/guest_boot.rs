//! Real guests: Debian's stock kernel and the project's initramfs booted by
//! iovm, directly on hardware KVM or inside the nested test host (see
//! `testkit`). All runs share one batch, so the test host boots once; each
//! test then checks its own run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod common;

use common::Runs;
use testkit::{Batch, GuestRun, RunResult};

/// How the kernel was started: `type_of_loader` of the boot parameters it
/// kept (0xff: iovm's 64-bit boot; 0xb0: the PVH entry outside Xen, which
/// Linux's PVH code records as loader type 0xB), and its initramfs.
const PVH: &str = r#"
echo "loader=$(dd if=/sys/kernel/boot_params/data bs=1 skip=528 count=1 2>/dev/null | od -An -tx1 | tr -d ' ')"
echo "initramfs=$([ -x /init ] && echo yes)"
"#;

/// Prints the facts the boot tests check, then the kernel log's problem lines.
const INSPECT: &str = r#"
echo "cpus=$(grep -c ^processor /proc/cpuinfo)"
echo "apicids=$(grep ^apicid /proc/cpuinfo | tr -d ' \t' | cut -d: -f2 | tr '\n' ',')"
echo "memtotal_kib=$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)"
echo "ram_above_4g=$(grep -cE '^ *1[0-9a-f]{8}-[0-9a-f]+ : System RAM' /proc/iomem)"
echo "pci_ids=$(lspci -n | cut -d' ' -f1,3 | tr ' \n' '-,')"
echo "ecam=$(dmesg | grep -c 'MMCONFIG for domain 0000 \[bus 00-ff\] at \[mem 0xe0000000-0xefffffff\]')"
echo "osc=$(dmesg | grep -c '_OSC: OS now controls')"
echo "config_lines=$(lspci -s 00:00.0 -xxxx | wc -l)"
echo "clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
a=$(date +%s); sleep 1; b=$(date +%s)
echo "epoch=$a slept=$((b-a))"
dmesg > /tmp/dmesg
echo "dmesg_lines=$(wc -l < /tmp/dmesg)"
grep -E 'BUG|WARNING|Call Trace|ACPI (Error|Warning|BIOS)|XSAVE consistency' /tmp/dmesg | sed 's/^/dmesg-problem: /'
grep -i 'firmware bug' /tmp/dmesg | sed 's/^/dmesg-problem: /'
true
"#;

const RESTART: &str = r#"
nv=/sys/bus/nvmem/devices/cmos_nvram0/nvmem
[ -e $nv ] || { echo "no $nv"; exit 1; }
if [ "$(dd if=$nv bs=1 count=1 2>/dev/null)" = R ]; then
  echo "restart: second boot"
  printf 'x' | dd of=$nv bs=1 count=1 conv=notrunc 2>/dev/null
  exit 0
fi
printf 'R' | dd of=$nv bs=1 count=1 conv=notrunc 2>/dev/null
echo "restart: first boot, rebooting"
reboot -f
"#;

/// Sends a line through the PCI serial card (looped back by iovm), reports
/// what came back and the card's interrupt line while the port is open, then
/// removes the card through sysfs, rescans, and does it again.
const PCI_SERIAL: &str = r#"
d=/sys/bus/pci/devices/0000:00:01.0
echo "pci_serial_id=$(cat $d/vendor):$(cat $d/device)"
ping() {
  t=$(ls $d/tty/)
  stty -F /dev/$t raw -echo
  cat /dev/$t > /tmp/rx &
  p=$!
  sleep 0.5
  echo "ping-$1" > /dev/$t
  sleep 1
  grep " $t\$" /proc/interrupts | tr -s ' ' > /tmp/irq$1
  kill $p
  echo "rx$1=$(cat /tmp/rx)"
}
ping 1
echo "irq_count=$(cut -d' ' -f3 /tmp/irq1)"
echo "irq_chip=$(cut -d' ' -f4 /tmp/irq1)"
echo "irq_pin=$(cut -d' ' -f5 /tmp/irq1)"
echo 1 > $d/remove
echo "removed=$(ls $d 2>/dev/null | wc -l)"
echo 1 > /sys/bus/pci/rescan
sleep 1
ping 2
"#;

/// The tree `TREE_ARGS` builds: the numeric and named `lspci -t` views,
/// the checks of `lspci -vvv` and the kernel log, then a line through each
/// serial card, with the IOAPIC pin its interrupt arrived on.
const PCI_TREE: &str = r#"
lspci -t | sed 's/^/tree: /'
lspci -tv | sed 's/^/tree-v: /'
lspci -vvv > /tmp/vvv
echo "caps_unknown=$(grep -c '<?>' /tmp/vvv)"
echo "caps_pcie_root_port=$(grep -c 'Express (v2) Root Port' /tmp/vvv)"
echo "caps_msi=$(grep -c 'Capabilities: \[[0-9a-f]*\] MSI:' /tmp/vvv)"
echo "caps_pm=$(grep -c 'Capabilities: \[[0-9a-f]*\] Power Management' /tmp/vvv)"
echo "bars_disabled=$(grep -cE 'Region [0-9]:.*disabled\]' /tmp/vvv)"
echo "bars_io=$(grep -c 'Region 0: I/O ports at' /tmp/vvv)"
echo "assign_failed=$(dmesg | grep -c 'failed to assign')"
for d in 0000:03:02.0 0000:01:00.0 0000:00:05.0 0000:00:05.1; do
  t=$(ls /sys/bus/pci/devices/$d/tty/)
  stty -F /dev/$t raw -echo
  cat /dev/$t > /tmp/rx &
  p=$!
  sleep 0.5
  echo "ping-$t" > /dev/$t
  sleep 1
  k=$(echo $d | tr ':.' '__')
  echo "pin_$k=$(grep -w "$t" /proc/interrupts | tr -s ' ' | cut -d' ' -f4,5 | tr ' ' '/')"
  kill $p
  echo "rx_$k=$(cat /tmp/rx)"
  echo "tty_$k=$t"
done
"#;

/// Two root ports, a PCI-to-PCI bridge behind the second with a card
/// behind it, a card on the first, and a two-function card on the root bus.
const TREE_ARGS: [&str; 14] = [
    "--device",
    "root-port,id=rp0",
    "--device",
    "root-port,id=rp1",
    "--device",
    "pci-bridge,id=br0,bus=rp1",
    "--device",
    "pci-serial,bus=br0,addr=2,loopback=on",
    "--device",
    "pci-serial,bus=rp0,loopback=on",
    "--device",
    "pci-serial,addr=5,loopback=on",
    "--device",
    "pci-serial,addr=5.1,loopback=on",
];

/// What the guest sees of PCI when told not to use ECAM.
const NOMMCONF: &str = r#"
echo "pci_ids=$(lspci -n | cut -d' ' -f1,3 | tr ' \n' '-,')"
echo "ecam=$(dmesg | grep -c 'MMCONFIG for domain')"
echo "config_lines=$(lspci -s 00:01.0 -xxxx | wc -l)"
"#;

/// The boot runs start Debian's bzImage with the gzip-compressed initramfs
/// (`GuestRun::bzimage`), so that the x86 boot protocol and the kernel's own
/// decompression stay tested; the other runs here, and the other guest
/// tests, boot the ELF `vmlinux` through PVH with the archive uncompressed,
/// which takes seconds less per boot in the nested test host.
fn runs() -> Vec<GuestRun> {
    vec![
        GuestRun::new("boot-1cpu")
            .bzimage()
            .args(["--cpus", "1", "--memory", "512M", "--timing"])
            .script(format!("{PVH}{INSPECT}")),
        GuestRun::new("boot-2cpu")
            .bzimage()
            .args(["--cpus", "2", "--memory", "512M"])
            .script(INSPECT),
        // The same kernel as an ELF vmlinux (cargo xtask guest extracts it),
        // started through its PVH entry.
        GuestRun::new("boot-pvh")
            .args([
                "--kernel",
                "{guest}/vmlinux",
                "--cpus",
                "2",
                "--memory",
                "512M",
            ])
            .args(["--timing"])
            .script(format!("{PVH}{INSPECT}")),
        GuestRun::new("boot-5g")
            .bzimage()
            .args(["--cpus", "2", "--memory", "5G"])
            .script(INSPECT),
        GuestRun::new("reboot-exit").script("echo rebooting; reboot -f"),
        GuestRun::new("reboot-restart")
            .bzimage()
            .args(["--on-reboot", "restart"])
            .script(RESTART),
        GuestRun::new("panic").script("echo c > /proc/sysrq-trigger"),
        GuestRun::new("stdin-shell").stdin("echo hello-$((6*7))\npoweroff -f\n"),
        GuestRun::new("pci-serial")
            .args(["--device", "pci-serial,loopback=on"])
            .script(PCI_SERIAL),
        GuestRun::new("pci-nommconf")
            .args(["--device", "pci-serial,loopback=on"])
            .cmdline("pci=nommconf")
            .script(format!("{NOMMCONF}{PCI_SERIAL}")),
        GuestRun::new("pci-tree")
            .args(TREE_ARGS)
            // Debian's 8250 driver registers 4 ports unless told otherwise;
            // COM1 and the four cards make five.
            .cmdline("8250.nr_uarts=8")
            .script(format!("{PCI_TREE}{INSPECT}")),
        GuestRun::new("exit-probe")
            // A virtio-rng gives exit-probe a doorbell to ring. It maps ECAM
            // and that doorbell's BAR from /dev/mem, which Debian's kernel
            // allows only with iomem=relaxed.
            .args(["--device", "virtio-rng"])
            .cmdline("iomem=relaxed")
            .script("exit-probe 200 3"),
        GuestRun::new("serial-file")
            .args(["--serial", "file={scratch}/serial-file.log"])
            .script("echo file-console-ok"),
    ]
}

struct Results {
    runs: Runs,
    scratch_files: BTreeMap<String, String>,
}

fn results() -> &'static Results {
    static RESULTS: OnceLock<Results> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let iovm = Path::new(env!("CARGO_BIN_EXE_iovm"));
        let batch = Batch::new().expect("set up the test batch");
        let list = batch.run(iovm, &runs()).expect("run the guest batch");
        let scratch: PathBuf = batch.scratch_dir().to_path_buf();
        let scratch_files = ["serial-file.log"]
            .iter()
            .map(|f| {
                (
                    f.to_string(),
                    std::fs::read_to_string(scratch.join(f)).unwrap_or_default(),
                )
            })
            .collect();
        Results {
            runs: Runs::new(list),
            scratch_files,
        }
    })
}

#[track_caller]
fn run(name: &str) -> &'static RunResult {
    results().runs.get(name)
}

/// The value printed by the script as `key=value`.
#[track_caller]
fn fact<'a>(r: &'a RunResult, key: &str) -> &'a str {
    r.fact(key)
}

#[track_caller]
fn assert_clean_boot(r: &RunResult) {
    r.assert_success();
    r.assert_clean_dmesg();
    let problems: Vec<_> = r
        .console
        .lines()
        .filter(|l| l.contains("dmesg-problem:"))
        .collect();
    assert!(
        problems.is_empty(),
        "kernel log problems: {problems:#?}\n{}",
        r.dump()
    );
    let lines: u32 = fact(r, "dmesg_lines").parse().unwrap();
    assert!(lines > 50, "dmesg looks empty\n{}", r.dump());
}

#[track_caller]
fn assert_memtotal_near(r: &RunResult, mib: u64) {
    let kib: u64 = fact(r, "memtotal_kib").parse().unwrap();
    // The kernel keeps its own image and early reservations out of MemTotal.
    assert!(
        kib <= mib * 1024 && kib >= mib * 1024 * 85 / 100,
        "MemTotal {kib} KiB for {mib} MiB\n{}",
        r.dump()
    );
}

#[test]
fn test_guest_boots_with_one_cpu_and_512m() {
    let r = run("boot-1cpu");
    assert_clean_boot(r);
    assert_eq!(fact(r, "cpus"), "1");
    assert_eq!(fact(r, "apicids"), "0,");
    assert_memtotal_near(r, 512);
    assert_eq!(fact(r, "ram_above_4g"), "0");
}

#[test]
fn test_guest_boots_with_two_cpus() {
    let r = run("boot-2cpu");
    assert_clean_boot(r);
    assert_eq!(fact(r, "cpus"), "2");
    assert_eq!(fact(r, "apicids"), "0,1,");
    assert_memtotal_near(r, 512);
}

#[test]
fn test_guest_with_5g_has_ram_above_4g() {
    let r = run("boot-5g");
    assert_clean_boot(r);
    assert_eq!(fact(r, "ram_above_4g"), "1");
    assert_memtotal_near(r, 5 * 1024);
}

#[test]
fn test_guest_finds_pci_host_bridge_and_uses_ecam() {
    let r = run("boot-1cpu");
    assert_eq!(fact(r, "pci_ids"), "00:00.0-1b36:0008,", "{}", r.dump());
    assert_eq!(fact(r, "ecam"), "1", "no MMCONFIG line\n{}", r.dump());
    assert_eq!(
        fact(r, "osc"),
        "1",
        "_OSC did not grant native control\n{}",
        r.dump()
    );
    // 4096 bytes at 16 a line, the device's title line and a blank line:
    // extended space is reachable (without ECAM: 256 bytes, 18 lines).
    assert_eq!(fact(r, "config_lines"), "258", "{}", r.dump());
}

#[test]
fn test_pci_serial_card_moves_data_both_ways_with_intx_through_ioapic() {
    let r = run("pci-serial");
    r.assert_success();
    r.assert_clean_dmesg();
    assert_eq!(fact(r, "pci_serial_id"), "0x1b36:0x0002", "{}", r.dump());
    assert_eq!(fact(r, "rx1"), "ping-1", "{}", r.dump());
    assert_eq!(fact(r, "irq_chip"), "IO-APIC", "{}", r.dump());
    assert_eq!(
        fact(r, "irq_pin"),
        "17-fasteoi",
        "slot 1 INTA is GSI 17, level\n{}",
        r.dump()
    );
    let count: u64 = fact(r, "irq_count").parse().unwrap_or(0);
    assert!(count > 0, "no interrupts counted\n{}", r.dump());
}

#[test]
fn test_pci_serial_card_works_again_after_sysfs_remove_and_rescan() {
    let r = run("pci-serial");
    assert_eq!(
        fact(r, "removed"),
        "0",
        "device still in sysfs after remove\n{}",
        r.dump()
    );
    assert_eq!(fact(r, "rx2"), "ping-2", "{}", r.dump());
}

#[test]
fn test_pci_without_ecam_works_through_config_ports() {
    let r = run("pci-nommconf");
    r.assert_success();
    r.assert_clean_dmesg();
    assert_eq!(
        fact(r, "pci_ids"),
        "00:00.0-1b36:0008,00:01.0-1b36:0002,",
        "{}",
        r.dump()
    );
    assert_eq!(fact(r, "ecam"), "0", "{}", r.dump());
    // 256 bytes only: 16 lines, the title line and a blank line.
    assert_eq!(fact(r, "config_lines"), "18", "{}", r.dump());
    assert_eq!(fact(r, "rx1"), "ping-1", "{}", r.dump());
    assert_eq!(fact(r, "rx2"), "ping-2", "{}", r.dump());
}

#[test]
fn test_guest_clock_is_kvmclock_and_keeps_time() {
    let r = run("boot-1cpu");
    assert_eq!(fact(r, "clocksource"), "kvm-clock");
    let slept: i64 = fact(r, "slept").parse().unwrap();
    assert!(
        (1..=2).contains(&slept),
        "sleep 1 took {slept} s\n{}",
        r.dump()
    );
    let guest_epoch: i64 = fact(r, "epoch").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - guest_epoch).abs() < 3600,
        "guest date {guest_epoch} vs host {now}\n{}",
        r.dump()
    );
}

#[test]
fn test_timing_reports_first_instruction_and_init() {
    let r = run("boot-1cpu");
    assert!(
        r.console.contains("iovm: timing: first guest instruction"),
        "{}",
        r.dump()
    );
    assert!(
        r.console.contains("iovm: timing: init marker seen"),
        "{}",
        r.dump()
    );
}

#[test]
fn test_poweroff_exits_zero() {
    let r = run("boot-2cpu");
    assert_eq!(r.exit_code, Some(0), "{}", r.dump());
    assert!(!r.timed_out);
}

#[test]
fn test_reboot_exits_with_status_3_by_default() {
    let r = run("reboot-exit");
    assert!(!r.timed_out, "{}", r.dump());
    assert_eq!(r.exit_code, Some(3), "{}", r.dump());
    assert!(r.console.contains("the guest rebooted"), "{}", r.dump());
}

#[test]
fn test_reboot_restart_boots_again_with_cmos_kept() {
    let r = run("reboot-restart");
    r.assert_success();
    assert_eq!(
        r.console.matches("IOVM-GUEST: boot done").count(),
        2,
        "{}",
        r.dump()
    );
    assert!(
        r.console.contains("restart: first boot, rebooting"),
        "{}",
        r.dump()
    );
    assert!(r.console.contains("restart: second boot"), "{}", r.dump());
}

#[test]
fn test_guest_panic_ends_iovm_with_status_4_and_shows_panic() {
    let r = run("panic");
    assert!(!r.timed_out, "{}", r.dump());
    assert_eq!(r.exit_code, Some(4), "{}", r.dump());
    assert!(
        r.console.contains("Kernel panic - not syncing"),
        "{}",
        r.dump()
    );
    assert!(
        r.console.contains("the guest kernel panicked"),
        "{}",
        r.dump()
    );
}

#[test]
fn test_stdin_reaches_guest_shell() {
    let r = run("stdin-shell");
    assert!(!r.timed_out, "{}", r.dump());
    assert_eq!(r.exit_code, Some(0), "{}", r.dump());
    assert!(r.console.contains("hello-42"), "{}", r.dump());
}

#[test]
fn test_serial_file_backend_gets_the_console() {
    let r = run("serial-file");
    assert_eq!(r.exit_code, Some(0), "{}", r.dump());
    let log = &results().scratch_files["serial-file.log"];
    assert!(
        log.contains("file-console-ok"),
        "serial file:\n{log}\n{}",
        r.dump()
    );
    assert!(
        log.contains("IOVM-GUEST: exit status=0"),
        "serial file:\n{log}"
    );
    assert!(
        !r.console.contains("file-console-ok"),
        "stdout must not get the console\n{}",
        r.dump()
    );
}

/// The lines of a `lspci -t` view the script printed with `prefix`.
fn tree(r: &RunResult, prefix: &str) -> Vec<String> {
    r.console
        .lines()
        .filter_map(|l| l.split_once(prefix).map(|(_, t)| t.trim_end().to_string()))
        .collect()
}

#[test]
fn test_guest_enumerates_the_tree_of_root_ports_bridge_and_multi_function_card() {
    let r = run("pci-tree");
    assert_clean_boot(r);
    assert_eq!(
        tree(r, "tree: "),
        vec![
            "-[0000:00]-+-00.0",
            "           +-01.0-[01]----00.0",
            "           +-02.0-[02-03]----00.0-[03]----02.0",
            "           +-05.0",
            "           \\-05.1",
        ],
        "{}",
        r.dump()
    );
    let named = tree(r, "tree-v: ").join("\n");
    assert!(
        named.contains("02.0-[02-03]----00.0-[03]----02.0  Red Hat, Inc. QEMU PCI 16550A Adapter"),
        "{named}\n{}",
        r.dump()
    );
}

#[test]
fn test_lspci_parses_every_capability_and_every_bar_is_assigned() {
    let r = run("pci-tree");
    assert_eq!(fact(r, "caps_unknown"), "0", "{}", r.dump());
    assert_eq!(fact(r, "caps_pcie_root_port"), "2", "{}", r.dump());
    assert_eq!(fact(r, "caps_msi"), "2", "one per root port\n{}", r.dump());
    assert_eq!(fact(r, "caps_pm"), "2", "{}", r.dump());
    assert_eq!(
        fact(r, "bars_io"),
        "4",
        "one I/O BAR per card\n{}",
        r.dump()
    );
    assert_eq!(fact(r, "bars_disabled"), "0", "{}", r.dump());
    assert_eq!(fact(r, "assign_failed"), "0", "{}", r.dump());
}

#[test]
fn test_cards_behind_bridges_move_data_on_swizzled_shared_intx() {
    let r = run("pci-tree");
    let cards = [
        // Behind the bridge (device 2) behind root port 00:02.0: INTA
        // swizzles to INTC, then stays INTC through device 0; root slot 2
        // sends INTC to GSI 16 + (2 + 2) % 4.
        ("0000_03_02_0", "16"),
        // Behind root port 00:01.0: INTA on root slot 1, GSI 17, which the
        // card at 00:05.0 (INTA, slot 5) and its second function share.
        ("0000_01_00_0", "17"),
        ("0000_00_05_0", "17"),
        ("0000_00_05_1", "17"),
    ];
    for (card, gsi) in cards {
        let tty = fact(r, &format!("tty_{card}"));
        assert_eq!(
            fact(r, &format!("rx_{card}")),
            format!("ping-{tty}"),
            "{card}\n{}",
            r.dump()
        );
        assert_eq!(
            fact(r, &format!("pin_{card}")),
            format!("IO-APIC/{gsi}-fasteoi"),
            "{card}\n{}",
            r.dump()
        );
    }
}

#[test]
fn test_exit_probe_times_every_access_kind_in_the_guest() {
    let r = run("exit-probe");
    r.assert_success();
    for figure in [
        "pio_write_ns",
        "cf8_read_ns",
        "ecam_read_ns",
        "ecam_write_ns",
        "kernel_cf8_read_ns",
        "kernel_ecam_read_ns",
        "virtio_notify_ns",
    ] {
        let ns: u64 = fact(r, figure)
            .parse()
            .unwrap_or_else(|_| panic!("{figure} not measured\n{}", r.dump()));
        assert!(ns > 0, "{figure}\n{}", r.dump());
    }
    assert!(!r.console.contains("exit-probe: problem"), "{}", r.dump());
}

#[test]
fn test_elf_vmlinux_boots_through_its_pvh_entry() {
    let r = run("boot-pvh");
    assert_clean_boot(r);
    assert_eq!(
        fact(r, "loader"),
        "b0",
        "the PVH entry (loader type 0xB)\n{}",
        r.dump()
    );
    assert_eq!(fact(r, "initramfs"), "yes", "{}", r.dump());
    assert_eq!(fact(r, "cpus"), "2");
    assert_eq!(fact(r, "apicids"), "0,1,");
    assert_memtotal_near(r, 512);
    assert_eq!(
        fact(r, "ecam"),
        "1",
        "ACPI found through the start info's RSDP\n{}",
        r.dump()
    );
    let bz = run("boot-1cpu");
    assert_eq!(fact(bz, "loader"), "ff", "the bzImage path\n{}", bz.dump());
}
