//! The `net` figure group: TCP throughput from the guest to a peer over a TAP
//! interface, iovm's virtio-net against QEMU q35's `virtio-net-pci` (`vhost=off`: both
//! move every frame in user space), and iovm's emulated Intel 82574L (`--device e1000e`)
//! against QEMU's `-device e1000e` on the same TAP ([`e1000e_vmm_args`]).
//!
//! Each run gets a fresh network namespace where the VMMs run ([`before`]); the VMM
//! runs inside it (`nsenter`) and opens or creates the TAP `vtap0`, which a background
//! loop in the namespace gives 10.0.2.1/24 once it exists, with a busybox `nc` sink on
//! port 5001. The guest sends zeros from `/dev/zero` with busybox `nc` and times the
//! transfer with its own clock; the probe reads KVM's exit counters and the VMM's CPU
//! time ([`super::vmm_cpu`]) around it. No traffic leaves the namespace; [`after`]
//! removes it.

use super::marks::{self, Snapshot};
use super::vmm::Vmm;
use super::vmm_cpu::{self, CpuFigure};

/// The namespace file.
pub const NETNS: &str = "/run/iovm-bench-netns";
/// The TAP interface.
const TAP: &str = "vtap0";
/// What the guest's result line starts with.
const NET_LINE: &str = "IOVM-BENCH: net ";
/// Where the sink's process id is kept, to stop it after the run.
const SINK_PID: &str = "/run/iovm-bench-sink.pid";
/// The sink's standard input: a FIFO opened read-write, so it never reads end of file
/// (busybox `nc` half-closes the connection when its input ends, and the guest's `nc`
/// then stops at once).
const SINK_IN: &str = "/run/iovm-bench-sink.in";

/// A net figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Guest → peer TCP throughput, MB/s (10^6 bytes).
    MBps,
    /// KVM exits per MiB sent.
    ExitsPerMib,
    /// MMIO exits to user space per MiB sent.
    MmioExitsPerMib,
    /// `hlt` exits per MiB sent.
    HaltExitsPerMib,
    /// The VMM's CPU time (or the guest's) per MiB sent, ms ([`vmm_cpu`]).
    Cpu(CpuFigure),
}

impl Metric {
    /// The throughput and exit figures, in table order.
    pub const ALL: [Metric; 4] = [
        Metric::MBps,
        Metric::ExitsPerMib,
        Metric::MmioExitsPerMib,
        Metric::HaltExitsPerMib,
    ];

    /// The CPU figures, in table order.
    pub fn cpu() -> [Metric; 7] {
        CpuFigure::ALL.map(Metric::Cpu)
    }

    /// Key part in results.json.
    pub fn id(self) -> String {
        let s = match self {
            Metric::Cpu(c) => return format!("{}_ms_per_mib", c.id()),
            Metric::MBps => "tcp_tx_mb_per_s",
            Metric::ExitsPerMib => "exits_per_mib",
            Metric::MmioExitsPerMib => "mmio_exits_per_mib",
            Metric::HaltExitsPerMib => "halt_exits_per_mib",
        };
        s.to_owned()
    }

    /// Row title in tables.
    pub fn label(self) -> String {
        let s = match self {
            Metric::Cpu(c) => return format!("{} per MiB sent (ms)", c.label()),
            Metric::MBps => "TCP guest → peer (MB/s)",
            Metric::ExitsPerMib => "KVM exits per MiB sent",
            Metric::MmioExitsPerMib => "of which MMIO exits to user space",
            Metric::HaltExitsPerMib => "of which `hlt` exits",
        };
        s.to_owned()
    }

    /// Whether more is better.
    pub fn higher_is_better(self) -> bool {
        self == Metric::MBps
    }

    fn counter(self) -> Option<&'static str> {
        match self {
            Metric::MBps | Metric::Cpu(_) => None,
            Metric::ExitsPerMib => Some("exits"),
            Metric::MmioExitsPerMib => Some("mmio_exits"),
            Metric::HaltExitsPerMib => Some("halt_exits"),
        }
    }
}

/// The VMM arguments of the network device on [`TAP`].
pub fn vmm_args(vmm: Vmm) -> Vec<String> {
    match vmm {
        Vmm::Iovm => vec!["--device".into(), format!("virtio-net,tap={TAP}")],
        _ => vec![
            "-netdev".into(),
            format!("tap,id=n,ifname={TAP},script=no,downscript=no,vhost=off"),
            "-device".into(),
            // No option ROM: the guest boots with -kernel, and QEMU's is not staged.
            "virtio-net-pci,netdev=n,romfile=".into(),
        ],
    }
}

