//! SR-IOV (issue 20) with stock drivers: an NVMe PF behind a root port,
//! `echo N > sriov_numvfs` in the guest, the VFs bound by `nvme` with
//! MSI-X, fio with verification on every VF's namespace, each VF's marker
//! in its own host file only, `echo 0` removing them (with iovm's threads
//! and descriptors back where they were), `echo N` bringing them back; with
//! 2 VFs and with 8 (ARI functions past 7). One batch, one test-host boot.

mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use common::{disks_in, disks_out, sparse_disks, Runs};
use testkit::{Batch, GuestRun, RunResult};

/// Where the disks and the signal file live while iovm runs.
const WORK: &str = "/dev/shm/iovm-sriov";
/// Each disk's size.
const DISK_MIB: u64 = 16;
/// Where each VF writes its marker (bytes).
const MARK_OFFSET: usize = 1 << 20;

fn marker(vf: usize) -> String {
    format!("IOVM-VF{vf}-MARK")
}

/// The disks of a run with `vfs` VFs: the PF's, then VF 0's, VF 1's, …
fn disk_names(run: &str, vfs: usize) -> Vec<String> {
    (0..=vfs).map(|i| format!("{run}-{i}.img")).collect()
}

/// Enables `$1` VFs, checks them, rescans, writes each VF's marker, runs
/// fio with verification on each VF's namespace (found by its NSID: VF
/// k's is k + 2), and disables them again; the second time VF 1 is reset
/// (FLR) while VF 0 runs fio. Between the two, a NumVFs above TotalVFs
/// then VF Enable written straight to the PF (`setpci`) must leave VF
/// Enable clear. `sig` tells the watcher on the host to count iovm's
/// threads and descriptors.
const SCRIPT: &str = r#"
pf=$(dirname $(ls -d /sys/bus/pci/devices/*/sriov_totalvfs | head -1))
t=$(ls /sys/bus/pci/devices/*/tty | grep ttyS | head -1)
sig() { echo $1 > /dev/$t; sleep 3; }
ns() { grep -lx $(($1+2)) /sys/block/nvme*/nsid | grep -v 'c[0-9]*n' | head -1 | cut -d/ -f4; }
v() { fio --name=v --filename=/dev/$1 --direct=1 --ioengine=psync --rw=randwrite --bs=4k \
 --offset=$2 --size=2m --verify=crc32c --do_verify=1 --output-format=terse \
 --terse-version=3 >/tmp/f$1 2>&1; echo "$? errors=$(cut -d';' -f5 /tmp/f$1 | head -1)"; }
echo "pf=$(basename $pf) total=$(cat $pf/sriov_totalvfs)"
cycle() {
 echo $1 > $pf/sriov_numvfs; echo "enable$2=$?"
 i=0; until [ $(ls /sys/block | grep -c nvme) -gt $1 ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done
 sig during$2
 echo "vfs$2=$(ls -d $pf/virtfn* | wc -l) lspci$2=$(lspci -n | grep -c ' 0108: 1b36:0010')"
 echo "class$2=$(cat $pf/virtfn*/class | sort -u | tr '\n' ,)"
 echo "drv$2=$(for v in $pf/virtfn*; do basename $(readlink $v/driver); done | sort -u | tr '\n' ,)"
 echo "msix$2=$(cat $pf/virtfn*/msi_irqs/* | sort -u | tr '\n' ,)"
 n=$(ls /sys/bus/pci/devices | wc -l); echo 1 > /sys/bus/pci/rescan; sleep 1
 echo "rescan$2=$(( $(ls /sys/bus/pci/devices | wc -l) - n ))"
 if [ $2 = b ]; then
  v $(ns 0) 8m > /tmp/bg & sleep 1
  echo 1 > $pf/virtfn1/reset; echo "flr=$?"; wait; echo "fio_during_flr=$(cat /tmp/bg)"
 fi
 k=0; while [ $k -lt $1 ]; do
  b=$(ns $k)
  printf IOVM-VF$k-MARK | dd of=/dev/$b bs=512 seek=2048 conv=notrunc,fsync 2>/dev/null
  echo "fio$2_$k=$(v $b 4m)"
  k=$((k+1)); done
 echo 0 > $pf/sriov_numvfs; echo "disable$2=$?"; sleep 1
 echo "left$2=$(ls -d $pf/virtfn* 2>/dev/null | wc -l) ctrls$2=$(ls /sys/class/nvme | wc -l)"
}
sig base
cycle @N@ a
sig after
s="setpci -s $(basename $pf) ECAP0010"
$s+10.w=$(printf %x $((@N@+1))); $s+8.w=19
echo "hostile_ctl=$($s+8.w)"; $s+8.w=10
cycle @N@ b
sig end
echo "nvme_errors=$(dmesg | grep -ci 'nvme.*\(error\|fail\|timeout\|duplicate\)')"
"#;

/// Counts iovm's threads (io_uring workers aside: they come and go) and
/// open descriptors each time the guest writes a line to the signal file.
const WATCHER: &str = r#"( : > @WORK@/signal; n=0; i=0
 while [ $i -lt 6000 ]; do
  c=$(wc -l < @WORK@/signal)
  if [ "$c" -gt "$n" ]; then n=$c
   for p in /proc/[0-9]*; do
    a=$(tr '\0' ' ' < $p/cmdline 2>/dev/null)
    case "$a" in *sleep*) ;; *-[-]device*@WORK@/signal*)
     echo "$(tail -1 @WORK@/signal) threads=$(cat $p/task/*/comm | grep -vc '^iou-') fds=$(ls $p/fd | wc -l)" >> {scratch}/@RUN@.counts ;;
    esac
   done
  fi
  sleep 0.2; i=$((i+1))
 done ) >/dev/null 2>&1 &"#;

