//! Named figures, the form every counter group is read in.

use std::collections::BTreeMap;

/// Named counts, ordered by name: what one device (or the VMM) reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures(BTreeMap<&'static str, u64>);

impl Figures {
    /// Sets figure `name` to `value`.
    pub fn put(&mut self, name: &'static str, value: u64) {
        self.0.insert(name, value);
    }

    /// Figure `name`, if reported.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.get(name).copied()
    }

    /// Every figure, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }

    /// Adds `other`'s figures to these, name by name (the sum of a
    /// device's functions, or of several vCPUs).
    pub fn merge(&mut self, other: &Figures) {
        for (name, value) in other.iter() {
            *self.0.entry(name).or_insert(0) += value;
        }
    }

    /// The figures as a map (what the API serializes).
    pub fn into_map(self) -> BTreeMap<&'static str, u64> {
        self.0
    }
}
