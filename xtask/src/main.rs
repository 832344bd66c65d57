//! `cargo xtask`: builds the test guest and the nested test host, runs the demo and tests.

mod apt;
mod cpio;
mod elf;
mod guest;
mod image;
mod kmod;
mod libs;
mod paths;
mod rootfs;
mod run;
mod testhost;

use clap::{Parser, Subcommand};

/// Developer tasks for iovm.
#[derive(Debug, Parser)]
#[command(bin_name = "cargo xtask", about = "Developer tasks for iovm")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the test guest: target/guest/{vmlinuz,initramfs.cpio.gz} from Debian packages
    /// (busybox, lspci, nvme, fio, driver modules).
    Guest(guest::GuestArgs),
    /// Build the nested test host: QEMU 7.2 unpacked under target/testhost/qemu, and a
    /// kernel + initramfs (busybox, kvm_amd, 9p) in target/testhost/.
    Testhost(testhost::TestHostArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Cmd::Guest(args) => guest::build(args),
        Cmd::Testhost(args) => testhost::build(args),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