/// MiB an e1000e run sends at most: an emulated NIC costs several exits per packet
/// (doorbell, interrupt cause, mask), and in the nested test host 200 MiB outlast a
/// run's timeout on both VMMs (QEMU's too); the figures are per MiB or per second.
pub const E1000E_MIB: u32 = 16;

/// The VMM arguments of an emulated Intel 82574L on [`TAP`] (the guest's stock
/// `e1000e` driver; same guest script, same peer).
pub fn e1000e_vmm_args(vmm: Vmm) -> Vec<String> {
    match vmm {
        Vmm::Iovm => vec!["--device".into(), format!("e1000e,tap={TAP}")],
        _ => vec![
            "-netdev".into(),
            format!("tap,id=n,ifname={TAP},script=no,downscript=no,vhost=off"),
            "-device".into(),
            "e1000e,netdev=n,romfile=".into(),
        ],
    }
}

/// Shell commands where the VMMs run, before a run: the namespace, and in it, in the
/// background, the TAP's address and the sink once the VMM has made the TAP.
pub fn before() -> String {
    format!(
        "rm -f {SINK_PID} {SINK_IN}; mkfifo {SINK_IN} && \
         touch {NETNS} && unshare --net={NETNS} true && \
         nsenter --net={NETNS} sh -c '( i=0; \
         while ! ip link show {TAP} >/dev/null 2>&1 && [ $i -lt 1200 ]; do sleep 0.1; \
         i=$((i+1)); done; ip addr add 10.0.2.1/24 dev {TAP} && ip link set {TAP} up; \
         nc -l -p 5001 <>{SINK_IN} >/dev/null & echo $! >{SINK_PID}; wait ) >/dev/null 2>&1 &' \
         || echo 'bench: making the network namespace failed'\n"
    )
}

/// Shell commands after a run: stop the sink if it still runs, remove the namespace.
pub fn after() -> String {
    format!(
        "[ -f {SINK_PID} ] && kill $(cat {SINK_PID}) 2>/dev/null; rm -f {SINK_PID} {SINK_IN}; \
         umount {NETNS} 2>/dev/null; rm -f {NETNS}\n"
    )
}

/// The guest script: address, wait for the peer, send `mib` MiB timed, print the result
/// with the bytes the interface sent (which must be at least that).
pub fn guest_script(mib: u32) -> String {
    format!(
        "ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up || exit 1\n\
         i=0; until ping -c 1 -W 1 10.0.2.1 >/dev/null 2>&1; do i=$((i+1)); \
         [ $i -lt 30 ] || {{ echo 'IOVM-BENCH: no peer'; exit 1; }}; done\n\
         t=/sys/class/net/eth0/statistics/tx_bytes; x=$(cat $t)\n\
         echo \"{m}net.begin\"; sleep 0.1\n\
         a=$(cut -d' ' -f1 /proc/uptime)\n\
         dd if=/dev/zero bs=1048576 count={mib} 2>/dev/null | nc 10.0.2.1 5001; rc=$?\n\
         b=$(cut -d' ' -f1 /proc/uptime)\n\
         echo \"{m}net.end\"\n\
         echo \"{NET_LINE}mib={mib} start=$a end=$b rc=$rc tx=$(($(cat $t)-x))\"\n\
         exit $rc\n",
        m = marks::MARK
    )
}

