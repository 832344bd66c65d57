//! Kernel modules for an image: pick modules by name from an unpacked Debian kernel
//! package, add their dependencies (from each module's `.modinfo` `depends=`), and write a
//! trimmed `modules.dep`/`modules.alias` so busybox `modprobe` works. Debian's package ships
//! no `modules.dep` (depmod runs at install time), so we make our own.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::apt::{self, Package};
use crate::elf;
use crate::rootfs::Tree;

/// Module names are compared with `-` and `_` the same, as the kernel does.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// An unpacked `linux-image-*-unsigned` package.
#[derive(Debug)]
pub struct Kernel {
    /// The package.
    pub package: Package,
    /// `uname -r`, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The kernel image (`boot/vmlinuz-<release>`).
    pub vmlinuz: PathBuf,
    /// Module name → path relative to `lib/modules/<release>/`.
    modules: BTreeMap<String, String>,
    /// Names of built-in modules.
    builtin: BTreeSet<String>,
}

/// Picks the highest ABI number among `linux-image-6.1.0-<N>-amd64-unsigned` names.
pub fn newest_abi(names: &[String]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| {
            let abi = n
                .strip_prefix("linux-image-6.1.0-")?
                .strip_suffix("-amd64-unsigned")?;
            Some((abi.parse::<u32>().ok()?, n))
        })
        .max()
        .map(|(_, n)| n.clone())
}

/// The newest `linux-image-6.1.0-*-amd64-unsigned` apt knows; if it knows none, the newest
/// after refreshing its package lists ([`apt::refresh_lists`]).
fn newest_package() -> Result<String> {
    let newest = || {
        apt::search_names("^linux-image-6\\.1\\.0-[0-9]+-amd64-unsigned$")
            .map(|names| newest_abi(&names))
    };
    if let Some(name) = newest()? {
        return Ok(name);
    }
    if apt::refresh_lists("apt knows no linux-image-6.1.0-*-amd64-unsigned package") {
        if let Some(name) = newest()? {
            return Ok(name);
        }
    }
    bail!("apt knows no linux-image-6.1.0-*-amd64-unsigned package")
}

/// Downloads and unpacks the kernel package `name`.
fn fetch_package(name: &str) -> Result<Package> {
    println!("xtask: kernel package {name}");
    apt::fetch(&[name])?
        .into_iter()
        .next()
        .context("kernel package missing after download")
}

/// Downloads and unpacks the newest kernel package; if it cannot be downloaded and apt's
/// refreshed package lists name a newer one, that one. Returns its name and the package.
fn fetch_newest() -> Result<(String, Package)> {
    let name = newest_package()?;
    let error = match fetch_package(&name) {
        Ok(package) => return Ok((name, package)),
        Err(e) => e,
    };
    let newer = newest_package()?;
    if newer == name {
        return Err(error);
    }
    println!(
        "xtask: {name} cannot be downloaded ({error:#}); using {newer}, the newest kernel apt \
         knows now"
    );
    let package = fetch_package(&newer)?;
    Ok((newer, package))
}

/// The package name for `--kernel-version 6.1.0-NN` (with or without `-amd64`).
pub fn package_for_version(version: &str) -> String {
    let v = version.strip_suffix("-amd64").unwrap_or(version);
    format!("linux-image-{v}-amd64-unsigned")
}

impl Kernel {
    /// Fetches and indexes the kernel package: `version` as `6.1.0-NN`, or the newest.
    pub fn fetch(version: Option<&str>) -> Result<Self> {
        let (name, package) = match version {
            Some(v) => {
                let name = package_for_version(v);
                let package = fetch_package(&name)?;
                (name, package)
            }
            None => fetch_newest()?,
        };
        let release = name
            .strip_prefix("linux-image-")
            .and_then(|s| s.strip_suffix("-unsigned"))
            .context("unexpected kernel package name")?
            .to_owned();
        let vmlinuz = package.root.join(format!("boot/vmlinuz-{release}"));
        if !vmlinuz.is_file() {
            bail!("{} has no boot/vmlinuz-{release}", package.deb.display());
        }
        let moddir = package.root.join("lib/modules").join(&release);
        let mut modules = BTreeMap::new();
        index_modules(&moddir, &moddir, &mut modules)?;
        let builtin_text = fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default();
        let builtin = builtin_text
            .lines()
            .filter_map(|l| module_name_of(l.trim()))
            .collect();
        Ok(Kernel {
            package,
            release,
            vmlinuz,
            modules,
            builtin,
        })
    }

