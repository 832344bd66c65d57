//! The stock Linux `e1000e` driver on iovm's emulated Intel 82574L, once
//! with MSI-X, once with MSI only and once with INTx only. Each run puts
//! iovm in a network namespace it makes and removes, with the TAP's other
//! end there: ethtool's view and its offline self-test, pings of 1400
//! bytes, 8 MiB over TCP each way checked by sha256, the statistics, MTU
//! 9000 and 50 link down/up cycles. One batch (one test-host boot).

use std::path::Path;
use std::sync::OnceLock;

use testkit::{Batch, GuestRun, RunResult};

mod common;
use common::Runs;

/// The network namespace a run's iovm lives in (a bound namespace file).
const NETNS: &str = "/run/iovm-e1000e-ns";

/// Bytes moved over TCP in each direction.
const BYTES: u64 = 8 << 20;

/// Makes the namespace and, once iovm has created the TAP: the host-side
/// address (MTU 9000), a listener keeping what the guest sends (port
/// 5001; its input never ends, as busybox `nc` stops at the end of its
/// input) and one serving 8 MiB of random bytes (port 5002).
const NET_BEFORE: &str = r#"touch /run/iovm-e1000e-ns && unshare --net=/run/iovm-e1000e-ns true &&
head -c 8388608 /dev/urandom > /dev/shm/e1000e-to-guest.bin &&
nsenter --net=/run/iovm-e1000e-ns sh -c '( i=0
  while ! ip link show etap0 >/dev/null 2>&1 && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
  ip link set etap0 mtu 9000
  ip addr add 10.0.3.1/24 dev etap0 && ip link set etap0 up
  nc -l -p 5002 < /dev/shm/e1000e-to-guest.bin &
  sleep 3600 | nc -l -p 5001 > /dev/shm/e1000e-from-guest.bin ) >/dev/null 2>&1 &'"#;

/// Removes the namespace and leaves the sums of both files for the test.
const NET_AFTER: &str = "umount /run/iovm-e1000e-ns; rm -f /run/iovm-e1000e-ns; \
sha256sum /dev/shm/e1000e-to-guest.bin | cut -d' ' -f1 > {scratch}/{run}-to-guest.sum; \
sha256sum /dev/shm/e1000e-from-guest.bin | cut -d' ' -f1 > {scratch}/{run}-from-guest.sum; \
wc -c < /dev/shm/e1000e-from-guest.bin > {scratch}/{run}-from-guest.len; \
rm -f /dev/shm/e1000e-to-guest.bin /dev/shm/e1000e-from-guest.bin";

/// What each run does in the guest; prints `key=value` facts.
const SCRIPT: &str = r#"
ip link set lo up
wait_carrier() {
  i=0
  while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
}
counter() { ethtool -S eth0 | grep " $1:" | tr -d ' ' | cut -d: -f2; }
echo "driver=$(basename $(readlink /sys/class/net/eth0/device/driver))"
echo "id=$(cat /sys/class/net/eth0/device/vendor):$(cat /sys/class/net/eth0/device/device)"
echo "mac=$(cat /sys/class/net/eth0/address)"
ip link set eth0 up
wait_carrier
ethtool eth0 > /tmp/ethtool 2>&1
echo "speed=$(grep 'Speed:' /tmp/ethtool | tr -d ' \t' | cut -d: -f2)"
echo "duplex=$(grep 'Duplex:' /tmp/ethtool | tr -d ' \t' | cut -d: -f2)"
echo "link=$(grep 'Link detected:' /tmp/ethtool | tr -d ' \t' | cut -d: -f2)"
grep eth0 /proc/interrupts > /tmp/irq
echo "irq_lines=$(wc -l < /tmp/irq)"
echo "irq_names=$(awk '{print $NF}' /tmp/irq | tr '\n' ',')"
echo "irq_kind=$(grep -o 'MSI\|IO-APIC' /tmp/irq | sort -u | tr '\n' ',')"
cat /tmp/irq
ethtool -t eth0 offline > /tmp/selftest 2>&1
echo "selftest=$(grep -o 'PASS\|FAIL' /tmp/selftest | head -1)"
cat /tmp/selftest
wait_carrier
ip addr add 10.0.3.15/24 dev eth0
sleep 1
tx0=$(counter tx_packets); rx0=$(counter rx_packets)
ping -A -c 20 -s 1400 -W 5 10.0.3.1 > /tmp/ping 2>&1
echo "ping_received=$(grep -o '[0-9]* packets received' /tmp/ping | cut -d' ' -f1)"
tail -3 /tmp/ping
echo "ping_tx_packets=$(( $(counter tx_packets) - tx0 ))"
echo "ping_rx_packets=$(( $(counter rx_packets) - rx0 ))"
head -c 8388608 /dev/urandom > /tmp/blob
echo "sent_sum=$(sha256sum /tmp/blob | cut -d' ' -f1)"
txb=$(counter tx_bytes)
nc 10.0.3.1 5001 < /tmp/blob
echo "nc_send=$?"
echo "tx_bytes=$(( $(counter tx_bytes) - txb ))"
rxb=$(counter rx_bytes)
( sleep 600 | nc 10.0.3.1 5002 > /tmp/got ) &
reader=$!
i=0
while [ "$(wc -c < /tmp/got 2>/dev/null || echo 0)" -lt 8388608 ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
echo "got_len=$(wc -c < /tmp/got)"
echo "got_sum=$(head -c 8388608 /tmp/got | sha256sum | cut -d' ' -f1)"
echo "rx_bytes=$(( $(counter rx_bytes) - rxb ))"
kill $reader 2>/dev/null
ip link set eth0 mtu 9000
wait_carrier
sleep 1
ping -A -c 3 -s 8000 -W 5 10.0.3.1 > /tmp/ping 2>&1
echo "jumbo_received=$(grep -o '[0-9]* packets received' /tmp/ping | cut -d' ' -f1)"
for c in $(seq 50); do ip link set eth0 down; ip link set eth0 up; done
wait_carrier
echo "carrier_after_cycles=$(cat /sys/class/net/eth0/carrier)"
ping -A -c 3 -W 5 10.0.3.1 > /tmp/ping 2>&1
echo "cycles_received=$(grep -o '[0-9]* packets received' /tmp/ping | cut -d' ' -f1)"
"#;

/// The three interrupt modes: run name and the device's options.
const MODES: [(&str, &str); 3] = [
    ("e1000e-msix", ""),
    ("e1000e-msi", ",msix=off"),
    ("e1000e-intx", ",msix=off,msi=off"),
];

fn runs() -> Vec<GuestRun> {
    MODES
        .iter()
        .map(|(name, opts)| {
            GuestRun::new(*name)
                .netns(NETNS)
                .host_before(NET_BEFORE)
                .host_after(NET_AFTER.replace("{run}", name))
                .args([
                    "--device".to_string(),
                    format!("e1000e,tap=etap0,mac=52:54:00:12:35:99{opts}"),
                    "--cpus".into(),
                    "1".into(),
                    "--memory".into(),
                    "1G".into(),
                ])
                .timeout(std::time::Duration::from_secs(900))
                .script(SCRIPT)
        })
        .collect()
}

struct Results {
    runs: Runs,
    /// What the runs' `host_after` left, by file name (read before the
    /// batch, and its scratch directory, go away).
    host: std::collections::BTreeMap<String, String>,
}

fn results() -> &'static Results {
    static RESULTS: OnceLock<Results> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let iovm = Path::new(env!("CARGO_BIN_EXE_iovm"));
        let batch = Batch::new().expect("set up the test batch");
        let scratch = batch.scratch_dir().to_path_buf();
        let list = batch.run(iovm, &runs()).expect("run the guest batch");
        let mut host = std::collections::BTreeMap::new();
        for (name, _) in MODES {
            for what in ["to-guest.sum", "from-guest.sum", "from-guest.len"] {
                let file = format!("{name}-{what}");
                let text = std::fs::read_to_string(scratch.join(&file)).unwrap_or_default();
                host.insert(file, text.trim().to_string());
            }
        }
        Results {
            runs: Runs::new(list),
            host,
        }
    })
}

