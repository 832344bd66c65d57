//! Native PCIe hot-plug as the guest's own `pciehp` drives it, with no
//! trigger from outside: Debian's kernel binds `pciehp` (built in) to a
//! root port with a virtio-blk disk and to an empty one, reads their slot
//! capabilities, and powers the occupied slot off and on again through
//! sysfs (`/sys/bus/pci/slots/N/power`): the disk goes when its slot is
//! off (the driver unbound, the link down) and comes back, readable and
//! writable, when it is on (the link up, the function found again). Every
//! Slot Control write is a command that completes, so `pciehp` never
//! times out waiting. Adding and removing devices from outside goes
//! through `vmm::control`, which the API's guest test drives; this run is
//! part of that test's batch (`guest_api`: one test-host boot for both).

use std::path::Path;
use std::time::Duration;

use crate::common::{disks_in, disks_out};
use testkit::{GuestRun, RunResult};

const WORK: &str = "/dev/shm/iovm-hotplug";
/// The disk behind slot 1.
pub const DISKS: [(&str, u64); 1] = [("hp0.img", 16)];

/// Slot 1 is root port rp0 (00:01.0) with the disk, slot 2 root port rp1
/// (00:02.0), empty: pciehp names a slot by its Physical Slot Number,
/// which iovm makes the port's device number.
const SCRIPT: &str = r#"
s=/sys/bus/pci/slots
dmesg | grep 'pciehp' > /tmp/hp
echo "slots=$(ls $s | sort | tr '\n' ,)"
echo "slot_lines=$(grep -c 'Slot #' /tmp/hp)"
echo "caps1=$(grep 'Slot #1 ' /tmp/hp | grep -o 'AttnBtn+ PwrCtrl+ MRL- AttnInd+ PwrInd+ HotPlug+ Surprise- Interlock- NoCompl-' | head -1 | tr ' ' _)"
echo "llactrep=$(grep 'Slot #1 ' /tmp/hp | grep -c 'LLActRep+')"
echo "addr1=$(cat $s/1/address)"
echo "power1=$(cat $s/1/power) power2=$(cat $s/2/power)"
echo "port_msi=$(cat /sys/bus/pci/devices/0000:00:01.0/msi_irqs/* 2>/dev/null | wc -l)"
echo "vda_before=$([ -e /sys/block/vda ] && echo 1 || echo 0)"
echo 0 > $s/1/power; echo "off_status=$?"
i=0; while [ -e /sys/block/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo "vda_when_off=$([ -e /sys/block/vda ] && echo 1 || echo 0)"
echo "power1_off=$(cat $s/1/power)"
echo "fn_when_off=$([ -e /sys/bus/pci/devices/0000:01:00.0 ] && echo 1 || echo 0)"
echo 1 > $s/1/power; echo "on_status=$?"
i=0; until [ -e /sys/block/vda ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done
echo "vda_when_on=$([ -e /sys/block/vda ] && echo 1 || echo 0)"
echo "power1_on=$(cat $s/1/power)"
echo IOVM-HOTPLUG-MARK > /tmp/mark
dd if=/tmp/mark of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null; echo "mark_write=$?"
echo 3 > /proc/sys/vm/drop_caches
echo "mark_read=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 17)"
echo "timeouts=$(dmesg | grep -c 'Timeout on hotplug command')"
echo "link_failures=$(dmesg | grep -c 'link training error\|No link\|No device found')"
"#;

/// The run, for the batch of `guest_api`.
pub fn runs() -> Vec<GuestRun> {
    let names = DISKS.map(|d| d.0);
    vec![GuestRun::new("pciehp-power-cycle")
        .host_before(disks_in(WORK, &names))
        .host_after(disks_out(WORK, &names))
        .args(["--cpus", "1", "--memory", "512M"])
        .args(["--device", "root-port,id=rp0,addr=1", "--device"])
        .arg(format!("virtio-blk,id=d0,bus=rp0,path={WORK}/{}", names[0]))
        .args(["--device", "root-port,id=rp1,addr=2"])
        .timeout(Duration::from_secs(600))
        .script(SCRIPT)]
}

/// The first 17 bytes of the disk in the batch's scratch directory `dir`
/// after the run.
pub fn head(dir: &Path) -> Vec<u8> {
    let bytes = std::fs::read(dir.join(DISKS[0].0)).unwrap_or_default();
    bytes.get(..17).unwrap_or_default().to_vec()
}

#[track_caller]
fn run() -> &'static RunResult {
    &crate::results().pciehp
}

#[test]
fn test_pciehp_binds_both_hotplug_ports_and_reads_their_slot_capabilities() {
    let r = run();
    r.assert_success();
    assert_eq!(r.fact("slots"), "1,2,", "{}", r.dump());
    assert_eq!(r.fact("slot_lines"), "2", "{}", r.dump());
    assert_eq!(
        r.fact("caps1"),
        "AttnBtn+_PwrCtrl+_MRL-_AttnInd+_PwrInd+_HotPlug+_Surprise-_Interlock-_NoCompl-",
        "{}",
        r.dump()
    );
    assert_eq!(r.fact("llactrep"), "1", "{}", r.dump());
    assert_eq!(r.fact("addr1"), "0000:01:00", "{}", r.dump());
    assert_eq!(
        r.fact("power1"),
        "1",
        "the occupied slot is on\n{}",
        r.dump()
    );
    assert_eq!(r.fact("power2"), "0", "the empty slot is off\n{}", r.dump());
    assert_ne!(r.fact("port_msi"), "0", "the port uses MSI\n{}", r.dump());
    assert_eq!(r.fact("vda_before"), "1", "{}", r.dump());
}

#[test]
fn test_powering_the_slot_off_and_on_takes_the_disk_away_and_brings_it_back() {
    let r = run();
    r.assert_success();
    assert_eq!(r.fact("off_status"), "0", "{}", r.dump());
    assert_eq!(r.fact("vda_when_off"), "0", "{}", r.dump());
    assert_eq!(r.fact("fn_when_off"), "0", "{}", r.dump());
    assert_eq!(r.fact("power1_off"), "0", "{}", r.dump());
    assert_eq!(r.fact("on_status"), "0", "{}", r.dump());
    assert_eq!(r.fact("vda_when_on"), "1", "{}", r.dump());
    assert_eq!(r.fact("power1_on"), "1", "{}", r.dump());
    assert_eq!(r.fact("mark_write"), "0", "{}", r.dump());
    assert_eq!(r.fact("mark_read"), "IOVM-HOTPLUG-MARK", "{}", r.dump());
    assert_eq!(
        crate::results().pciehp_head,
        b"IOVM-HOTPLUG-MARK",
        "the host file\n{}",
        r.dump()
    );
}

#[test]
fn test_pciehp_never_waits_for_a_command_or_a_link_in_vain() {
    let r = run();
    r.assert_success();
    assert_eq!(r.fact("timeouts"), "0", "{}", r.dump());
    assert_eq!(r.fact("link_failures"), "0", "{}", r.dump());
}
