//! How the nested test host is run, where the environment changes it: the
//! candidates the stability study compares (`cargo xtask soak`,
//! docs/test-host.md) without a rebuild.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `IOVM_TESTHOST_SMP` | the test host's vCPUs | `2` |
//! | `IOVM_TESTHOST_TCG` | TCG threading, `multi` or `single` | `multi` |
//! | `IOVM_TESTHOST_CPU` | QEMU's `-cpu` model and flags | `max` |
//! | `IOVM_TESTHOST_APPEND` | extra words for the test host's kernel command line (e.g. `transparent_hugepage=never`) | none |

/// The test host's vCPUs.
pub const SMP_ENV: &str = "IOVM_TESTHOST_SMP";
/// TCG threading.
pub const TCG_ENV: &str = "IOVM_TESTHOST_TCG";
/// QEMU's CPU model.
pub const CPU_ENV: &str = "IOVM_TESTHOST_CPU";
/// Extra kernel command line words.
pub const APPEND_ENV: &str = "IOVM_TESTHOST_APPEND";

/// The knobs in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Knobs {
    /// `-smp`.
    pub smp: u32,
    /// `-accel tcg,thread=…`: `true` for multi.
    pub multi_thread: bool,
    /// `-cpu`.
    pub cpu: String,
    /// Appended to the kernel command line.
    pub append: String,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            smp: 2,
            multi_thread: true,
            cpu: "max".into(),
            append: String::new(),
        }
    }
}

impl Knobs {
    /// The knobs `get` (an environment lookup) sets; a value that does not
    /// parse is an error naming the variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut k = Self::default();
        if let Some(v) = get(SMP_ENV) {
            k.smp = v
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=8).contains(n))
                .ok_or_else(|| format!("{SMP_ENV}={v}: give 1 to 8 vCPUs"))?;
        }
        if let Some(v) = get(TCG_ENV) {
            k.multi_thread = match v.trim() {
                "multi" => true,
                "single" => false,
                _ => return Err(format!("{TCG_ENV}={v}: give multi or single")),
            };
        }
        if let Some(v) = get(CPU_ENV) {
            if v.trim().is_empty() || v.contains(char::is_whitespace) {
                return Err(format!("{CPU_ENV}={v:?}: give one -cpu argument"));
            }
            k.cpu = v.trim().to_owned();
        }
        if let Some(v) = get(APPEND_ENV) {
            k.append = v.trim().to_owned();
        }
        Ok(k)
    }

    /// The knobs of this process's environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// A one-line description, for logs and reports.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "-smp {} -cpu {} tcg thread={}",
            self.smp,
            self.cpu,
            if self.multi_thread { "multi" } else { "single" }
        );
        if !self.append.is_empty() {
            s.push_str(&format!(" cmdline+={}", self.append));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Knobs, String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Knobs::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn test_defaults_without_variables() {
        assert_eq!(with(&[]).unwrap(), Knobs::default());
        assert_eq!(
            Knobs::default().describe(),
            "-smp 2 -cpu max tcg thread=multi"
        );
    }

    #[test]
    fn test_every_knob_is_read() {
        let k = with(&[
            (SMP_ENV, "1"),
            (TCG_ENV, "single"),
            (CPU_ENV, "EPYC,+svm"),
            (APPEND_ENV, " transparent_hugepage=never "),
        ])
        .unwrap();
        assert_eq!(
            k.describe(),
            "-smp 1 -cpu EPYC,+svm tcg thread=single cmdline+=transparent_hugepage=never"
        );
    }

    #[test]
    fn test_bad_values_name_their_variable() {
        for (var, bad) in [
            (SMP_ENV, "0"),
            (SMP_ENV, "two"),
            (TCG_ENV, "many"),
            (CPU_ENV, "a b"),
        ] {
            let e = with(&[(var, bad)]).unwrap_err();
            assert!(e.starts_with(var), "{e}");
        }
    }
}