/// A file the run's `host_after` left, trimmed.
fn host_fact(run: &str, what: &str) -> String {
    results()
        .host
        .get(&format!("{run}-{what}"))
        .cloned()
        .unwrap_or_default()
}

fn num(r: &RunResult, key: &str) -> u64 {
    r.fact(key).parse().unwrap_or(0)
}

/// Everything one run shows, whatever its interrupt mode.
#[track_caller]
fn check_run(name: &str, irq_lines: &str, irq_kind: &str) {
    let r = results().runs.get(name);
    r.assert_success();
    let d = r.dump();
    assert_eq!(r.fact("driver"), "e1000e", "{d}");
    assert_eq!(r.fact("id"), "0x8086:0x10d3", "{d}");
    assert_eq!(r.fact("mac"), "52:54:00:12:35:99", "{d}");
    assert_eq!(r.fact("speed"), "1000Mb/s", "{d}");
    assert_eq!(r.fact("duplex"), "Full", "{d}");
    assert_eq!(r.fact("link"), "yes", "{d}");
    assert_eq!(r.fact("irq_lines"), irq_lines, "{d}");
    assert_eq!(r.fact("irq_kind"), irq_kind, "{d}");
    assert_eq!(r.fact("selftest"), "PASS", "{d}");
    assert_eq!(r.fact("ping_received"), "20", "{d}");
    assert!(num(r, "ping_tx_packets") >= 20, "{d}");
    assert!(num(r, "ping_rx_packets") >= 20, "{d}");
    assert_eq!(r.fact("nc_send"), "0", "{d}");
    assert_eq!(host_fact(name, "from-guest.len"), BYTES.to_string(), "{d}");
    assert_eq!(host_fact(name, "from-guest.sum"), r.fact("sent_sum"), "{d}");
    assert!(num(r, "tx_bytes") >= BYTES, "{d}");
    assert_eq!(num(r, "got_len"), BYTES, "{d}");
    assert_eq!(host_fact(name, "to-guest.sum"), r.fact("got_sum"), "{d}");
    assert!(num(r, "rx_bytes") >= BYTES, "{d}");
    assert_eq!(r.fact("jumbo_received"), "3", "{d}");
    assert_eq!(r.fact("carrier_after_cycles"), "1", "{d}");
    assert_eq!(r.fact("cycles_received"), "3", "{d}");
}

#[test]
fn test_e1000e_with_msix_binds_passes_selftest_and_moves_data() {
    check_run("e1000e-msix", "3", "MSI,");
    let r = results().runs.get("e1000e-msix");
    let names = r.fact("irq_names");
    for v in ["eth0-rx-0", "eth0-tx-0", "eth0"] {
        assert!(names.split(',').any(|n| n == v), "{names}\n{}", r.dump());
    }
}

#[test]
fn test_e1000e_with_msi_only_moves_data() {
    check_run("e1000e-msi", "1", "MSI,");
}

#[test]
fn test_e1000e_with_intx_only_moves_data() {
    check_run("e1000e-intx", "1", "IO-APIC,");
}
