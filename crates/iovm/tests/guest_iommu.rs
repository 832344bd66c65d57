//! The emulated VT-d under Debian's own `intel_iommu` driver: with
//! `--device intel-iommu` and `intel_iommu=on iommu.strict=1`, the guest
//! finds the DMAR unit, puts its PCI devices in IOMMU groups, and NVMe I/O
//! (translated through the guest's own page tables) passes fio's crc32c
//! verification; virtio-blk, which iovm does not translate yet (no
//! VIRTIO_F_ACCESS_PLATFORM), works beside it. One batch, one test-host boot.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::{disks_in, disks_out, sparse_disks, Runs};
use testkit::{Batch, GuestRun, RunResult};

const WORK: &str = "/dev/shm/iovm-iommu";
const DISKS: [(&str, u64); 2] = [("iommu-nvme.img", 64), ("iommu-vblk.img", 64)];

const SCRIPT: &str = r#"
dmesg > /tmp/dmesg
echo "dmar_unit=$(grep -c 'DMAR: dmar0: reg_base_addr fed90000' /tmp/dmesg)"
echo "strict=$(grep -c 'strict mode' /tmp/dmesg)"
echo "ir_x2apic=$(grep -c 'Enabled IRQ remapping in x2apic mode' /tmp/dmesg)"
echo "queued=$(grep -c 'dmar0: Using Queued invalidation' /tmp/dmesg)"
echo "ir_msi=$(grep -c 'IR-PCI-MSI' /proc/interrupts)"
grep -E 'IR-|PCI-MSI' /proc/interrupts | head -4 | sed 's/^/irq-line: /'
echo "ir_ioapic=$(grep -c 'IR-IO-APIC' /proc/interrupts)"
echo "firmware_bug=$(grep -ci 'firmware bug' /tmp/dmesg)"
echo "groups=$(ls /sys/kernel/iommu_groups | wc -l)"
echo "nvme_group=$(basename $(readlink /sys/class/nvme/nvme0/device/iommu_group) 2>/dev/null)"
i=0; until [ -b /dev/nvme0n1 ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done
for d in /dev/nvme0n1 /dev/vda; do
  fio --name=v --filename=$d --direct=1 --ioengine=io_uring --rw=randwrite --bs=4k \
      --iodepth=8 --size=8m --verify=crc32c --do_verify=1 \
      --output-format=terse --terse-version=3 > /tmp/fio 2>&1
  echo "fio_$(basename $d)=$? errors=$(cut -d';' -f5 /tmp/fio | head -1)"
done
echo "dmar_faults=$(dmesg | grep -c 'DMAR: \[DMA')"
grep -E 'DMAR|BUG|WARNING' /tmp/dmesg | head -20 | sed 's/^/dmar-log: /'
"#;

fn runs() -> Vec<GuestRun> {
    vec![GuestRun::new("iommu-strict")
        .host_before(disks_in(WORK, &DISKS.map(|d| d.0)))
        .host_after(disks_out(WORK, &DISKS.map(|d| d.0)))
        .args(["--cpus", "1", "--memory", "1G", "--device", "intel-iommu"])
        .args(["--device", "nvme,id=n0", "--device"])
        .arg(format!("nvme-ns,bus=n0,path={WORK}/{}", DISKS[0].0))
        .arg("--device")
        .arg(format!("virtio-blk,path={WORK}/{}", DISKS[1].0))
        .cmdline("intel_iommu=on iommu.strict=1")
        .script(SCRIPT)]
}

fn results() -> &'static Runs {
    static RESULTS: OnceLock<Runs> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let iovm = Path::new(env!("CARGO_BIN_EXE_iovm"));
        let batch = Batch::new().expect("set up the test batch");
        sparse_disks(batch.scratch_dir(), &DISKS);
        Runs::new(batch.run(iovm, &runs()).expect("run the guest batch"))
    })
}

#[track_caller]
fn run(name: &str) -> &'static RunResult {
    results().get(name)
}

#[test]
fn test_guest_intel_iommu_finds_the_unit_and_groups_its_devices() {
    let r = run("iommu-strict");
    r.assert_success();
    assert_eq!(r.fact("dmar_unit"), "1", "{}", r.dump());
    assert_ne!(r.fact("strict"), "0", "strict invalidation\n{}", r.dump());
    let groups: u32 = r.fact("groups").parse().unwrap_or(0);
    assert!(groups >= 2, "NVMe and virtio-blk in groups\n{}", r.dump());
    assert!(!r.fact("nvme_group").is_empty(), "{}", r.dump());
    assert_eq!(r.fact("firmware_bug"), "0", "{}", r.dump());
}

#[test]
fn test_guest_remaps_its_interrupts_in_x2apic_mode_with_queued_invalidation() {
    let r = run("iommu-strict");
    assert_eq!(r.fact("ir_x2apic"), "1", "{}", r.dump());
    assert_eq!(r.fact("queued"), "1", "{}", r.dump());
    let msix: u32 = r.fact("ir_msi").parse().unwrap_or(0);
    assert!(msix >= 2, "NVMe and virtio MSI-X through IR\n{}", r.dump());
    let ioapic: u32 = r.fact("ir_ioapic").parse().unwrap_or(0);
    assert!(ioapic >= 1, "IOAPIC pins through IR\n{}", r.dump());
}

#[test]
fn test_translated_nvme_and_untranslated_virtio_blk_pass_fio_verify() {
    let r = run("iommu-strict");
    assert_eq!(r.fact("fio_nvme0n1"), "0", "{}", r.dump());
    assert_eq!(r.fact("fio_vda"), "0", "{}", r.dump());
    assert_eq!(r.fact("dmar_faults"), "0", "{}", r.dump());
}
