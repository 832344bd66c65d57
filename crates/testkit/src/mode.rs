//! Where guests run: on this machine's `/dev/kvm` (hardware virtualization) or inside the
//! nested test host (QEMU TCG with emulated SVM; see `shared/design/TEST-HOST.md`).

use std::fmt;

use vmm::host::KvmFlavor;

use crate::error::Error;

/// How the harness runs iovm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Spawn iovm on this machine; `/dev/kvm` is hardware KVM.
    Direct,
    /// Boot the nested test host under QEMU TCG and run iovm inside it.
    TestHost,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Direct => "direct",
            Mode::TestHost => "testhost",
        })
    }
}

/// The environment variable that forces a mode: `direct`, `testhost` or `auto` (default).
pub const MODE_ENV: &str = "IOVM_TEST_MODE";

/// Decides the mode from `/proc/cpuinfo`, whether `/sys/module/kvm_pvm` exists, and the
/// value of [`MODE_ENV`] (if set). `/dev/kvm` is used directly only where iovm itself
/// would accept it ([`vmm::host::classify`]): hardware virtualization and no PVM module.
pub fn detect(cpuinfo: &str, pvm_present: bool, env: Option<&str>) -> Result<Mode, Error> {
    match env.map(str::trim) {
        Some("direct") => Ok(Mode::Direct),
        Some("testhost") => Ok(Mode::TestHost),
        None | Some("") | Some("auto") => Ok(
            if vmm::host::classify(cpuinfo, pvm_present) == KvmFlavor::Hardware {
                Mode::Direct
            } else {
                Mode::TestHost
            },
        ),
        Some(other) => Err(Error::BadMode(other.to_owned())),
    }
}

impl Mode {
    /// Detects the mode of this machine (see [`detect`]).
    pub fn from_host() -> Result<Mode, Error> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
        let env = std::env::var(MODE_ENV).ok();
        detect(&cpuinfo, pvm, env.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVM: &str = "processor\t: 0\nflags\t\t: fpu vme svm npt lahf_lm\n";
    const VMX: &str = "processor\t: 0\nflags\t\t: fpu vmx ept\n";
    const NONE: &str = "processor\t: 0\nflags\t\t: fpu vme svm_lock sse\nmodel name\t: svm cpu\n";

    #[test]
    fn test_detect_svm_without_pvm_is_direct() {
        assert_eq!(detect(SVM, false, None).unwrap(), Mode::Direct);
    }

    #[test]
    fn test_detect_vmx_auto_is_direct() {
        assert_eq!(detect(VMX, false, Some("auto")).unwrap(), Mode::Direct);
    }

    #[test]
    fn test_detect_pvm_present_is_testhost() {
        assert_eq!(detect(SVM, true, None).unwrap(), Mode::TestHost);
    }

    #[test]
    fn test_detect_no_flag_is_testhost() {
        assert_eq!(detect(NONE, false, None).unwrap(), Mode::TestHost);
    }

    #[test]
    fn test_detect_env_forces_mode() {
        assert_eq!(detect(NONE, true, Some("direct")).unwrap(), Mode::Direct);
        assert_eq!(
            detect(SVM, false, Some("testhost")).unwrap(),
            Mode::TestHost
        );
    }

    #[test]
    fn test_detect_bad_env_is_error() {
        let r = detect(SVM, false, Some("fast"));

        assert!(matches!(r, Err(Error::BadMode(v)) if v == "fast"));
    }
}