    fn moddir(&self) -> PathBuf {
        self.package.root.join("lib/modules").join(&self.release)
    }

    /// Selects `names` and their dependencies. Built-in names are skipped (and reported);
    /// unknown names are an error.
    pub fn select(&self, names: &[&str]) -> Result<Selection> {
        let mut sel = Selection::default();
        let mut todo: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        while let Some(name) = todo.pop() {
            if sel.modules.contains_key(&name) || sel.builtin.contains(&name) {
                continue;
            }
            let Some(rel) = self.modules.get(&name) else {
                if self.builtin.contains(&name) {
                    sel.builtin.insert(name);
                    continue;
                }
                bail!(
                    "kernel {} has no module named {name} (neither modular nor built in)",
                    self.release
                );
            };
            let host = self.moddir().join(rel);
            let data = fs::read(&host).with_context(|| format!("reading {}", host.display()))?;
            let data = if rel.ends_with(".ko") {
                data
            } else {
                decompress(&host)?
            };
            let info =
                elf::modinfo(&data).with_context(|| format!("parsing {}", host.display()))?;
            let mut deps = Vec::new();
            let mut aliases = Vec::new();
            for (k, v) in info {
                match k.as_str() {
                    "depends" => deps.extend(v.split(',').filter(|d| !d.is_empty()).map(normalize)),
                    "alias" => aliases.push(v),
                    _ => {}
                }
            }
            todo.extend(deps.iter().cloned());
            sel.modules.insert(
                name,
                Module {
                    path: rel
                        .strip_suffix(".xz")
                        .or_else(|| rel.strip_suffix(".zst"))
                        .unwrap_or(rel)
                        .to_owned(),
                    data,
                    deps,
                    aliases,
                },
            );
        }
        Ok(sel)
    }

    /// Adds the selection to `tree` under `lib/modules/<release>/` with `modules.dep`,
    /// `modules.alias` and `modules.builtin`.
    pub fn install(&self, sel: &Selection, tree: &mut Tree) -> Result<()> {
        let base = format!("usr/lib/modules/{}", self.release);
        for m in sel.modules.values() {
            tree.file_bytes(&format!("{base}/{}", m.path), &m.data, 0o644);
        }
        tree.file_bytes(
            &format!("{base}/modules.dep"),
            sel.modules_dep()?.as_bytes(),
            0o644,
        );
        tree.file_bytes(
            &format!("{base}/modules.alias"),
            sel.modules_alias().as_bytes(),
            0o644,
        );
        let builtin = self.moddir().join("modules.builtin");
        if builtin.is_file() {
            tree.file_host(&format!("{base}/modules.builtin"), &builtin, 0o644);
        }
        Ok(())
    }
}

fn module_name_of(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file
        .strip_suffix(".ko")
        .or_else(|| file.strip_suffix(".ko.xz"))
        .or_else(|| file.strip_suffix(".ko.zst"))?;
    Some(normalize(stem))
}

