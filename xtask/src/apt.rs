//! Debian packages: look them up with `apt-cache`, download them with `apt-get download`
//! into a cache (`target/debs/`, reused when present) and unpack each with `dpkg-deb -x`
//! into its own folder (`target/debs/unpacked/<deb file stem>/`).
//!
//! When apt's package lists are stale (a version they name is gone from the archive, or a
//! package is missing from them), the lists are refreshed once (as root) and the download
//! retried; a version still not downloadable is replaced by the one apt can download.

mod lists;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::paths;
use crate::run::{run_checked, run_output};

pub use self::lists::refresh as refresh_lists;

/// One package as `apt-cache show` describes its candidate version.
#[derive(Debug, Clone)]
pub struct PackageInfo {
    /// Package name.
    pub name: String,
    /// Version, with epoch.
    pub version: String,
    /// Architecture (`amd64` or `all`).
    pub arch: String,
    /// `Pre-Depends` and `Depends`: each entry lists alternatives, version constraints dropped.
    pub depends: Vec<Vec<String>>,
}

impl PackageInfo {
    /// The file name `apt-get download` gives this package (`:` of the epoch escaped).
    pub fn deb_file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }

    /// The first alternative of each dependency.
    pub fn first_depends(&self) -> impl Iterator<Item = &str> {
        self.depends
            .iter()
            .filter_map(|alts| alts.first().map(String::as_str))
    }
}

/// A downloaded and unpacked package.
#[derive(Debug, Clone)]
pub struct Package {
    /// What apt says about it.
    pub info: PackageInfo,
    /// The `.deb` file in the cache.
    pub deb: PathBuf,
    /// Where it is unpacked.
    pub root: PathBuf,
}

/// Parses the output of `apt-cache show` (RFC 822-style stanzas).
pub fn parse_show(text: &str) -> Vec<PackageInfo> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: BTreeMap<&str, String> = BTreeMap::new();
        let mut last: Option<&str> = None;
        for line in stanza.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(key) = last {
                    if let Some(v) = fields.get_mut(key) {
                        v.push_str(line);
                    }
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.insert(k, v.trim().to_owned());
                last = Some(k);
            }
        }
        let (Some(name), Some(version), Some(arch)) = (
            fields.get("Package"),
            fields.get("Version"),
            fields.get("Architecture"),
        ) else {
            continue;
        };
        let mut depends = Vec::new();
        for key in ["Pre-Depends", "Depends"] {
            if let Some(v) = fields.get(key) {
                depends.extend(parse_depends(v));
            }
        }
        out.push(PackageInfo {
            name: name.clone(),
            version: version.clone(),
            arch: arch.clone(),
            depends,
        });
    }
    out
}

/// Parses a `Depends` value: `a (>= 1) | b, c:any` → `[[a, b], [c]]`.
pub fn parse_depends(value: &str) -> Vec<Vec<String>> {
    value
        .split(',')
        .map(|dep| {
            dep.split('|')
                .filter_map(|alt| {
                    let name = alt.split_whitespace().next()?;
                    let name = name.split(':').next().unwrap_or(name);
                    (!name.is_empty()).then(|| name.to_owned())
                })
                .collect::<Vec<_>>()
        })
        .filter(|alts| !alts.is_empty())
        .collect()
}

/// Looks up the candidate versions of `names`; if apt does not know some of them, refreshes
/// its package lists (see [`lists::refresh`]) and looks again.
pub fn show(names: &[&str]) -> Result<Vec<PackageInfo>> {
    let (mut infos, mut missing, mut stderr) = show_once(names)?;
    if !missing.is_empty()
        && lists::refresh(&format!(
            "apt knows no package named {}",
            missing.join(", ")
        ))
    {
        (infos, missing, stderr) = show_once(names)?;
    }
    if !missing.is_empty() {
        let names = missing.join(", ");
        if stderr.is_empty() {
            bail!("apt knows no installable package named {names}");
        }
        bail!("apt knows no installable package named {names}: {stderr}");
    }
    Ok(infos)
}

