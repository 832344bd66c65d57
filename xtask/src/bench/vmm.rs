//! The VMMs compared and their command lines: iovm, and QEMU 7.2 as `-M microvm` and as
//! `-M q35`, all booting the same kernel and initramfs with the same kernel command line,
//! one vCPU and the same RAM.

/// A VMM (with its machine type) under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vmm {
    /// iovm.
    Iovm,
    /// QEMU with `-M microvm` (no PCI, no firmware but qboot).
    QemuMicrovm,
    /// QEMU with `-M q35` (PCIe, SeaBIOS).
    QemuQ35,
}

/// QEMU's microvm: ISA serial and RTC like iovm's, no PIC, PIT or option ROMs; its
/// firmware is qboot (`-bios qboot.rom`).
pub const MICROVM_MACHINE: &str = "microvm,x-option-roms=off,rtc=on,isa-serial=on,pic=off,pit=off";

/// Where a VMM's files are, as the bench script names them.
#[derive(Debug, Clone)]
pub struct Files {
    /// The iovm binary.
    pub iovm: String,
    /// `qemu-system-x86_64`.
    pub qemu: String,
    /// QEMU firmware directories (`-L`).
    pub firmware: Vec<String>,
    /// The guest kernel (bzImage).
    pub kernel: String,
    /// The same kernel as an ELF `vmlinux`, for the PVH boot runs.
    pub vmlinux: String,
    /// The guest initramfs.
    pub initramfs: String,
}

impl Vmm {
    /// All of them, iovm first.
    pub const ALL: [Vmm; 3] = [Vmm::Iovm, Vmm::QemuMicrovm, Vmm::QemuQ35];

    /// Short name used in run names and results.json.
    pub fn id(self) -> &'static str {
        match self {
            Vmm::Iovm => "iovm",
            Vmm::QemuMicrovm => "qemu-microvm",
            Vmm::QemuQ35 => "qemu-q35",
        }
    }

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Vmm::Iovm => "iovm",
            Vmm::QemuMicrovm => "QEMU microvm",
            Vmm::QemuQ35 => "QEMU q35",
        }
    }

    /// The command line booting the guest with `cmdline`, `memory` of RAM and one vCPU,
    /// its console on stdout; the process exits when the guest powers off.
    pub fn command(self, f: &Files, cmdline: &str, memory: &str) -> Vec<String> {
        let mut c: Vec<String> = Vec::new();
        let mut push = |args: &[&str]| c.extend(args.iter().map(|a| (*a).to_owned()));
        match self {
            Vmm::Iovm => push(&[
                &f.iovm,
                "run",
                "--kernel",
                &f.kernel,
                "--initramfs",
                &f.initramfs,
                "--cmdline",
                cmdline,
                "--memory",
                memory,
                "--cpus",
                "1",
                "--serial",
                "stdio",
                "--timing",
            ]),
            Vmm::QemuMicrovm | Vmm::QemuQ35 => {
                push(&[&f.qemu]);
                for dir in &f.firmware {
                    push(&["-L", dir]);
                }
                match self {
                    // qboot (usr/share/qemu), not SeaBIOS's own bios-microvm.bin, which
                    // cannot boot a -kernel without option ROMs.
                    Vmm::QemuMicrovm => push(&["-M", MICROVM_MACHINE, "-bios", "qboot.rom"]),
                    _ => push(&["-M", "q35"]),
                }
                push(&[
                    "-enable-kvm",
                    "-cpu",
                    "host",
                    "-m",
                    memory,
                    "-smp",
                    "1",
                    "-nographic",
                    "-nodefaults",
                    "-no-reboot",
                    "-serial",
                    "stdio",
                    "-kernel",
                    &f.kernel,
                    "-initrd",
                    &f.initramfs,
                    "-append",
                    cmdline,
                ]);
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Files {
        Files {
            iovm: "$STAGE/bin/iovm".into(),
            qemu: "$STAGE/bin/qemu-system-x86_64".into(),
            firmware: vec!["$STAGE/share/qemu".into()],
            kernel: "$STAGE/guest/vmlinuz".into(),
            vmlinux: "$STAGE/guest/vmlinux".into(),
            initramfs: "$STAGE/guest/initramfs.cpio.gz".into(),
        }
    }

    #[test]
    fn test_all_boot_the_same_guest_with_the_same_cmdline() {
        for vmm in Vmm::ALL {
            let c = vmm.command(&files(), "console=ttyS0 panic=-1", "512M");

            assert!(c.contains(&"$STAGE/guest/vmlinuz".to_owned()), "{c:?}");
            assert!(c.contains(&"$STAGE/guest/initramfs.cpio.gz".to_owned()));
            assert!(c.contains(&"console=ttyS0 panic=-1".to_owned()));
            assert!(c.contains(&"512M".to_owned()));
        }
    }

    #[test]
    fn test_qemu_microvm_command() {
        let c = Vmm::QemuMicrovm.command(&files(), "x", "512M").join(" ");

        assert_eq!(
            c,
            "$STAGE/bin/qemu-system-x86_64 -L $STAGE/share/qemu -M microvm,x-option-roms=off,\
             rtc=on,isa-serial=on,pic=off,pit=off -bios qboot.rom -enable-kvm -cpu host -m 512M -smp 1 \
             -nographic -nodefaults -no-reboot -serial stdio -kernel $STAGE/guest/vmlinuz \
             -initrd $STAGE/guest/initramfs.cpio.gz -append x"
        );
    }
}
