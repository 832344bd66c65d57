//! Helpers shared by the guest test files.

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
