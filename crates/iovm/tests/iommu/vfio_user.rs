//! A device handed to an untrusted user-space driver: inside a guest booted
//! with `--device intel-iommu` and `intel_iommu=on iommu.strict=1`, the
//! guest tool `vfio-nvme` (guest-tools/vfio-nvme) takes iovm's NVMe
//! controller from the kernel's driver to `vfio-pci`, maps its queues and
//! buffers at I/O virtual addresses unrelated to their guest-physical ones,
//! runs Identify and a write/read through them with MSI-X completions
//! delivered to eventfds, then unmaps the data buffer and reads again: the
//! emulated VT-d refuses the DMA, the guest kernel logs the DMAR fault, the
//! command ends with Data Transfer Error, and the buffer is untouched. The
//! controller goes back to the kernel's driver, which reads what the tool
//! wrote, and a virtio-blk disk beside it passes fio's verification. Part
//! of `guest_iommu`'s batch (one test-host boot for both).

use std::time::Duration;

use crate::common::{disks_in, disks_out};
use testkit::{GuestRun, RunResult};

const WORK: &str = "/dev/shm/iovm-vfio";
/// The NVMe's and the virtio-blk's disks.
pub const DISKS: [(&str, u64); 2] = [("vfio-nvme.img", 16), ("vfio-vblk.img", 16)];
/// The serial number the NVMe controller reports.
const SERIAL: &str = "IOVMVFIO";
/// The LBA the tool writes its pattern to.
const LBA: u64 = 2048;

/// The guest script: the tool, the kernel's DMAR lines, the kernel's
/// driver reading the tool's pattern back, virtio-blk under fio.
///
/// vfio_iommu_type1 refuses a group whose IOMMU cannot remap interrupts
/// unless its `allow_unsafe_interrupts` parameter is set; iovm's VT-d
/// remaps them, so the tool runs without that escape hatch.
fn script() -> String {
    format!(
        r#"
vfio-nvme --lba {LBA} --pattern-out /tmp/pattern
echo "tool_exit=$?"
dmesg > /tmp/dmesg
grep 'DMAR: \[DMA' /tmp/dmesg | sed 's/^/dmar-fault: /'
echo "dmar_fault_lines=$(grep -c 'DMAR: \[DMA' /tmp/dmesg)"
grep -E 'vfio|DMAR: (IOMMU|Intel|dmar0)' /tmp/dmesg | head -20 | sed 's/^/vfio-log: /'
i=0; until [ -b /dev/nvme0n1 ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done
dd if=/dev/nvme0n1 of=/tmp/back bs=512 skip={LBA} count=$(($(wc -c < /tmp/pattern) / 512)) 2>/dev/null
cmp -s /tmp/back /tmp/pattern && echo kernel_reads_pattern=1 || echo kernel_reads_pattern=0
echo "kernel_model=$(tr -d '\n' < /sys/class/nvme/nvme0/model | sed 's/ *$//' | tr ' ' '_')"
fio --name=v --filename=/dev/vda --direct=1 --ioengine=io_uring --rw=randwrite --bs=4k \
    --iodepth=8 --size=8m --verify=crc32c --do_verify=1 \
    --output-format=terse --terse-version=3 > /tmp/fio 2>&1
echo "fio_vda=$? errors=$(cut -d';' -f5 /tmp/fio | head -1)"
"#
    )
}

/// The run, for the batch of `guest_iommu`.
pub fn runs() -> Vec<GuestRun> {
    vec![GuestRun::new("vfio-user")
        .host_before(disks_in(WORK, &DISKS.map(|d| d.0)))
        .host_after(disks_out(WORK, &DISKS.map(|d| d.0)))
        .args(["--cpus", "1", "--memory", "1G", "--device", "intel-iommu"])
        .arg("--device")
        .arg(format!("nvme,id=n0,serial={SERIAL}"))
        .arg("--device")
        .arg(format!("nvme-ns,bus=n0,path={WORK}/{}", DISKS[0].0))
        .arg("--device")
        .arg(format!("virtio-blk,path={WORK}/{}", DISKS[1].0))
        .cmdline("intel_iommu=on iommu.strict=1")
        .timeout(Duration::from_secs(300))
        .script(script())]
}

#[track_caller]
fn run() -> &'static RunResult {
    crate::run("vfio-user")
}