/// One `apt-cache show` call for `names`: the candidates found, the names apt does not know
/// and apt-cache's stderr.
fn show_once(names: &[&str]) -> Result<(Vec<PackageInfo>, Vec<String>, String)> {
    if names.is_empty() {
        return Ok((Vec::new(), Vec::new(), String::new()));
    }
    let mut cmd = Command::new("apt-cache");
    cmd.arg("show").arg("--no-all-versions").args(names);
    // apt-cache exits non-zero if any name is unknown; the caller reports which one.
    let output = cmd
        .output()
        .context("running apt-cache (is this a Debian system with apt?)")?;
    let infos = parse_show(&String::from_utf8_lossy(&output.stdout));
    let missing = names
        .iter()
        .filter(|n| !infos.iter().any(|i| i.name == **n))
        .map(|n| n.to_string())
        .collect();
    // Keep only the first stanza per name (the candidate).
    let mut seen = std::collections::BTreeSet::new();
    let infos = infos
        .into_iter()
        .filter(|i| seen.insert(i.name.clone()))
        .collect();
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    Ok((infos, missing, stderr))
}

/// What `apt-cache show NAME=VERSION` says about that version.
fn show_version(name: &str, version: &str) -> Result<PackageInfo> {
    let text = run_output(
        Command::new("apt-cache")
            .arg("show")
            .arg(format!("{name}={version}")),
    )?;
    parse_show(&text)
        .into_iter()
        .find(|i| i.name == name && i.version == version)
        .with_context(|| format!("apt-cache show {name}={version} did not describe it"))
}

/// Package names matching a regular expression (`apt-cache search --names-only`).
pub fn search_names(regex: &str) -> Result<Vec<String>> {
    let text = run_output(
        Command::new("apt-cache")
            .args(["search", "--names-only"])
            .arg(regex),
    )?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(" - ").next())
        .map(|s| s.trim().to_owned())
        .collect())
}

/// Downloads (if not cached) and unpacks (if not unpacked) the candidates of `names`; a
/// candidate no archive has is replaced by the version apt can download (see
/// [`download_missing`]).
pub fn fetch(names: &[&str]) -> Result<Vec<Package>> {
    let mut infos = show(names)?;
    let cache = paths::debs();
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    download_missing(&cache, &mut infos)?;
    infos
        .into_iter()
        .map(|info| {
            let deb = cache.join(info.deb_file_name());
            let root = unpack(&deb)?;
            Ok(Package { info, deb, root })
        })
        .collect()
}

/// The packages of `infos` whose `.deb` is not in `cache`.
fn not_cached<'a>(cache: &Path, infos: &'a [PackageInfo]) -> Vec<&'a PackageInfo> {
    infos
        .iter()
        .filter(|i| !cache.join(i.deb_file_name()).is_file())
        .collect()
}

/// Downloads the packages of `infos` that are not in `cache`, each at its version. If apt
/// fails because its package lists are stale, refreshes them once ([`lists::refresh`]) and
/// retries; versions still not downloadable are replaced in `infos` by the ones apt can
/// download ([`downloadable_instead`]) and those are downloaded (unless cached). Fails with
/// apt's error when no version could be replaced.
fn download_missing(cache: &Path, infos: &mut [PackageInfo]) -> Result<()> {
    let missing = not_cached(cache, infos);
    if missing.is_empty() {
        return Ok(());
    }
    println!(
        "xtask: downloading {} package(s) into {}",
        missing.len(),
        cache.display()
    );
    let Some(mut stderr) = download(cache, &missing)? else {
        return Ok(());
    };
    let Some(why) = lists::stale_error(&stderr) else {
        bail!("apt-get download failed: {stderr}");
    };
    let why = format!("apt-get download: {}", why.trim_start_matches("E: "));
    if lists::refresh(&why) {
        match download(cache, &not_cached(cache, infos))? {
            None => return Ok(()),
            Some(again) => stderr = again,
        }
    }
    let mut replaced = false;
    for info in infos.iter_mut() {
        if !cache.join(info.deb_file_name()).is_file() {
            let other = downloadable_instead(info)?;
            replaced |= other.version != info.version;
            *info = other;
        }
    }
    if !replaced {
        bail!("apt-get download failed: {stderr}");
    }
    match download(cache, &not_cached(cache, infos))? {
        None => Ok(()),
        Some(stderr) => bail!("apt-get download failed: {stderr}"),
    }
}

