//! The report's block and network sections: iovm against QEMU q35, and for block the
//! test host's own fio as the physical limit; each with the VMMs' CPU per unit of work
//! ([`super::cpu_report`]).

use super::block::{self, Disk, HostFio, Storage};
use super::boot::{summary, Figure, Outcome};
use super::cpu_report;
use super::net;
use super::plan::{block_kinds, Kind};
use super::plots::{Figures, Group};
use super::report::{cell, Env};
use super::stats::ratio;
use super::vmm::Vmm;

/// The VMMs these sections compare.
const VMMS: [Vmm; 2] = [Vmm::Iovm, Vmm::QemuQ35];

fn ratio_cell(outcomes: &[Outcome], f: Figure) -> String {
    ratio(
        summary(outcomes, f, Vmm::Iovm),
        summary(outcomes, f, Vmm::QemuQ35),
    )
    .map_or_else(|| "–".into(), |r| format!("{r:.2}"))
}

/// The command lines of `kinds`' runs as run, then their guest scripts (one per
/// distinct script).
pub fn commands(out: &mut String, env: &Env, kinds: &[Kind]) {
    out.push_str("\nAs run (`$STAGE`: the staged binaries, firmware and guest images):\n\n```\n");
    for (k, _, c) in &env.io_commands {
        if kinds.contains(k) {
            out.push_str(c);
            out.push('\n');
        }
    }
    out.push_str("```\n");
    // Runs that differ only where the VMMs keep the image share their guest script.
    let mut scripts: Vec<(Vec<String>, &str)> = Vec::new();
    for (k, script) in &env.io_scripts {
        if !kinds.contains(k) {
            continue;
        }
        match scripts.iter_mut().find(|(_, s)| s == script) {
            Some((names, _)) => names.push(format!("`{}`", k.id())),
            None => scripts.push((vec![format!("`{}`", k.id())], script)),
        }
    }
    for (names, script) in scripts {
        out.push_str(&format!(
            "\nThe guest script of {} runs:\n\n```sh\n{script}```\n",
            names.join(", ")
        ));
    }
}

/// The block section (from its `##` heading), for the disks that have outcomes, with
/// the block figure and the VMM CPU figure.
pub fn block_section(
    env: &Env,
    outcomes: &[Outcome],
    host: Option<&HostFio>,
    figures: &Figures,
) -> String {
    let host_version = host.and_then(|h| h.version.as_deref());
    let ran = |k: Kind| outcomes.iter().any(|o| o.spec.kind == k);
    let storages: Vec<Storage> = Storage::ALL
        .into_iter()
        .filter(|&st| Disk::ALL.iter().any(|&d| ran(Kind::Block(d, st))))
        .collect();
    let mut out = format!(
        "\n## Block I/O\n\nfio in the guest (1 vCPU, {mem}) on a disk whose {IMAGE_MIB} MiB \
         raw image, filled with zeros once, is on one of these storages where the VMMs run:\n\n",
        mem = env.memory,
        IMAGE_MIB = block::IMAGE_MIB
    );
    for &st in &storages {
        let found = env
            .block_images
            .iter()
            .find(|(s, _)| *s == st)
            .map_or("", |(_, f)| f.as_str());
        out.push_str(&format!("- **{}**: {}.\n", st.label(), st.describe(found)));
    }
    out.push_str(&format!(
        "\nOne run boots the guest and runs four time-based jobs of {secs} s each, one after \
         the other, `--ioengine=libaio --direct=1`: 4k randread at queue depth 1 (completion \
         latency percentiles), 4k randread and 4k randwrite at depth 32 (IOPS), 128k \
         sequential read at depth 8 (MB/s). **Exits per I/O**: KVM's counters in debugfs \
         where the VMMs run (`exits`, `mmio_exits`: MMIO accesses emulated for user space, \
         so not those an ioeventfd absorbs, `io_exits`, `halt_exits`, `irq_exits`: exits for \
         a host interrupt, among them the kick that makes a running vCPU take a new \
         interrupt; and, not exits themselves, `insn_emulation`: instructions KVM emulated, \
         each MMIO write among them, ioeventfd doorbells included, and `irq_injections`: \
         interrupts injected, the device's and the timer's), read by `bench-probe` \
         at marks fio itself writes to the console (`--exec_prerun`, then 0.1 s before the \
         first I/O; `--exec_postrun`, after the last), so fio's start-up and exit are not \
         counted, divided by the job's completed I/Os; only one VM runs at a time, so they \
         are that VM's, timer ticks and idle `hlt`s during the job included. {host} Ratios: iovm's median ÷ QEMU q35's (for \
         latency and exits below 1 favours iovm, for IOPS and MB/s above 1 does).\n",
        secs = env.block_seconds,
        host = match host_version {
            Some(v) => format!(
                "The host column is the test host's own fio ({v}, staged from this machine) \
                 on the same image with the same jobs (`--direct=1`, but `--direct=0` on \
                 /dev/shm): the limit without a VM."
            ),
            None => "There is no host column: no fio to stage on this machine.".to_owned(),
        }
    ));
    for &storage in &storages {
        for disk in Disk::ALL {
            let kind = Kind::Block(disk, storage);
            if !ran(kind) {
                continue;
            }
            out.push_str(&format!(
                "\n### {} on {}\n\n| | iovm | QEMU q35 | host fio | iovm ÷ QEMU q35 |\n\
                 |---|---:|---:|---:|---:|\n",
                disk.label(),
                storage.label()
            ));
            for (job, m) in block::rows() {
                let f = Figure::Block(disk, storage, job, m);
                let host_cell = match host {
                    Some(h) if !m.is_kvm_counter() => cell(h.summary(storage, job, m)),
                    _ => "–".into(),
                };
                out.push_str(&format!(
                    "| {} | {} | {} | {host_cell} | {} |\n",
                    block::label(job, m),
                    cell(summary(outcomes, f, Vmm::Iovm)),
                    cell(summary(outcomes, f, Vmm::QemuQ35)),
                    ratio_cell(outcomes, f)
                ));
            }
        }
    }
    out.push_str(&figures.markdown(Group::Block));
    out.push_str(&cpu_report::block_tables(outcomes, &storages));
    out.push_str(&figures.markdown(Group::VmmCpu));
    if let Some(h) = host {
        let failed: Vec<String> = h
            .runs
            .iter()
            .filter_map(|(st, j, rep, r)| {
                Some(format!(
                    "- `{}.{}.{rep}`: {}\n",
                    st.id(),
                    j.id(),
                    r.as_ref().err()?
                ))
            })
            .collect();
        if !failed.is_empty() {
            out.push_str("\nHost fio runs that did not count:\n\n");
            out.push_str(&failed.concat());
        }
    }
    commands(&mut out, env, &block_kinds(&storages));
    out
}