fn index_modules(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<()> {
    for ent in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let ent = ent?;
        let path = ent.path();
        if ent.file_type()?.is_dir() {
            index_modules(root, &path, out)?;
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .context("module outside its directory")?
            .to_string_lossy()
            .into_owned();
        if let Some(name) = module_name_of(&rel) {
            out.insert(name, rel);
        }
    }
    Ok(())
}

fn decompress(path: &Path) -> Result<Vec<u8>> {
    let tool = if path.extension().is_some_and(|e| e == "zst") {
        "zstd"
    } else {
        "xz"
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("could not run {tool} to decompress {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{tool} -dc {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// One selected module.
#[derive(Debug)]
pub struct Module {
    /// Path relative to `lib/modules/<release>/`, always ending in `.ko`.
    pub path: String,
    /// The (decompressed) module.
    pub data: Vec<u8>,
    /// Direct dependencies (normalized names).
    pub deps: Vec<String>,
    /// `alias=` patterns.
    pub aliases: Vec<String>,
}

/// Modules chosen for an image.
#[derive(Debug, Default)]
pub struct Selection {
    /// Name → module.
    pub modules: BTreeMap<String, Module>,
    /// Requested names that are built into the kernel.
    pub builtin: BTreeSet<String>,
}

impl Selection {
    /// All dependencies of `name`, transitively, ordered so that each module comes before
    /// the ones it depends on (the order depmod writes and modprobe loads from the end).
    fn dep_order(&self, name: &str) -> Result<Vec<String>> {
        fn visit(
            sel: &Selection,
            name: &str,
            stack: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            order: &mut Vec<String>,
        ) -> Result<()> {
            if done.contains(name) {
                return Ok(());
            }
            if stack.iter().any(|s| s == name) {
                bail!("module dependency cycle: {} -> {name}", stack.join(" -> "));
            }
            stack.push(name.to_owned());
            if let Some(m) = sel.modules.get(name) {
                for d in &m.deps {
                    visit(sel, d, stack, done, order)?;
                }
            }
            stack.pop();
            done.insert(name.to_owned());
            order.push(name.to_owned());
            Ok(())
        }
        let mut order = Vec::new();
        visit(
            self,
            name,
            &mut Vec::new(),
            &mut BTreeSet::new(),
            &mut order,
        )?;
        // `order` is dependencies first, ending with `name` itself.
        order.pop();
        order.reverse();
        Ok(order
            .into_iter()
            .filter(|d| self.modules.contains_key(d))
            .collect())
    }

    /// The text of `modules.dep`.
    pub fn modules_dep(&self) -> Result<String> {
        let mut out = String::new();
        for (name, m) in &self.modules {
            out.push_str(&m.path);
            out.push(':');
            for d in self.dep_order(name)? {
                out.push(' ');
                out.push_str(&self.modules[&d].path);
            }
            out.push('\n');
        }
        Ok(out)
    }

    /// The text of `modules.alias`.
    pub fn modules_alias(&self) -> String {
        let mut out = String::new();
        for (name, m) in &self.modules {
            for a in &m.aliases {
                out.push_str(&format!("alias {a} {name}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(path: &str, deps: &[&str]) -> Module {
        Module {
            path: path.to_owned(),
            data: Vec::new(),
            deps: deps.iter().map(|d| d.to_string()).collect(),
            aliases: vec![format!("pci:v*{path}")],
        }
    }

    #[test]
    fn test_newest_abi_picks_highest_number() {
        let names = [
            "linux-image-6.1.0-9-amd64-unsigned".to_owned(),
            "linux-image-6.1.0-56-amd64-unsigned".to_owned(),
            "linux-image-6.1.0-56-cloud-amd64-unsigned".to_owned(),
            "linux-image-6.1.0-10-amd64-unsigned".to_owned(),
        ];

        let n = newest_abi(&names);

        assert_eq!(n.as_deref(), Some("linux-image-6.1.0-56-amd64-unsigned"));
    }

    #[test]
    fn test_package_for_version_accepts_both_forms() {
        assert_eq!(
            package_for_version("6.1.0-9"),
            "linux-image-6.1.0-9-amd64-unsigned"
        );
        assert_eq!(
            package_for_version("6.1.0-9-amd64"),
            "linux-image-6.1.0-9-amd64-unsigned"
        );
    }

    #[test]
    fn test_module_name_of_normalizes_dashes() {
        assert_eq!(
            module_name_of("kernel/drivers/nvme/host/nvme-core.ko").as_deref(),
            Some("nvme_core")
        );
        assert_eq!(
            module_name_of("kernel/x/virtio.ko.xz").as_deref(),
            Some("virtio")
        );
        assert_eq!(module_name_of("modules.dep"), None);
    }

    #[test]
    fn test_modules_dep_lists_transitive_deps_dependents_first() {
        let mut sel = Selection::default();
        sel.modules.insert("virtio".into(), module("v.ko", &[]));
        sel.modules
            .insert("virtio_ring".into(), module("vr.ko", &["virtio"]));
        sel.modules.insert(
            "virtio_blk".into(),
            module("vb.ko", &["virtio", "virtio_ring"]),
        );

        let dep = sel.modules_dep().unwrap();

        assert_eq!(dep, "v.ko:\nvb.ko: vr.ko v.ko\nvr.ko: v.ko\n");
    }

    #[test]
    fn test_modules_dep_cycle_is_error() {
        let mut sel = Selection::default();
        sel.modules.insert("a".into(), module("a.ko", &["b"]));
        sel.modules.insert("b".into(), module("b.ko", &["a"]));

        let dep = sel.modules_dep();

        assert!(dep.is_err());
    }

    #[test]
    fn test_modules_alias_lines() {
        let mut sel = Selection::default();
        sel.modules.insert("e1000".into(), module("e.ko", &[]));

        let alias = sel.modules_alias();

        assert_eq!(alias, "alias pci:v*e.ko e1000\n");
    }
}
