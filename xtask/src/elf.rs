//! Just enough ELF64 (little-endian) parsing to copy binaries into an image: the dynamic
//! section (`DT_NEEDED`, `DT_RUNPATH`/`DT_RPATH`), the program interpreter, and the
//! `.modinfo` section of kernel modules. See the System V ABI, "Object Files" and
//! "Dynamic Linking".

use anyhow::{bail, Context, Result};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// What the dynamic loader needs to start a binary or load a library.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dynamic {
    /// `PT_INTERP`: the loader's path, for executables.
    pub interp: Option<String>,
    /// `DT_NEEDED` sonames, in order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` (or `DT_RPATH`) directories, unexpanded (`$ORIGIN` kept).
    pub runpath: Vec<String>,
}

/// Returns true if `data` starts with the ELF magic.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

fn u16_at(d: &[u8], off: usize) -> Result<u16> {
    let b = d.get(off..off + 2).context("ELF truncated")?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(d: &[u8], off: usize) -> Result<u32> {
    let b = d.get(off..off + 4).context("ELF truncated")?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(d: &[u8], off: usize) -> Result<u64> {
    let b = d.get(off..off + 8).context("ELF truncated")?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

fn usize_of(v: u64) -> Result<usize> {
    usize::try_from(v).context("ELF offset out of range")
}

fn c_str(d: &[u8], off: usize) -> Result<String> {
    let tail = d.get(off..).context("ELF string offset out of range")?;
    let end = tail
        .iter()
        .position(|&b| b == 0)
        .context("unterminated ELF string")?;
    Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
}

fn check_header(d: &[u8]) -> Result<()> {
    if !is_elf(d) {
        bail!("not an ELF file");
    }
    if d.get(4) != Some(&2) || d.get(5) != Some(&1) {
        bail!("only 64-bit little-endian ELF is supported");
    }
    Ok(())
}

struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn program_headers(d: &[u8]) -> Result<Vec<Phdr>> {
    let phoff = usize_of(u64_at(d, 0x20)?)?;
    let phentsize = usize::from(u16_at(d, 0x36)?);
    let phnum = usize::from(u16_at(d, 0x38)?);
    if phnum > 0 && phentsize < 56 {
        bail!("ELF program header entries too small");
    }
    (0..phnum)
        .map(|i| {
            let at = phoff + i * phentsize;
            Ok(Phdr {
                kind: u32_at(d, at)?,
                offset: u64_at(d, at + 8)?,
                vaddr: u64_at(d, at + 16)?,
                filesz: u64_at(d, at + 32)?,
            })
        })
        .collect()
}

fn vaddr_to_offset(phdrs: &[Phdr], vaddr: u64) -> Result<usize> {
    phdrs
        .iter()
        .filter(|p| p.kind == PT_LOAD)
        .find(|p| vaddr >= p.vaddr && vaddr - p.vaddr < p.filesz)
        .map(|p| usize_of(vaddr - p.vaddr + p.offset))
        .unwrap_or_else(|| bail!("ELF address {vaddr:#x} is not in any loaded segment"))
}

/// Parses the interpreter and dynamic section. A static binary yields an empty [`Dynamic`].
pub fn dynamic(d: &[u8]) -> Result<Dynamic> {
    check_header(d)?;
    let phdrs = program_headers(d)?;
    let mut out = Dynamic::default();
    if let Some(p) = phdrs.iter().find(|p| p.kind == PT_INTERP) {
        out.interp = Some(c_str(d, usize_of(p.offset)?)?);
    }
    let Some(dynseg) = phdrs.iter().find(|p| p.kind == PT_DYNAMIC) else {
        return Ok(out);
    };
    let start = usize_of(dynseg.offset)?;
    let count = usize_of(dynseg.filesz)? / 16;
    let mut entries = Vec::new();
    for i in 0..count {
        let tag = u64_at(d, start + i * 16)?;
        if tag == DT_NULL {
            break;
        }
        entries.push((tag, u64_at(d, start + i * 16 + 8)?));
    }
    let strtab_vaddr = entries
        .iter()
        .find(|e| e.0 == DT_STRTAB)
        .map(|e| e.1)
        .context("ELF dynamic section has no DT_STRTAB")?;
    let strsz = entries
        .iter()
        .find(|e| e.0 == DT_STRSZ)
        .map(|e| e.1)
        .unwrap_or(u64::MAX);
    let strtab = vaddr_to_offset(&phdrs, strtab_vaddr)?;
    let string = |off: u64| -> Result<String> {
        if off >= strsz {
            bail!("ELF dynamic string offset {off} beyond DT_STRSZ");
        }
        c_str(d, strtab + usize_of(off)?)
    };
    let mut rpath = Vec::new();
    for &(tag, val) in &entries {
        match tag {
            DT_NEEDED => out.needed.push(string(val)?),
            DT_RUNPATH => out.runpath.extend(split_path(&string(val)?)),
            DT_RPATH => rpath.extend(split_path(&string(val)?)),
            _ => {}
        }
    }
    // DT_RPATH is ignored by the loader when DT_RUNPATH is present.
    if out.runpath.is_empty() {
        out.runpath = rpath;
    }
    Ok(out)
}

fn split_path(s: &str) -> Vec<String> {
    s.split(':')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Returns the `key=value` pairs of a kernel module's `.modinfo` section, in order.
pub fn modinfo(d: &[u8]) -> Result<Vec<(String, String)>> {
    check_header(d)?;
    let shoff = usize_of(u64_at(d, 0x28)?)?;
    let shentsize = usize::from(u16_at(d, 0x3a)?);
    let shnum = usize::from(u16_at(d, 0x3c)?);
    let shstrndx = usize::from(u16_at(d, 0x3e)?);
    if shnum > 0 && shentsize < 64 {
        bail!("ELF section header entries too small");
    }
    let section = |i: usize| -> Result<(u32, usize, usize)> {
        let at = shoff + i * shentsize;
        Ok((
            u32_at(d, at)?,
            usize_of(u64_at(d, at + 24)?)?,
            usize_of(u64_at(d, at + 32)?)?,
        ))
    };
    if shstrndx >= shnum {
        bail!("ELF has no section name table");
    }
    let (_, names_off, _) = section(shstrndx)?;
    for i in 0..shnum {
        let (name, off, size) = section(i)?;
        if c_str(d, names_off + name as usize)? != ".modinfo" {
            continue;
        }
        let bytes = d
            .get(off..off.saturating_add(size))
            .context(".modinfo section out of range")?;
        return Ok(bytes
            .split(|&b| b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect());
    }
    bail!("no .modinfo section (not a kernel module?)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a minimal ELF64 executable image: header, 3 program headers (LOAD covering
    /// the file at vaddr 0x400000, INTERP, DYNAMIC), an interpreter string, a string
    /// table and a dynamic section.
    fn tiny_elf(interp: Option<&str>, needed: &[&str], runpath: Option<&str>) -> Vec<u8> {
        let base = 0x400000u64;
        let phoff = 64usize;
        let phnum = 3usize;
        let interp_off = phoff + phnum * 56;
        let interp_bytes = interp.map(|s| format!("{s}\0")).unwrap_or_default();
        let strtab_off = interp_off + interp_bytes.len();
        let mut strtab = vec![0u8];
        let mut dyns: Vec<(u64, u64)> = Vec::new();
        for n in needed {
            dyns.push((DT_NEEDED, strtab.len() as u64));
            strtab.extend_from_slice(n.as_bytes());
            strtab.push(0);
        }
        if let Some(r) = runpath {
            dyns.push((DT_RUNPATH, strtab.len() as u64));
            strtab.extend_from_slice(r.as_bytes());
            strtab.push(0);
        }
        dyns.push((DT_STRTAB, base + strtab_off as u64));
        dyns.push((DT_STRSZ, strtab.len() as u64));
        dyns.push((DT_NULL, 0));
        let dyn_off = strtab_off + strtab.len();
        let total = dyn_off + dyns.len() * 16;

        let mut d = vec![0u8; total];
        d[0..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x20..0x28].copy_from_slice(&(phoff as u64).to_le_bytes());
        d[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());
        let mut ph = |i: usize, kind: u32, off: usize, len: usize| {
            let at = phoff + i * 56;
            d[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            d[at + 8..at + 16].copy_from_slice(&(off as u64).to_le_bytes());
            d[at + 16..at + 24].copy_from_slice(&(base + off as u64).to_le_bytes());
            d[at + 32..at + 40].copy_from_slice(&(len as u64).to_le_bytes());
        };
        ph(0, PT_LOAD, 0, total);
        if interp.is_some() {
            ph(1, PT_INTERP, interp_off, interp_bytes.len());
        }
        ph(2, PT_DYNAMIC, dyn_off, dyns.len() * 16);
        d[interp_off..strtab_off].copy_from_slice(interp_bytes.as_bytes());
        d[strtab_off..dyn_off].copy_from_slice(&strtab);
        for (i, (t, v)) in dyns.iter().enumerate() {
            let at = dyn_off + i * 16;
            d[at..at + 8].copy_from_slice(&t.to_le_bytes());
            d[at + 8..at + 16].copy_from_slice(&v.to_le_bytes());
        }
        d
    }

    #[test]
    fn test_dynamic_executable_lists_interp_needed_runpath() {
        let elf = tiny_elf(
            Some("/lib64/ld-linux-x86-64.so.2"),
            &["libz.so.1", "libc.so.6"],
            Some("$ORIGIN/../lib:/opt/x"),
        );

        let dynamic = dynamic(&elf).unwrap();

        assert_eq!(
            dynamic.interp.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(dynamic.needed, ["libz.so.1", "libc.so.6"]);
        assert_eq!(dynamic.runpath, ["$ORIGIN/../lib", "/opt/x"]);
    }

    #[test]
    fn test_dynamic_library_without_interp() {
        let elf = tiny_elf(None, &["libc.so.6"], None);

        let dynamic = dynamic(&elf).unwrap();

        assert_eq!(dynamic.interp, None);
        assert_eq!(dynamic.needed, ["libc.so.6"]);
        assert!(dynamic.runpath.is_empty());
    }

    #[test]
    fn test_dynamic_truncated_file_is_error_not_panic() {
        let elf = tiny_elf(Some("/lib64/ld"), &["libc.so.6"], None);

        let result = dynamic(&elf[..100]);

        assert!(result.is_err());
    }

    #[test]
    fn test_dynamic_not_elf_is_error() {
        let result = dynamic(b"#!/bin/sh\n");

        assert!(result.is_err());
    }

    #[test]
    fn test_modinfo_reads_depends_and_alias() {
        // ELF header + section data + 3 section headers (null, .modinfo, .shstrtab).
        let info = b"alias=pci:v00008086d*\0depends=nvme-core,foo\0name=nvme\0";
        let names = b"\0.modinfo\0.shstrtab\0";
        let info_off = 64usize;
        let names_off = info_off + info.len();
        let shoff = (names_off + names.len() + 7) & !7;
        let mut d = vec![0u8; shoff + 3 * 64];
        d[0..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        d[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        d[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        d[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        d[info_off..names_off].copy_from_slice(info);
        d[names_off..names_off + names.len()].copy_from_slice(names);
        let mut sh = |i: usize, name: u32, off: usize, len: usize| {
            let at = shoff + i * 64;
            d[at..at + 4].copy_from_slice(&name.to_le_bytes());
            d[at + 24..at + 32].copy_from_slice(&(off as u64).to_le_bytes());
            d[at + 32..at + 40].copy_from_slice(&(len as u64).to_le_bytes());
        };
        sh(1, 1, info_off, info.len());
        sh(2, 10, names_off, names.len());

        let kv = modinfo(&d).unwrap();

        assert_eq!(
            kv,
            [
                ("alias".to_owned(), "pci:v00008086d*".to_owned()),
                ("depends".to_owned(), "nvme-core,foo".to_owned()),
                ("name".to_owned(), "nvme".to_owned()),
            ]
        );
    }
}