#[test]
fn test_the_tool_drives_the_controller_through_vfio_at_iovas_not_gpas() {
    let r = run();
    r.assert_success();
    assert_eq!(r.fact("tool_exit"), "0", "{}", r.dump());
    assert_eq!(r.fact("vfio_nvme_ok"), "1", "{}", r.dump());
    assert_eq!(r.fact("driver_before"), "nvme", "{}", r.dump());
    assert_eq!(r.fact("iommu"), "type1v2", "{}", r.dump());
    assert_eq!(r.fact("group_devices"), "1", "{}", r.dump());
    assert_eq!(r.fact("iova_ne_gpa"), "1", "{}", r.dump());
    assert_eq!(r.fact("iova_data"), "0x100005000", "{}", r.dump());
    assert_ne!(r.fact("gpa_data"), r.fact("iova_data"), "{}", r.dump());
    assert_eq!(r.fact("controller_ready"), "1", "{}", r.dump());
    assert_eq!(r.fact("identify_vid"), "0x1b36", "{}", r.dump());
    assert_eq!(r.fact("identify_serial"), SERIAL, "{}", r.dump());
    // The model as the kernel's driver reads it once it has the controller
    // back (spaces are underscores in both).
    let model = r.fact("identify_model");
    assert!(model.starts_with("iovm"), "{}", r.dump());
    assert_eq!(model, r.fact("kernel_model"), "{}", r.dump());
    assert_eq!(r.fact("rw_ok"), "1", "{}", r.dump());
    assert_eq!(r.fact("rw_bytes"), "8192", "{}", r.dump());
    assert_eq!(r.fact("lba"), LBA.to_string(), "{}", r.dump());
}

#[test]
fn test_io_completions_arrive_as_msix_interrupts_through_vfio() {
    let r = run();
    // write, read, the faulting read and the read after remapping: one
    // interrupt each (the eventfd may fold two into one count only if a
    // completion came before the previous was waited for, which the tool
    // never allows).
    assert_eq!(r.fact("msix_irqs"), "4", "{}", r.dump());
    assert_eq!(
        r.fact("interrupt_remapping"),
        "1",
        "the guest's IOMMU remaps interrupts\n{}",
        r.dump()
    );
    assert_eq!(
        r.fact("allow_unsafe_interrupts"),
        "0",
        "vfio_iommu_type1 took the group without unsafe interrupts\n{}",
        r.dump()
    );
}

#[test]
fn test_an_unmapped_buffer_faults_in_the_iommu_and_fails_the_command() {
    let r = run();
    assert_eq!(r.fact("fault_status"), "0x4004", "{}", r.dump());
    assert_eq!(r.fact("fault_sct"), "0", "{}", r.dump());
    assert_eq!(
        r.fact("fault_sc"),
        "0x04",
        "Data Transfer Error\n{}",
        r.dump()
    );
    assert_eq!(r.fact("fault_buffer_untouched"), "1", "{}", r.dump());
    assert_eq!(r.fact("recovered"), "1", "{}", r.dump());

    let iova = r.fact("unmapped_iova");
    let bdf = r.fact("bdf");
    let device = bdf.strip_prefix("0000:").unwrap_or(bdf);
    let expected = format!(
        "DMAR: [DMA Write NO_PASID] Request device [{device}] fault addr {iova} \
         [fault reason 0x05] PTE Write access is not set"
    );
    let faults: Vec<&str> = r
        .console
        .lines()
        .filter_map(|l| l.strip_prefix("dmar-fault: "))
        .collect();
    assert!(
        faults.iter().any(|l| l.contains(&expected)),
        "no {expected:?} among the DMAR lines {faults:?}\n{}",
        r.dump()
    );
    assert!(
        faults
            .iter()
            .all(|l| l.contains(&format!("fault addr {iova}"))),
        "a DMAR fault other than the unmapped buffer's\n{}",
        r.dump()
    );
}

#[test]
fn test_the_vmm_the_controller_and_other_devices_are_unharmed() {
    let r = run();
    r.assert_success();
    r.assert_clean_dmesg();
    assert_eq!(r.fact("teardown"), "1", "{}", r.dump());
    assert_eq!(r.fact("driver_after"), "nvme", "{}", r.dump());
    assert_eq!(r.fact("kernel_reads_pattern"), "1", "{}", r.dump());
    assert_eq!(r.fact("fio_vda"), "0", "{}", r.dump());
}
