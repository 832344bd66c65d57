//! Helpers shared by the guest test files: the batch's runs by name, disk
//! images made in its scratch directory and copied in and out of the test
//! host's tmpfs. Each test binary uses part of them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use testkit::RunResult;

/// The runs of a batch, by name.
pub struct Runs(BTreeMap<String, RunResult>);

impl Runs {
    /// The results `Batch::run` returned.
    pub fn new(list: Vec<RunResult>) -> Self {
        Self(list.into_iter().map(|r| (r.name.clone(), r)).collect())
    }

    /// The run called `name`; panics (naming `IOVM_TEST_RUNS`, which can
    /// leave runs out) when there is none.
    #[track_caller]
    pub fn get(&self, name: &str) -> &RunResult {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("run {name} was not run (IOVM_TEST_RUNS?)"))
    }
}

/// Makes each `(name, MiB)` disk image in `dir`, sparse.
pub fn sparse_disks(dir: &Path, disks: &[(&str, u64)]) {
    for (name, mib) in disks {
        let f = std::fs::File::create(dir.join(name))
            .unwrap_or_else(|e| panic!("create {name} in {}: {e}", dir.display()));
        f.set_len(mib << 20)
            .unwrap_or_else(|e| panic!("size {name}: {e}"));
    }
}

/// Shell commands (for `GuestRun::host_before`) that copy `disks` from the
/// scratch directory to `work` (tmpfs where iovm runs: in the test host,
/// its memory rather than the 9p share), every block written (`dd`, not
/// sparse), so that a punched hole shows in `st_blocks`.
pub fn disks_in(work: &str, disks: &[&str]) -> String {
    let mut s = format!("rm -rf {work} && mkdir -p {work}");
    for d in disks {
        s.push_str(&format!(
            " && dd if={{scratch}}/{d} of={work}/{d} bs=1M 2>/dev/null"
        ));
    }
    s
}

/// Shell commands (for `GuestRun::host_after`) that record each disk's
/// allocated 512-byte blocks as `{scratch}/<disk>.blocks`, copy the disks
/// back to the scratch directory and remove `work`.
pub fn disks_out(work: &str, disks: &[&str]) -> String {
    let mut s = String::from("true");
    for d in disks {
        s.push_str(&format!(
            " && stat -c %b {work}/{d} > {{scratch}}/{d}.blocks && cp {work}/{d} {{scratch}}/{d}"
        ));
    }
    s.push_str(&format!(" && rm -rf {work}"));
    s
}

#[test]
fn test_disk_copy_commands_name_every_disk_in_both_places() {
    let before = disks_in("/w", &["a.img", "b.img"]);
    let after = disks_out("/w", &["a.img"]);

    assert_eq!(
        before,
        "rm -rf /w && mkdir -p /w && dd if={scratch}/a.img of=/w/a.img bs=1M 2>/dev/null \
         && dd if={scratch}/b.img of=/w/b.img bs=1M 2>/dev/null"
    );
    assert_eq!(
        after,
        "true && stat -c %b /w/a.img > {scratch}/a.img.blocks && cp /w/a.img {scratch}/a.img \
         && rm -rf /w"
    );
}