/// Runs `apt-get download` of `infos` at their versions in `cache`, with its stderr captured
/// (and echoed when it succeeds). Returns that stderr if apt-get failed; fails if it exited
/// 0 without producing every file.
fn download(cache: &Path, infos: &[&PackageInfo]) -> Result<Option<String>> {
    if infos.is_empty() {
        return Ok(None);
    }
    let mut cmd = Command::new("apt-get");
    // Running as root, apt would otherwise warn that its sandbox user cannot write here.
    cmd.current_dir(cache)
        .env("LC_ALL", "C")
        .args(["-o", "APT::Sandbox::User=root", "download"])
        .args(infos.iter().map(|i| format!("{}={}", i.name, i.version)))
        .stdout(Stdio::inherit());
    let output = cmd.output().context("could not start apt-get download")?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if !output.status.success() {
        return Ok(Some(stderr));
    }
    if !stderr.is_empty() {
        eprintln!("{stderr}");
    }
    for i in infos {
        if !cache.join(i.deb_file_name()).is_file() {
            bail!(
                "apt-get download did not produce {} in {}",
                i.deb_file_name(),
                cache.display()
            );
        }
    }
    Ok(None)
}

/// What to download for `info` after `apt-get download` of its version failed: the
/// candidate if an archive has it, else the newest version one has (see
/// [`lists::Policy::downloadable`]); `info` itself when that is its version. Prints one line
/// when the version differs.
fn downloadable_instead(info: &PackageInfo) -> Result<PackageInfo> {
    let text = run_output(
        Command::new("apt-cache")
            .env("LC_ALL", "C")
            .args(["policy", &info.name]),
    )?;
    let policy = lists::parse_policy(&text);
    let version = policy.downloadable().with_context(|| {
        format!(
            "apt can download no version of {} ({} is in none of the archives it knows)",
            info.name, info.version
        )
    })?;
    if version == info.version {
        return Ok(info.clone());
    }
    println!(
        "xtask: {} {} cannot be downloaded; using {version} instead (the version apt can download)",
        info.name, info.version
    );
    show_version(&info.name, version)
}

/// Unpacks `deb` into `target/debs/unpacked/<stem>/` unless already there.
fn unpack(deb: &Path) -> Result<PathBuf> {
    let stem = deb
        .file_stem()
        .context("deb without a file name")?
        .to_string_lossy()
        .into_owned();
    let unpacked = paths::debs().join("unpacked");
    let root = unpacked.join(&stem);
    if root.is_dir() {
        return Ok(root);
    }
    let tmp = unpacked.join(format!(".{stem}.partial"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    run_checked(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp))?;
    fs::rename(&tmp, &root).with_context(|| format!("renaming to {}", root.display()))?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_depends_alternatives_and_versions() {
        let deps = parse_depends("libc6 (>= 2.34), a | b (<< 2), python3:any, ");

        assert_eq!(
            deps,
            vec![
                vec!["libc6".to_owned()],
                vec!["a".to_owned(), "b".to_owned()],
                vec!["python3".to_owned()],
            ]
        );
    }

    #[test]
    fn test_parse_show_two_stanzas_with_epoch() {
        let text = "Package: zlib1g\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n\
                    Architecture: amd64\nPre-Depends: libc6 (>= 2.14)\nDescription: x\n more\n\n\
                    Package: fio\nVersion: 3.33-3\nArchitecture: amd64\n\
                    Depends: libaio1 (>= 0.3.93), zlib1g\n";

        let infos = parse_show(text);

        assert_eq!(infos.len(), 2);
        assert_eq!(
            infos[0].deb_file_name(),
            "zlib1g_1%3a1.2.13.dfsg-1_amd64.deb"
        );
        assert_eq!(infos[0].first_depends().collect::<Vec<_>>(), ["libc6"]);
        assert_eq!(
            infos[1].first_depends().collect::<Vec<_>>(),
            ["libaio1", "zlib1g"]
        );
    }
}