fn sriov_run(name: &str, vfs: usize) -> GuestRun {
    let disks = disk_names(name, vfs);
    let names: Vec<&str> = disks.iter().map(String::as_str).collect();
    let watcher = WATCHER.replace("@WORK@", WORK).replace("@RUN@", name);
    let mut run = GuestRun::new(name)
        .host_before(format!("{} && {{ {watcher} }}", disks_in(WORK, &names)))
        .host_after(disks_out(WORK, &names))
        .args(["--cpus", "1", "--memory", "1G"])
        .args(["--device", "root-port,id=rp0", "--device"])
        .arg(format!(
            "nvme,id=n0,bus=rp0,serial=IOVMSRIOV,sriov-vfs={vfs}"
        ))
        .args([
            "--device",
            &format!("nvme-ns,bus=n0,path={WORK}/{}", disks[0]),
        ]);
    for (k, disk) in disks.iter().enumerate().skip(1) {
        run = run.args([
            "--device",
            &format!("nvme-ns,bus=n0,vf={},path={WORK}/{disk}", k - 1),
        ]);
    }
    run.args(["--device", &format!("pci-serial,output={WORK}/signal")])
        .script(SCRIPT.replace("@N@", &vfs.to_string()))
        .timeout(Duration::from_secs(900))
}

struct Results {
    runs: Runs,
    scratch: std::path::PathBuf,
}

fn results() -> &'static Results {
    static RESULTS: OnceLock<Results> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let iovm = Path::new(env!("CARGO_BIN_EXE_iovm"));
        let batch = Batch::new().expect("set up the test batch");
        for (name, vfs) in [("sriov2", 2), ("sriov8", 8)] {
            let disks: Vec<(String, u64)> = disk_names(name, vfs)
                .into_iter()
                .map(|d| (d, DISK_MIB))
                .collect();
            let list: Vec<(&str, u64)> = disks.iter().map(|(d, m)| (d.as_str(), *m)).collect();
            sparse_disks(batch.scratch_dir(), &list);
        }
        let runs = vec![sriov_run("sriov2", 2), sriov_run("sriov8", 8)];
        let list = batch.run(iovm, &runs).expect("run the guest batch");
        // Keep the scratch directory's files: read them before the batch goes.
        let keep = std::env::temp_dir().join(format!("iovm-sriov-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&keep);
        for entry in std::fs::read_dir(batch.scratch_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name();
            let n = name.to_string_lossy();
            if n.starts_with("sriov") {
                let _ = std::fs::copy(entry.path(), keep.join(&name));
            }
        }
        Results {
            runs: Runs::new(list),
            scratch: keep,
        }
    })
}

#[track_caller]
fn run(name: &str) -> &'static RunResult {
    results().runs.get(name)
}

