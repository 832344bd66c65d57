//! Device assignment through VFIO (issue 19), in the nested test host: its
//! QEMU gives the test host an emulated NVMe controller under an emulated
//! VT-d (`Batch::with_assignable_nvme`), the test host gives it to
//! `vfio-pci`, and iovm assigns it to its guest, whose own `nvme` driver
//! binds it with MSI-X and moves data: guest → iovm → VFIO → the test
//! host's device → a raw image on this machine. The same device with its
//! MSI-X hidden moves data over INTx; iovm killed with SIGKILL in the
//! middle of I/O leaves it to the next run, which assigns it again and
//! verifies. QEMU's NVMe has no MSI capability, so MSI is shown with the
//! test host's emulated AHCI controller (`Batch::with_assignable_ahci`),
//! which has only MSI: the guest's `ahci` driver binds it and its disk
//! moves data to a second image on this machine. That controller shares
//! its IOMMU group with a function the test host's `virtio_pci` holds,
//! which first makes the group not viable. The bad-input runs of the same
//! boot check that a missing function, one bound to another driver and a
//! non-viable group are refused with one line. The NVMe assigned behind
//! iovm's own VT-d (`--device intel-iommu`, which then runs in caching
//! mode) gets exactly the guest's strict translations, mirrored into its
//! own VFIO container, and verifies. One batch, one test-host
//! boot; always in the test host (a machine with hardware KVM has no
//! assignable device to offer, the test host does).

mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::Runs;
use testkit::host_devices::{ASSIGNABLE_NVME_BDF, ASSIGNABLE_NVME_SERIAL};
use testkit::{Batch, GuestRun, HostDevices, Mode, RunResult};

/// The assigned disk's size.
const IMAGE_BYTES: u64 = 64 << 20;
/// Where the guest writes its marker (bytes) and what it writes.
const MARK_OFFSET: u64 = 48 << 20;
const MARK: &str = "IOVM-VFIO-ASSIGNED-MARK";

/// Moves the test host's function `bdf` to vfio-pci.
fn bind_vfio(bdf: &str) -> String {
    format!(
        "modprobe vfio_iommu_type1; modprobe vfio-pci; d=/sys/bus/pci/devices/{bdf}; \
         echo vfio-pci > $d/driver_override; \
         [ -e $d/driver ] && echo {bdf} > $d/driver/unbind; \
         echo {bdf} > /sys/bus/pci/drivers_probe; \
         echo \"assign-driver=$(basename $(readlink $d/driver))\"; \
         echo \"assign-group=$(basename $(readlink $d/iommu_group))\""
    )
}

