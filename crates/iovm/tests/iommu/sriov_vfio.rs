//! Isolation shown, not claimed: inside a guest booted with `--device
//! intel-iommu` and `intel_iommu=on iommu.strict=1`, an SR-IOV NVMe PF gets
//! 2 VFs; VF 1 is handed to `vfio-pci` and driven by the guest's
//! user-space driver (`vfio-nvme`, guest-tools/) at I/O virtual addresses
//! of its own, its unmapped-buffer read refused by the emulated VT-d,
//! while the PF's and VF 0's namespaces run fio with verification under
//! the kernel's `nvme` driver. Each function is in an IOMMU group of its
//! own (the root port has ACS); VF 1 goes back to `nvme` afterwards, which
//! reads what the tool wrote; the tool's bytes are in VF 1's host file and
//! no other. Part of `guest_iommu`'s batch (one test-host boot for both).

use std::path::Path;
use std::time::Duration;

use crate::common::{disks_in, disks_out};
use testkit::{GuestRun, RunResult};

const WORK: &str = "/dev/shm/iovm-sriov-vfio";
/// The PF's, VF 0's and VF 1's disks.
pub const DISKS: [(&str, u64); 3] = [("sv-pf.img", 16), ("sv-vf0.img", 16), ("sv-vf1.img", 16)];

/// VF 1's namespace (the PF's is 1, VF 0's 2) and where the tool writes.
const SCRIPT: &str = r#"
pf=$(dirname $(ls -d /sys/bus/pci/devices/*/sriov_totalvfs | head -1))
echo 2 > $pf/sriov_numvfs; echo "enable=$?"
ns() { grep -lx $1 /sys/block/nvme*/nsid | grep -v 'c[0-9]*n' | head -1 | cut -d/ -f4; }
i=0; until [ -n "$(ns 3)" ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done
g() { basename $(readlink $1/iommu_group); }
echo "groups=$(g $pf),$(g $pf/virtfn0),$(g $pf/virtfn1)"
vf1=$(basename $(readlink -f $pf/virtfn1))
bg() { fio --name=b --filename=/dev/$1 --direct=1 --ioengine=psync --rw=randwrite --bs=4k \
 --offset=4m --size=4m --loops=3 --verify=crc32c --do_verify=1 --output-format=terse \
 --terse-version=3 > /tmp/b$1 2>&1; echo $? > /tmp/s$1; }
p=$(ns 1); v0=$(ns 2)
bg $p & bg $v0 &
vfio-nvme --bdf $vf1 --nsid 3 --lba 2048 --pattern-out /tmp/pattern
echo "tool_exit=$?"
wait
echo "fio_pf=$(cat /tmp/s$p) fio_vf0=$(cat /tmp/s$v0)"
echo "dmar_fault_lines=$(dmesg | grep -c 'DMAR: \[DMA')"
i=0; until [ -n "$(ns 3)" ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done
echo "vf1_driver=$(basename $(readlink $pf/virtfn1/driver))"
dd if=/dev/$(ns 3) of=/tmp/back bs=512 skip=2048 count=$(($(wc -c < /tmp/pattern) / 512)) 2>/dev/null
cmp -s /tmp/back /tmp/pattern && echo kernel_reads_pattern=1 || echo kernel_reads_pattern=0
echo "pattern_head=$(od -An -tx1 -N16 /tmp/pattern | tr -d ' \n') pattern_len=$(wc -c < /tmp/pattern)"
echo 0 > $pf/sriov_numvfs; echo "disable=$?"
"#;

/// The run, for the batch of `guest_iommu`.
pub fn runs() -> Vec<GuestRun> {
    let names = DISKS.map(|d| d.0);
    vec![GuestRun::new("sriov-vfio")
        .host_before(disks_in(WORK, &names))
        .host_after(disks_out(WORK, &names))
        .args(["--cpus", "1", "--memory", "1G", "--device", "intel-iommu"])
        .args(["--device", "root-port,id=rp0", "--device"])
        .arg("nvme,id=n0,bus=rp0,serial=IOVMSRIOVVFIO,sriov-vfs=2")
        .arg("--device")
        .arg(format!("nvme-ns,bus=n0,path={WORK}/{}", names[0]))
        .arg("--device")
        .arg(format!("nvme-ns,bus=n0,vf=0,path={WORK}/{}", names[1]))
        .arg("--device")
        .arg(format!("nvme-ns,bus=n0,vf=1,path={WORK}/{}", names[2]))
        .cmdline("intel_iommu=on iommu.strict=1")
        .timeout(Duration::from_secs(600))
        .script(SCRIPT)]
}

/// Each disk's first 16 bytes at LBA 2048, in hex, by file name, read from
/// the batch's scratch directory `dir` after the run.
pub fn heads(dir: &Path) -> Vec<(String, String)> {
    DISKS
        .iter()
        .map(|(name, _)| {
            let bytes = std::fs::read(dir.join(name)).unwrap_or_default();
            let at = 2048 * 512;
            let head: String = bytes
                .get(at..at + 16)
                .unwrap_or_default()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            (name.to_string(), head)
        })
        .collect()
}

#[track_caller]
fn run() -> &'static RunResult {
    crate::run("sriov-vfio")
}

#[test]
fn test_a_vf_under_the_user_space_driver_while_the_pf_and_the_other_vf_do_io() {
    let r = run();
    r.assert_success();
    assert_eq!(r.fact("enable"), "0", "{}", r.dump());
    assert_eq!(
        r.fact("tool_exit"),
        "0",
        "the user-space driver\n{}",
        r.dump()
    );
    assert_eq!(r.fact("fio_pf"), "0", "the PF under nvme\n{}", r.dump());
    assert_eq!(r.fact("fio_vf0"), "0", "VF 0 under nvme\n{}", r.dump());
    assert_eq!(r.fact("disable"), "0", "{}", r.dump());
}

#[test]
fn test_each_function_has_an_iommu_group_of_its_own() {
    let r = run();
    let groups: Vec<&str> = r.fact("groups").split(',').collect();
    assert_eq!(groups.len(), 3, "{}", r.dump());
    assert!(
        groups[0] != groups[1] && groups[1] != groups[2] && groups[0] != groups[2],
        "PF, VF 0, VF 1: {groups:?}\n{}",
        r.dump()
    );
}

#[test]
fn test_the_vt_d_refuses_the_vfs_unmapped_dma_and_the_guest_logs_it() {
    let r = run();
    let faults: u32 = r.fact("dmar_fault_lines").parse().unwrap_or(0);
    assert!(faults >= 1, "{}", r.dump());
    assert_eq!(
        r.fact("fault_sc"),
        "0x04",
        "Data Transfer Error\n{}",
        r.dump()
    );
}

#[test]
fn test_the_tools_bytes_are_in_vf1s_file_only_and_nvme_reads_them_back() {
    let r = run();
    assert_eq!(r.fact("vf1_driver"), "nvme", "{}", r.dump());
    assert_eq!(r.fact("kernel_reads_pattern"), "1", "{}", r.dump());
    let want = r.fact("pattern_head");
    assert_eq!(want.len(), 32, "16 bytes of the pattern\n{}", r.dump());
    let heads = &crate::results().sriov_vfio_heads;
    let head = |f: &str| {
        heads
            .iter()
            .find(|(n, _)| n == f)
            .map(|(_, s)| s.as_str())
            .unwrap_or("")
    };
    assert_eq!(head("sv-vf1.img"), want, "{heads:?}\n{}", r.dump());
    assert_ne!(head("sv-vf0.img"), want, "{heads:?}");
    assert_ne!(head("sv-pf.img"), want, "{heads:?}");
}