/// The `(threads, fds)` the watcher counted at `line` ("base", "after").
fn counts(name: &str, line: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(results().scratch.join(format!("{name}.counts"))).ok()?;
    let l = text.lines().find(|l| l.starts_with(line))?;
    let field = |key: &str| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
    };
    Some((field("threads=")?, field("fds=")?))
}

#[track_caller]
fn check_cycle(r: &RunResult, vfs: usize, round: &str) {
    let f = |key: &str| r.fact(&format!("{key}{round}")).to_string();
    assert_eq!(f("enable"), "0", "{}", r.dump());
    assert_eq!(f("vfs"), vfs.to_string(), "{}", r.dump());
    assert_eq!(
        f("lspci"),
        (vfs + 1).to_string(),
        "PF and VFs\n{}",
        r.dump()
    );
    assert_eq!(f("class"), "0x010802,", "{}", r.dump());
    assert_eq!(f("drv"), "nvme,", "every VF bound by nvme\n{}", r.dump());
    assert_eq!(f("msix"), "msix,", "{}", r.dump());
    assert_eq!(f("rescan"), "0", "a rescan finds no phantom\n{}", r.dump());
    if round == "b" {
        assert_eq!(r.fact("flr"), "0", "FLR of VF 1\n{}", r.dump());
        let bg = r.fact("fio_during_flr");
        assert_eq!(bg, "0", "VF 0's fio through VF 1's FLR\n{}", r.dump());
    }
    for k in 0..vfs {
        let fio = r.fact(&format!("fio{round}_{k}"));
        assert_eq!(fio, "0", "fio on VF {k}\n{}", r.dump());
    }
    assert_eq!(f("disable"), "0", "{}", r.dump());
    assert_eq!(f("left"), "0", "{}", r.dump());
    assert_eq!(f("ctrls"), "1", "the PF's controller only\n{}", r.dump());
}

#[track_caller]
fn check_run(name: &str, vfs: usize) {
    let r = run(name);
    r.assert_success();
    r.assert_clean_dmesg();
    assert_eq!(r.fact("total"), vfs.to_string(), "{}", r.dump());
    check_cycle(r, vfs, "a");
    let ctl = u16::from_str_radix(r.fact("hostile_ctl"), 16).unwrap_or(u16::MAX);
    assert_eq!(
        ctl & 1,
        0,
        "NumVFs > TotalVFs: VF Enable refused\n{}",
        r.dump()
    );
    check_cycle(r, vfs, "b");
    assert_eq!(r.fact("nvme_errors"), "0", "{}", r.dump());
}

#[track_caller]
fn check_marks(name: &str, vfs: usize) {
    let disks = disk_names(name, vfs);
    let files: Vec<Vec<u8>> = disks
        .iter()
        .map(|d| std::fs::read(results().scratch.join(d)).unwrap_or_default())
        .collect();
    for k in 0..vfs {
        let mark = marker(k);
        let own = &files[k + 1];
        let at = own
            .get(MARK_OFFSET..MARK_OFFSET + mark.len())
            .unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(at),
            mark,
            "VF {k}'s marker in its file\n{}",
            run(name).dump()
        );
        for (i, other) in files.iter().enumerate().filter(|(i, _)| *i != k + 1) {
            let found = other.windows(mark.len()).any(|w| w == mark.as_bytes());
            assert!(!found, "VF {k}'s marker in {}", disks[i]);
        }
    }
}

#[test]
fn test_two_vfs_enable_bind_verify_disable_and_come_back() {
    check_run("sriov2", 2);
}

#[test]
fn test_eight_vfs_through_ari_enable_bind_verify_disable_and_come_back() {
    check_run("sriov8", 8);
}

#[test]
fn test_each_vf_writes_its_own_host_file_only() {
    check_marks("sriov2", 2);
    check_marks("sriov8", 8);
}

#[test]
fn test_disabling_vfs_leaves_no_thread_or_descriptor_behind() {
    for name in ["sriov2", "sriov8"] {
        let base = counts(name, "base");
        let during = counts(name, "duringa");
        assert!(base.is_some(), "no counts for {name}\n{}", run(name).dump());
        assert!(
            during.unwrap_or_default().0 > base.unwrap_or_default().0,
            "{name}: the VFs' workers are counted ({base:?} -> {during:?})"
        );
        for line in ["after", "end"] {
            let now = counts(name, line);
            assert_eq!(
                base, now,
                "{name}: threads and fds before VFs and at {line}"
            );
        }
    }
}
