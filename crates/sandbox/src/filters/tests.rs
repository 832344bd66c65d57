use super::table::{allowance, starts, Ioctls};
use super::*;
use crate::ThreadKind;

#[test]
fn test_every_kind_compiles_in_both_modes() {
    for kind in ThreadKind::ALL {
        for mode in [Mode::On, Mode::Log] {
            let program = compile(kind, mode).unwrap();
            assert!(program.len() > 4, "{kind}: {} instructions", program.len());
        }
    }
}

#[test]
fn test_a_thread_may_do_all_its_children_may() {
    // A child runs under its parent's filter and its own: the kernel takes
    // the strictest answer, so a child's call its parent forbids kills.
    for parent in ThreadKind::ALL {
        let allowed = syscalls(parent);
        for child in starts(parent) {
            for nr in syscalls(*child) {
                assert!(
                    allowed.contains(&nr),
                    "{parent} starts {child}, which may make call {nr} that {parent} may not"
                );
            }
            match (allowance(parent).ioctls, allowance(*child).ioctls) {
                (Ioctls::Any, _) | (_, Ioctls::Never) => {}
                (Ioctls::Types(p), Ioctls::Types(c)) => {
                    for t in c {
                        assert!(
                            p.contains(t),
                            "{parent} forbids ioctl type {t:#x} to {child}"
                        );
                    }
                }
                (p, c) => panic!("{parent} ({p:?}) cannot start {child} ({c:?})"),
            }
        }
    }
}

#[test]
fn test_threads_that_start_threads_may_enter_a_filter() {
    for parent in ThreadKind::ALL {
        if starts(parent).is_empty() {
            continue;
        }
        let allowed = syscalls(parent);
        for nr in [libc::SYS_clone3, libc::SYS_prctl, libc::SYS_seccomp] {
            assert!(
                allowed.contains(&nr),
                "{parent} starts threads without call {nr}"
            );
        }
    }
}

#[test]
fn test_dangerous_calls_are_nobodys() {
    let never = [
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_fork,
        libc::SYS_vfork,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_setuid,
        libc::SYS_setresuid,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_kexec_load,
        libc::SYS_bpf,
        libc::SYS_personality,
    ];
    for kind in ThreadKind::ALL {
        let allowed = syscalls(kind);
        for nr in never {
            assert!(!allowed.contains(&nr), "{kind} may make call {nr}");
        }
    }
}

#[test]
fn test_only_the_main_thread_opens_files_or_makes_sockets() {
    for kind in ThreadKind::ALL {
        let allowed = syscalls(kind);
        let opens = allowed.contains(&libc::SYS_openat) || allowed.contains(&libc::SYS_open);
        assert_eq!(opens, kind == ThreadKind::Main, "{kind} opens files");
        let sockets = allowed.contains(&libc::SYS_socket);
        assert_eq!(sockets, kind == ThreadKind::Main, "{kind} makes sockets");
    }
}

#[test]
fn test_device_workers_cannot_make_devices() {
    for kind in [
        ThreadKind::NvmeWorker,
        ThreadKind::AhciWorker,
        ThreadKind::VirtioBlk,
        ThreadKind::VirtioNet,
        ThreadKind::E1000e,
        ThreadKind::VirtioRng,
        ThreadKind::VirtioConsole,
    ] {
        let allowed = syscalls(kind);
        for nr in [
            libc::SYS_clone3,
            libc::SYS_eventfd2,
            libc::SYS_io_uring_setup,
            libc::SYS_mmap,
        ] {
            let expected = nr == libc::SYS_mmap;
            assert_eq!(allowed.contains(&nr), expected, "{kind}: call {nr}");
        }
        assert_ne!(allowance(kind).ioctls, Ioctls::Any, "{kind}");
    }
}