/// The network section (from its `##` heading), with its figure, and the VMM CPU
/// figure if the block section, which shows it first, did not run.
pub fn net_section(env: &Env, outcomes: &[Outcome], figures: &Figures) -> String {
    let mut out = format!(
        "\n## Network\n\nTCP from the guest (1 vCPU, {mem}, virtio-net over PCI) to a peer \
         over a TAP interface: each run makes a network namespace where the VMMs run and \
         starts the VMM in it; the TAP `vtap0` gets 10.0.2.1/24 there, with busybox \
         `nc -l -p 5001 >/dev/null` as the sink. QEMU has `vhost=off`, so both VMMs move \
         every frame in user space. The guest sends {mib} MiB of zeros \
         (`dd if=/dev/zero bs=1M | nc 10.0.2.1 5001`) and times it with its own clock \
         (`/proc/uptime`, 10 ms steps), to `nc`'s exit after the peer closed. Exits per MiB: \
         KVM's counters around the transfer, as for block. Ratios: iovm's median ÷ QEMU \
         q35's. The `e1000e:` rows are the same transfer over an emulated Intel 82574L \
         (iovm `--device e1000e`, QEMU `-device e1000e`, the guest's stock `e1000e` \
         driver) on the same TAP, sending at most {e1000e_mib} MiB.\n\n| | iovm | QEMU q35 | iovm ÷ QEMU q35 |\n|---|---:|---:|---:|\n",
        mem = env.memory,
        mib = env.net_mib,
        e1000e_mib = env.net_mib.min(net::E1000E_MIB)
    );
    let rows = net::Metric::ALL
        .map(Figure::Net)
        .into_iter()
        .chain(net::Metric::ALL.map(Figure::E1000e));
    for f in rows {
        out.push_str(&format!("| {} |", f.label()));
        for v in VMMS {
            out.push_str(&format!(" {} |", cell(summary(outcomes, f, v))));
        }
        out.push_str(&format!(" {} |\n", ratio_cell(outcomes, f)));
    }
    out.push_str(&figures.markdown(Group::Network));
    out.push_str(&cpu_report::net_tables(outcomes));
    if !outcomes
        .iter()
        .any(|o| matches!(o.spec.kind, Kind::Block(..)))
    {
        out.push_str(&figures.markdown(Group::VmmCpu));
    }
    commands(&mut out, env, &[Kind::Net, Kind::NetE1000e]);
    out
}