/// The assigned AHCI controller's disk in the guest: its driver, its
/// interrupt kind, a verified fio run and the marker.
const AHCI_SCRIPT: &str = r#"
modprobe sd_mod 2>/dev/null
i=0; until [ -b /dev/sda ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done
d=$(ls -d /sys/bus/pci/drivers/ahci/0000:* 2>/dev/null | head -1)
echo "ahci_model=$(cat /sys/block/sda/device/model 2>/dev/null | tr -d ' ')"
echo "irq_kind=$(cat $d/msi_irqs/* 2>/dev/null | sort -u | tr '\n' ' ')"
echo "ahci_msi=$(grep 'ahci' /proc/interrupts | grep -c 'PCI-MSI')"
fio --name=v --filename=/dev/sda --direct=1 --ioengine=io_uring --rw=randwrite --bs=4k \
    --iodepth=8 --size=16m --verify=crc32c --do_verify=1 \
    --output-format=terse --terse-version=3 > /tmp/fio 2>&1
echo "fio=$? errors=$(cut -d';' -f5 /tmp/fio | head -1)"
printf '@MARK@' | dd of=/dev/sda bs=512 seek=@SEEK@ conv=fsync 2>/dev/null
echo "mark=$?"
"#;

/// The AHCI controller's marker.
const AHCI_MARK: &str = "IOVM-VFIO-AHCI-MSI-MARK";

const SCRIPT: &str = r#"
i=0; until [ -b /dev/nvme0n1 ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done
echo "serial=$(cat /sys/class/nvme/nvme0/serial 2>/dev/null | tr -d ' ')"
echo "msix=$(grep -c 'nvme0q' /proc/interrupts)"
echo "irq_kind=$(cat /sys/class/nvme/nvme0/device/msi_irqs/* 2>/dev/null | sort -u | tr '\n' ' ')"
echo "ioapic=$(grep 'nvme0q0' /proc/interrupts | grep -c 'IO-APIC')"
fio --name=v --filename=/dev/nvme0n1 --direct=1 --ioengine=io_uring --rw=randwrite --bs=4k \
    --iodepth=8 --size=16m --verify=crc32c --do_verify=1 \
    --output-format=terse --terse-version=3 > /tmp/fio 2>&1
echo "fio=$? errors=$(cut -d';' -f5 /tmp/fio | head -1)"
"#;

/// What the guest's `intel_iommu` says of the unit the assigned function
/// is behind.
const VTD_SCRIPT: &str = r#"
echo "cm=$(dmesg | grep -c 'batching disallowed due to virtualization')"
echo "dmar_faults=$(dmesg | grep -c 'DMAR: \[DMA')"
echo "group=$(ls /sys/bus/pci/drivers/nvme/*/iommu_group >/dev/null 2>&1 && echo yes)"
"#;

/// Writes the marker the test finds in the image.
const MARK_SCRIPT: &str = r#"
printf '@MARK@' | dd of=/dev/nvme0n1 bs=512 seek=@SEEK@ conv=fsync 2>/dev/null
echo "mark=$?"
"#;

/// Keeps I/O going until iovm is killed under it: fio runs for ten
/// minutes, and two seconds into it the guest tells the killer (through
/// the PCI serial card's output file) that I/O is flowing.
const KILLED_SCRIPT: &str = r#"
i=0; until [ -b /dev/nvme0n1 ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done
echo "io-running"
fio --name=k --filename=/dev/nvme0n1 --direct=1 --ioengine=io_uring --rw=randrw --bs=4k \
    --iodepth=16 --size=32m --time_based --runtime=600 > /dev/null 2>&1 &
sleep 2
t=$(ls /sys/bus/pci/devices/*/tty | grep ttyS | head -1)
echo IO-FLOWING > /dev/$t
wait
echo "io-ended"
"#;

/// The killed run's signal file (the PCI serial card's output).
const KILL_SIGNAL: &str = "/dev/shm/iovm-vfio-killed-signal";

/// Kills iovm with SIGKILL a second after the guest says its I/O is
/// flowing (or after 120 s without that word, so that the run ends). The
/// test host's busybox has no pkill, and iovm runs under the staged dynamic
/// loader there, so it is found by its command line in /proc; the
/// killer's own shells, whose command line holds the same words, also hold
/// "sleep" and are skipped.
const KILL_SCRIPT: &str =
    "i=0; while ! grep -q IO-FLOWING @SIGNAL@ 2>/dev/null && [ $i -lt 600 ]; \
     do sleep 0.2; i=$((i+1)); done; sleep 1; for p in /proc/[0-9]*; do \
     c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); \
     case \"$c\" in *sleep*) ;; *'bin/iovm run'*) kill -9 ${p#/proc/} ;; esac; done";

fn runs(devices: &HostDevices) -> Vec<GuestRun> {
    let ahci = devices.ahci_bdf();
    let companion = devices.ahci_companion_bdf();
    let mark = MARK_SCRIPT
        .replace("@MARK@", MARK)
        .replace("@SEEK@", &(MARK_OFFSET / 512).to_string());
    let mmap = std::env::var("IOVM_TEST_VFIO_MMAP").unwrap_or_else(|_| "on".into());
    // One vCPU: with two doing disk I/O the nested test host's known
    // faults come often (docs/test-host.md).
    let assigned = |name: &str, options: &str| {
        GuestRun::new(name)
            .args(["--cpus", "1", "--memory", "1G", "--device"])
            .arg(format!(
                "vfio-pci,host={ASSIGNABLE_NVME_BDF},mmap={mmap}{options}"
            ))
    };
    vec![
        assigned("vfio-nvme", "")
            .host_before(bind_vfio(ASSIGNABLE_NVME_BDF))
            .script(format!("{SCRIPT}{mark}")),
        assigned("vfio-intx", ",msix=off,msi=off").script(SCRIPT),
        assigned("vfio-killed", "")
            .host_before(format!(
                "rm -f {KILL_SIGNAL}; ({}) >/dev/null 2>&1 &",
                KILL_SCRIPT.replace("@SIGNAL@", KILL_SIGNAL)
            ))
            .args(["--device", &format!("pci-serial,output={KILL_SIGNAL}")])
            .script(KILLED_SCRIPT),
        assigned("vfio-after-kill", "").script(SCRIPT),
        assigned("vfio-behind-vtd", "")
            .args(["--device", "intel-iommu"])
            .cmdline("intel_iommu=on iommu.strict=1")
            .script(format!("{SCRIPT}{VTD_SCRIPT}")),
        GuestRun::new("vfio-ahci-not-viable")
            .host_before(bind_vfio(&ahci))
            .args(["--memory", "256M", "--device"])
            .arg(format!("vfio-pci,host={ahci}"))
            .script("true"),
        GuestRun::new("vfio-ahci-msi")
            .host_before(format!(
                "echo {companion} > /sys/bus/pci/devices/{companion}/driver/unbind; \
                 echo \"companion-driver=$(basename $(readlink /sys/bus/pci/devices/{companion}/driver 2>/dev/null) 2>/dev/null)\""
            ))
            .args(["--cpus", "1", "--memory", "1G", "--device"])
            .arg(format!("vfio-pci,host={ahci},mmap={mmap}"))
            .script(
                AHCI_SCRIPT
                    .replace("@MARK@", AHCI_MARK)
                    .replace("@SEEK@", &(MARK_OFFSET / 512).to_string()),
            ),
        GuestRun::new("vfio-missing")
            .args(["--memory", "256M", "--device", "vfio-pci,host=0000:00:1f.6"])
            .script("true"),
        GuestRun::new("vfio-wrong-driver")
            .host_before("echo \"driver9p=$(basename $(readlink /sys/bus/pci/devices/0000:00:02.0/driver))\"")
            .args(["--memory", "256M", "--device", "vfio-pci,host=0000:00:02.0"])
            .script("true"),
    ]
}

/// The runs, and the bytes at [`MARK_OFFSET`] of the assigned NVMe's and
/// AHCI disk's images on this machine after them.
struct Results {
    runs: Runs,
    nvme_mark: Vec<u8>,
    ahci_mark: Vec<u8>,
}

/// A new empty image of [`IMAGE_BYTES`] in `dir`.
fn image(dir: &Path, name: &str) -> std::path::PathBuf {
    let img = dir.join(name);
    let f = std::fs::File::create(&img).expect("create an assigned disk's image");
    f.set_len(IMAGE_BYTES).expect("size the image");
    img
}

/// `len` bytes at [`MARK_OFFSET`] of `img`.
fn mark_in(img: &Path, len: usize) -> Vec<u8> {
    let data = std::fs::read(img).expect("read an assigned disk's image");
    let at = MARK_OFFSET as usize;
    data[at..at + len].to_vec()
}

fn results() -> &'static Results {
    static RESULTS: OnceLock<Results> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let iovm = Path::new(env!("CARGO_BIN_EXE_iovm"));
        let batch = Batch::with_mode(Mode::TestHost).expect("set up the test batch");
        let nvme = image(batch.scratch_dir(), "assigned-nvme.img");
        let sata = image(batch.scratch_dir(), "assigned-sata.img");
        let batch = batch
            .with_assignable_nvme(&nvme)
            .with_assignable_ahci(&sata);
        let runs = runs(batch.devices());
        let runs = Runs::new(batch.run(iovm, &runs).expect("run the guest batch"));
        Results {
            runs,
            nvme_mark: mark_in(&nvme, MARK.len()),
            ahci_mark: mark_in(&sata, AHCI_MARK.len()),
        }
    })
}

#[track_caller]
fn run(name: &str) -> &'static RunResult {
    results().runs.get(name)
}

#[test]
fn test_guest_nvme_driver_binds_the_assigned_controller_with_msix_and_verifies() {
    let r = run("vfio-nvme");
    r.assert_success();
    assert_eq!(r.fact("serial"), ASSIGNABLE_NVME_SERIAL, "{}", r.dump());
    let vectors: u32 = r.fact("msix").parse().unwrap_or(0);
    assert!(vectors >= 2, "admin and I/O queues on MSI-X\n{}", r.dump());
    assert_eq!(r.fact("irq_kind").trim(), "msix", "{}", r.dump());
    assert_eq!(r.fact("fio"), "0", "{}", r.dump());
    assert_eq!(r.fact("mark"), "0", "{}", r.dump());
}

#[test]
fn test_with_message_interrupts_hidden_intx_is_relayed_and_verifies() {
    let r = run("vfio-intx");
    r.assert_success();
    assert_eq!(
        r.fact("irq_kind").trim(),
        "",
        "no MSI or MSI-X\n{}",
        r.dump()
    );
    assert_eq!(
        r.fact("ioapic"),
        "1",
        "INTA through the IOAPIC\n{}",
        r.dump()
    );
    assert_eq!(r.fact("fio"), "0", "{}", r.dump());
}

#[test]
fn test_sigkill_mid_io_leaves_the_device_to_the_next_run() {
    let killed = run("vfio-killed");
    assert!(
        killed.console.contains("io-running") && !killed.console.contains("io-ended"),
        "killed in the middle of I/O\n{}",
        killed.dump()
    );
    assert_eq!(killed.exit_code, Some(137), "SIGKILL\n{}", killed.dump());
    let after = run("vfio-after-kill");
    after.assert_success();
    assert_eq!(
        after.fact("serial"),
        ASSIGNABLE_NVME_SERIAL,
        "{}",
        after.dump()
    );
    assert_eq!(after.fact("fio"), "0", "{}", after.dump());
}

#[test]
fn test_guest_write_reaches_the_image_on_this_machine() {
    let r = run("vfio-nvme");
    r.assert_success();
    assert_eq!(
        String::from_utf8_lossy(&results().nvme_mark),
        MARK,
        "the guest's marker, through iovm, VFIO and the test host's NVMe\n{}",
        r.dump()
    );
}

#[test]
fn test_missing_and_wrongly_bound_functions_are_refused_in_one_line() {
    let missing = run("vfio-missing");
    assert_eq!(missing.exit_code, Some(1), "{}", missing.dump());
    assert!(
        missing
            .console
            .contains("0000:00:1f.6: no such PCI function"),
        "{}",
        missing.dump()
    );
    let wrong = run("vfio-wrong-driver");
    assert_eq!(wrong.exit_code, Some(1), "{}", wrong.dump());
    assert!(
        wrong.console.contains("0000:00:02.0 is bound to")
            && wrong.console.contains("not vfio-pci"),
        "{}",
        wrong.dump()
    );
    for r in [missing, wrong] {
        assert!(!r.console.contains("panicked"), "{}", r.dump());
    }
}

#[test]
fn test_guest_ahci_driver_binds_the_assigned_controller_with_msi_and_verifies() {
    let r = run("vfio-ahci-msi");
    r.assert_success();
    assert_eq!(r.fact("ahci_model"), "QEMUHARDDISK", "{}", r.dump());
    assert_eq!(r.fact("irq_kind").trim(), "msi", "{}", r.dump());
    assert_eq!(r.fact("ahci_msi"), "1", "one MSI vector\n{}", r.dump());
    assert_eq!(r.fact("fio"), "0", "{}", r.dump());
    assert_eq!(r.fact("mark"), "0", "{}", r.dump());
    assert_eq!(
        String::from_utf8_lossy(&results().ahci_mark),
        AHCI_MARK,
        "the guest's marker, through iovm, VFIO and the test host's AHCI\n{}",
        r.dump()
    );
}

#[test]
fn test_a_group_with_a_function_on_a_host_driver_is_refused_in_one_line() {
    let r = run("vfio-ahci-not-viable");
    assert_eq!(r.exit_code, Some(1), "{}", r.dump());
    assert!(
        r.console.contains("is not viable") && r.console.contains("is bound to virtio-pci"),
        "{}",
        r.dump()
    );
    assert!(!r.console.contains("panicked"), "{}", r.dump());
}

#[test]
fn test_assigned_function_behind_iovms_vtd_gets_the_guests_translations() {
    let r = run("vfio-behind-vtd");
    r.assert_success();
    assert_eq!(r.fact("serial"), ASSIGNABLE_NVME_SERIAL, "{}", r.dump());
    assert_eq!(
        r.fact("cm"),
        "1",
        "caching mode seen by intel_iommu\n{}",
        r.dump()
    );
    assert_eq!(r.fact("group"), "yes", "{}", r.dump());
    assert_eq!(r.fact("irq_kind").trim(), "msix", "{}", r.dump());
    assert_eq!(r.fact("fio"), "0", "{}", r.dump());
    assert_eq!(r.fact("dmar_faults"), "0", "{}", r.dump());
}
