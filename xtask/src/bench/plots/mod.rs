//! The benchmark's figures: one PNG per group of the report (boot and memory, exit
//! paths, block, network, VMM CPU, device path), drawn from results.json's ratios.
//! Every bar is a cost of iovm's ÷ the reference's (QEMU, or the host's fio for the
//! device path), throughput inverted, so that left of the line at 1.0 is iovm better
//! on every row; goals ([`super::goals`]) are red marks on their rows.
//!
//! [`chart`] is what a figure shows, [`vm_charts`] and [`device_chart`] make it from
//! results.json, [`layout`] and [`scale`] place it, [`draw`] paints it with [`font`].

mod chart;
mod device_chart;
mod draw;
mod font;
mod layout;
#[cfg(test)]
mod render_tests;
mod scale;
mod vm_charts;

use std::path::{Path, PathBuf};

use anyhow::Result;

pub use self::chart::Chart;
use self::layout::Layout;
use super::results::ResultsFile;

/// A group of the report that has a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Boot times and the VMM's memory.
    BootMemory,
    /// Exit paths timed in the guest.
    Exits,
    /// fio in the guest: latency, IOPS, MB/s, exits per I/O.
    Block,
    /// TCP from the guest: MB/s, exits per MiB.
    Network,
    /// The VMM's CPU outside the guest per I/O (block) and per MiB (network).
    VmmCpu,
    /// iovm's device paths without a VM against the host's fio.
    DevicePath,
}

impl Group {
    /// All, in report order.
    pub const ALL: [Group; 6] = [
        Group::BootMemory,
        Group::Exits,
        Group::Block,
        Group::Network,
        Group::VmmCpu,
        Group::DevicePath,
    ];

    /// The start of its file's name.
    pub fn id(self) -> &'static str {
        match self {
            Group::BootMemory => "boot-memory",
            Group::Exits => "exits",
            Group::Block => "block",
            Group::Network => "network",
            Group::VmmCpu => "vmm-cpu",
            Group::DevicePath => "device-path",
        }
    }

    /// Its file's name: `<group><suffix>.png` (suffix `-quick`, `-partial` or none).
    pub fn file_name(self, suffix: &str) -> String {
        format!("{}{suffix}.png", self.id())
    }

    /// What it shows, for titles.
    pub fn name(self) -> &'static str {
        match self {
            Group::BootMemory => "Boot and memory",
            Group::Exits => "Exit paths (ns per access, timed in the guest)",
            Group::Block => "Block I/O (fio in the guest)",
            Group::Network => "Network (TCP from the guest)",
            Group::VmmCpu => "VMM CPU outside the guest, per I/O or per MiB",
            Group::DevicePath => "Device path, no VM",
        }
    }
}

/// The figures written beside a report, by group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures(pub Vec<(Group, String)>);

impl Figures {
    /// The Markdown that shows `group`'s figure (a paragraph), or nothing if it has
    /// none.
    pub fn markdown(&self, group: Group) -> String {
        self.0
            .iter()
            .find(|(g, _)| *g == group)
            .map_or_else(String::new, |(g, file)| {
                format!("\n![{}: iovm's ratios]({file})\n", g.name())
            })
    }
}

/// The charts of the groups that have ratios in `results`, in report order.
pub fn charts(results: &ResultsFile) -> Vec<Chart> {
    let date = format!("Run of {}", results.date);
    let mut out = results
        .vms
        .as_ref()
        .map(|v| vm_charts::charts(v, &date))
        .unwrap_or_default();
    out.extend(
        results
            .device_path
            .as_ref()
            .and_then(|d| device_chart::chart(d, &date)),
    );
    out
}

/// Draws `chart` into `path`.
pub fn draw(path: &Path, chart: &Chart) -> Result<()> {
    font::load()?;
    let layout = Layout::new(chart, &font::width);
    draw::png(path, chart, &layout)
}

/// Draws every chart of `results` into `dir` as `<group><suffix>.png`, and removes
/// an earlier run's figure of a group that has none now; returns the figures written.
pub fn write_all(dir: &Path, suffix: &str, results: &ResultsFile) -> Result<Figures> {
    let charts = charts(results);
    let mut written = Vec::new();
    for group in Group::ALL {
        let name = group.file_name(suffix);
        let path: PathBuf = dir.join(&name);
        match charts.iter().find(|c| c.group == group) {
            Some(chart) => {
                draw(&path, chart)?;
                written.push((group, name));
            }
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    Ok(Figures(written))
}