/// The figures of one run of `vmm` from its console and the counters and CPU times at
/// its marks.
pub fn figures(vmm: Vmm, console: &str, snaps: &[Snapshot]) -> Result<Vec<(Metric, f64)>, String> {
    let line = console
        .lines()
        .find_map(|l| l.split_once(NET_LINE).map(|(_, r)| r))
        .ok_or("no `IOVM-BENCH: net` result line")?;
    let get = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let (Some(mib), Some(start), Some(end), Some(rc)) =
        (get("mib"), get("start"), get("end"), get("rc"))
    else {
        return Err(format!("unreadable result line `{line}`"));
    };
    if rc != 0.0 {
        return Err(format!("nc failed (status {rc})"));
    }
    if get("tx").unwrap_or(0.0) < mib * 1048576.0 {
        return Err(format!("the interface sent less than {mib} MiB: `{line}`"));
    }
    let secs = end - start;
    if secs <= 0.0 || mib <= 0.0 {
        return Err(format!("no time passed: `{line}`"));
    }
    let mut out = vec![(Metric::MBps, mib * 1048576.0 / 1e6 / secs)];
    for m in Metric::ALL {
        let Some(counter) = m.counter() else { continue };
        if let Some(d) = marks::delta(snaps, "net", counter) {
            out.push((m, d as f64 / mib));
        }
    }
    let cpu = vmm_cpu::figures(vmm, snaps, "net", mib, 1e3);
    out.extend(cpu.into_iter().map(|(c, v)| (Metric::Cpu(c), v)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::vmm_cpu::ThreadKind;

    #[test]
    fn test_figures_from_the_result_line() {
        let console = "IOVM-BENCH: mark net.begin\n\
                       IOVM-BENCH: net mib=100 start=10.50 end=20.50 rc=0 tx=106000000\n";
        let snaps = marks::parse_all(
            "mark=net.begin exits=100 halt_exits=0 clk_tck=100 proc=3:100:50:60 \
             task=3:40:50:0:qemu-system-x86 task=4:60:0:60:CPU%200/KVM\n\
             mark=net.end exits=5100 halt_exits=200 clk_tck=100 proc=3:300:90:160 \
             task=3:140:80:0:qemu-system-x86 task=4:160:10:160:CPU%200/KVM\n",
        );

        let f = figures(Vmm::QemuQ35, console, &snaps).unwrap();

        // 140 ticks outside the guest (130 main loop, 10 vCPU) and 100 in it, 1/100 s
        // each, over 100 MiB.
        assert_eq!(
            f,
            vec![
                (Metric::MBps, 10.48576),
                (Metric::ExitsPerMib, 50.0),
                (Metric::HaltExitsPerMib, 2.0),
                (Metric::Cpu(CpuFigure::Outside), 14.0),
                (Metric::Cpu(CpuFigure::Kind(ThreadKind::Vcpu)), 1.0),
                (Metric::Cpu(CpuFigure::Kind(ThreadKind::Io)), 0.0),
                (Metric::Cpu(CpuFigure::Kind(ThreadKind::MainLoop)), 13.0),
                (Metric::Cpu(CpuFigure::Kind(ThreadKind::Other)), 0.0),
                (Metric::Cpu(CpuFigure::Kind(ThreadKind::Ended)), 0.0),
                (Metric::Cpu(CpuFigure::Guest), 10.0),
            ]
        );
    }

    #[test]
    fn test_failed_send_does_not_count() {
        let e = figures(
            Vmm::Iovm,
            "IOVM-BENCH: net mib=100 start=1 end=2 rc=1\n",
            &[],
        )
        .unwrap_err();

        let short = figures(
            Vmm::Iovm,
            "IOVM-BENCH: net mib=100 start=1 end=2 rc=0 tx=9000\n",
            &[],
        );

        assert!(e.contains("status 1"), "{e}");
        assert!(short.unwrap_err().contains("sent less"));
        assert!(figures(Vmm::Iovm, "nothing\n", &[]).is_err());
    }

    #[test]
    fn test_qemu_args_use_a_user_space_tap() {
        let a = vmm_args(Vmm::QemuQ35).join(" ");

        assert_eq!(
            a,
            "-netdev tap,id=n,ifname=vtap0,script=no,downscript=no,vhost=off \
             -device virtio-net-pci,netdev=n,romfile="
        );
    }

    #[test]
    fn test_e1000e_args_put_both_vmms_on_the_same_tap() {
        assert_eq!(
            e1000e_vmm_args(Vmm::Iovm),
            vec!["--device".to_string(), "e1000e,tap=vtap0".to_string()]
        );
        assert_eq!(
            e1000e_vmm_args(Vmm::QemuQ35).join(" "),
            "-netdev tap,id=n,ifname=vtap0,script=no,downscript=no,vhost=off \
             -device e1000e,netdev=n,romfile="
        );
    }

    #[test]
    fn test_e1000e_figures_have_their_own_keys() {
        use crate::bench::boot::Figure;
        assert_eq!(
            Figure::E1000e(Metric::MBps).id(),
            "net.e1000e.tcp_tx_mb_per_s"
        );
        assert_eq!(Figure::Net(Metric::MBps).id(), "net.tcp_tx_mb_per_s");
        assert!(Figure::all().contains(&Figure::E1000e(Metric::ExitsPerMib)));
    }
}
