//! Building blocks shared by the guest and test-host images: busybox with its applet
//! links, and dynamically linked programs from Debian packages with every library they
//! need (fetching more packages until the closure is complete).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::apt::{self, Package};
use crate::libs::{self, FileIndex};
use crate::rootfs::{canonical, Tree};
use crate::run::run_output;

/// Adds `/usr/bin/busybox` from the unpacked `busybox-static` and a link for each applet
/// whose path is still free (real programs added before win).
pub fn add_busybox(tree: &mut Tree, busybox: &Package) -> Result<()> {
    let bin = busybox.root.join("bin/busybox");
    if !bin.is_file() {
        bail!("{} has no bin/busybox", busybox.deb.display());
    }
    tree.file_host("usr/bin/busybox", &bin, 0o755);
    // busybox-static runs on any x86-64 Linux host, so ask it for its applets.
    let list = run_output(Command::new(&bin).arg("--list-full"))?;
    for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = canonical(applet);
        if path.ends_with("/busybox") || path.ends_with("/linuxrc") || tree.contains(&path) {
            continue;
        }
        tree.symlink(&path, "/usr/bin/busybox");
    }
    Ok(())
}

/// Only packages named like libraries are fetched to satisfy a missing soname.
fn is_library_package(name: &str) -> bool {
    name.starts_with("lib") || name.starts_with("zlib")
}

/// Adds `programs` (image paths such as `usr/bin/fio`, found in `packages`) with their
/// loader and shared libraries. Missing sonames are looked for in the `Depends` of the
/// package that needs them, fetched with apt; `packages` grows accordingly.
pub fn add_programs(tree: &mut Tree, packages: &mut Vec<Package>, programs: &[&str]) -> Result<()> {
    let roots: Vec<String> = programs.iter().map(|p| canonical(p)).collect();
    let mut tried: BTreeSet<String> = packages.iter().map(|p| p.info.name.clone()).collect();
    loop {
        let pkg_roots: Vec<&Path> = packages.iter().map(|p| p.root.as_path()).collect();
        let index = FileIndex::build(&pkg_roots)?;
        let closure = libs::closure(&index, &roots)?;
        if closure.unresolved.is_empty() {
            for root in &roots {
                let (_, host) = index
                    .resolve(root)
                    .with_context(|| format!("/{root} is in none of the packages"))?;
                tree.file_host(root, &host, 0o755);
            }
            for (dest, host) in &closure.files {
                tree.file_host(dest, host, 0o755);
            }
            println!(
                "xtask: {} program(s) need {} shared object(s) from {} package(s)",
                roots.len(),
                closure.files.len(),
                packages.len()
            );
            return Ok(());
        }
        let owners: BTreeSet<usize> = closure.unresolved.iter().map(|u| u.package).collect();
        let mut wanted: Vec<String> = Vec::new();
        for o in owners {
            for dep in packages[o].info.first_depends() {
                if is_library_package(dep) && tried.insert(dep.to_owned()) {
                    wanted.push(dep.to_owned());
                }
            }
        }
        if wanted.is_empty() {
            let list: Vec<String> = closure
                .unresolved
                .iter()
                .map(|u| format!("{} (needed by /{})", u.soname, u.needed_by))
                .collect();
            bail!(
                "cannot find these shared libraries in any dependency package: {}",
                list.join(", ")
            );
        }
        println!(
            "xtask: {} soname(s) unresolved ({}...); fetching {} more package(s)",
            closure.unresolved.len(),
            closure.unresolved[0].soname,
            wanted.len()
        );
        let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
        packages.extend(apt::fetch(&names)?);
    }
}

/// Finds a fetched package by name.
pub fn package<'a>(packages: &'a [Package], name: &str) -> Result<&'a Package> {
    packages
        .iter()
        .find(|p| p.info.name == name)
        .with_context(|| format!("package {name} was not fetched"))
}

/// Copies `from` to `to` (creating parent directories), via a temporary file.
pub fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = to.with_extension("partial");
    fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    fs::rename(&tmp, to).with_context(|| format!("renaming to {}", to.display()))?;
    Ok(())
}

/// A size in MiB for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
