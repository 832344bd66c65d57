//! `iovm remote`: a command-line client of the API socket. Each command is
//! one request; the answer is printed as a readable table, or as the JSON
//! the API sent (`--json`).

use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;

use api::client::{self, Reply};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// Text after `iovm remote --help`.
pub const AFTER_HELP: &str = "\
Examples:
  iovm remote --api-socket /tmp/iovm.api info
  iovm remote --api-socket /tmp/iovm.api add-disk /var/lib/disk2.img --id data
  iovm remote --api-socket /tmp/iovm.api add-net --open-tap tap7
  iovm remote --api-socket /tmp/iovm.api add-net --tap-fd 3   (fd 3: an open TAP queue)
  iovm remote --api-socket /tmp/iovm.api remove-device data
  iovm remote --api-socket /tmp/iovm.api pause

Exit status: 0 when the API answered with success, 1 otherwise (the
message says why), 2 when the command line is wrong.";

/// `iovm remote` options.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// The API socket of a running iovm (its --api-socket).
    #[arg(long, value_name = "PATH")]
    pub api_socket: PathBuf,

    /// Print the API's JSON answer as it came.
    #[arg(long)]
    pub json: bool,

    /// What to ask.
    #[command(subcommand)]
    pub command: RemoteCommand,
}

/// The commands of `iovm remote`.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Is the VMM there? (vmm.ping)
    Ping,
    /// The VM's configuration, state and devices with their PCI addresses (vm.info).
    Info,
    /// Every device's I/O counters (vm.counters).
    Counters,
    /// Create the VM from a JSON file in Cloud Hypervisor's VmConfig shape (vm.create).
    Create {
        /// The file.
        file: PathBuf,
    },
    /// Boot the created VM (vm.boot).
    Boot,
    /// Hot-add a virtio-blk disk (vm.add-disk).
    AddDisk {
        /// A raw disk image or block device.
        path: PathBuf,
        /// Its id, for remove-device (default: iovm names it).
        #[arg(long)]
        id: Option<String>,
        /// The guest may not write.
        #[arg(long)]
        readonly: bool,
    },
    /// Hot-add a virtio-net card (vm.add-net): on a TAP iovm opens by name
    /// (--tap), or on TAP queues passed to it with SCM_RIGHTS, so that iovm
    /// needs no CAP_NET_ADMIN: ones this client opens (--open-tap, with
    /// virtio-net headers; the TAP is created if it does not exist and
    /// then lives as long as iovm holds it), or ones it inherited
    /// (--tap-fd).
    AddNet {
        /// The TAP interface's name, for iovm to open.
        #[arg(long, conflicts_with_all = ["tap_fd", "open_tap"])]
        tap: Option<String>,
        /// A TAP interface this client opens (or creates) and passes to
        /// iovm as file descriptors, as libvirt does.
        #[arg(long, value_name = "NAME", conflicts_with = "tap_fd")]
        open_tap: Option<String>,
        /// Queue pairs to open with --open-tap (more than one needs a
        /// multi-queue TAP).
        #[arg(long, value_name = "N", default_value_t = 1, requires = "open_tap")]
        queue_pairs: usize,
        /// An open TAP queue's file descriptor number (repeat per queue pair).
        #[arg(long = "tap-fd", value_name = "FD")]
        tap_fd: Vec<RawFd>,
        /// The MAC address.
        #[arg(long)]
        mac: Option<String>,
        /// Its id, for remove-device.
        #[arg(long)]
        id: Option<String>,
    },
    /// Remove a device by id (vm.remove-device).
    RemoveDevice {
        /// The id vm.info shows.
        id: String,
    },
    /// Stop the vCPUs (vm.pause).
    Pause,
    /// Let them run again (vm.resume).
    Resume,
    /// Press the guest's ACPI power button (vm.power-button).
    PowerButton,
    /// End the VM at once, as pulling its plug (vm.shutdown).
    Shutdown,
    /// End the VM and boot it again (vm.reboot).
    Reboot,
    /// Forget the VM (vm.delete).
    Delete,
    /// End the iovm process (vmm.shutdown).
    ShutdownVmm,
}

/// Runs the command; the exit status.
pub fn run(args: &RemoteArgs) -> i32 {
    match request(args) {
        Ok(reply) if (200..300).contains(&reply.status) => {
            print_reply(args, &reply);
            0
        }
        Ok(reply) => {
            let message = reply
                .body
                .as_ref()
                .and_then(|b| b.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("no message");
            eprintln!(
                "iovm remote: error: {} {}: {message}",
                reply.status,
                api::http::reason(reply.status)
            );
            1
        }
        Err(e) => {
            eprintln!("iovm remote: error: {e:#}");
            1
        }
    }
}

fn request(args: &RemoteArgs) -> anyhow::Result<Reply> {
    use RemoteCommand as C;
    let mut tap_kept: Option<backend::net::Tap> = None;
    let (method, endpoint, body, fds): (&str, &str, Option<Value>, Vec<RawFd>) = match &args.command
    {
        C::Ping => ("GET", "vmm.ping", None, vec![]),
        C::Info => ("GET", "vm.info", None, vec![]),
        C::Counters => ("GET", "vm.counters", None, vec![]),
        C::Create { file } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let body: Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", file.display()))?;
            ("PUT", "vm.create", Some(body), vec![])
        }
        C::Boot => ("PUT", "vm.boot", None, vec![]),
        C::AddDisk { path, id, readonly } => (
            "PUT",
            "vm.add-disk",
            Some(json!({"path": path, "id": id, "readonly": readonly})),
            vec![],
        ),
        C::AddNet {
            tap,
            open_tap,
            queue_pairs,
            tap_fd,
            mac,
            id,
        } => {
            let mut fds = tap_fd.clone();
            if let Some(name) = open_tap {
                let opened = backend::net::Tap::open(&backend::net::TapConfig {
                    name: name.clone(),
                    queues: *queue_pairs,
                })
                .map_err(|e| anyhow::anyhow!("--open-tap {name}: {}", error_chain(&e)))?;
                fds = opened.queues().iter().map(|q| q.as_raw_fd()).collect();
                // Open until the request is sent; iovm has its own copies.
                tap_kept = Some(opened);
            }
            let mut body = json!({"tap": tap, "mac": mac, "id": id});
            if !fds.is_empty() {
                body["fds"] = json!(fds);
                body["num_queues"] = json!(fds.len() * 2);
            }
            ("PUT", "vm.add-net", Some(body), fds)
        }
        C::RemoveDevice { id } => ("PUT", "vm.remove-device", Some(json!({"id": id})), vec![]),
        C::Pause => ("PUT", "vm.pause", None, vec![]),
        C::Resume => ("PUT", "vm.resume", None, vec![]),
        C::PowerButton => ("PUT", "vm.power-button", None, vec![]),
        C::Shutdown => ("PUT", "vm.shutdown", None, vec![]),
        C::Reboot => ("PUT", "vm.reboot", None, vec![]),
        C::Delete => ("PUT", "vm.delete", None, vec![]),
        C::ShutdownVmm => ("PUT", "vmm.shutdown", None, vec![]),
    };
    let path = format!("{}/{endpoint}", api::routes::PREFIX);
    let reply = client::call(&args.api_socket, method, &path, body.as_ref(), &fds)?;
    drop(tap_kept);
    Ok(reply)
}

/// An error and its causes, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_reply(args: &RemoteArgs, reply: &Reply) {
    let Some(body) = &reply.body else {
        if args.json {
            println!("{{}}");
        } else {
            println!("ok");
        }
        return;
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
        return;
    }
    match &args.command {
        RemoteCommand::Info => print_info(body),
        RemoteCommand::Counters => {
            println!("{:<20} {:<28} {:>16}", "DEVICE", "COUNTER", "VALUE");
            for (device, counters) in body.as_object().into_iter().flatten() {
                for (name, value) in counters.as_object().into_iter().flatten() {
                    println!("{device:<20} {name:<28} {:>16}", text(value));
                }
            }
        }
        _ => {
            for (k, v) in body.as_object().into_iter().flatten() {
                println!("{k:<14} {}", text(v));
            }
        }
    }
}

fn print_info(body: &Value) {
    let config = &body["config"];
    println!("state          {}", text(&body["state"]));
    if let Some(o) = body["outcome"].as_object() {
        println!(
            "ended          {} (exit status {})",
            text(&o["reason"]),
            text(&o["exit_code"])
        );
    }
    println!("vcpus          {}", text(&config["cpus"]["boot_vcpus"]));
    println!(
        "memory         {} MiB",
        config["memory"]["size"].as_u64().unwrap_or(0) >> 20
    );
    println!("kernel         {}", text(&config["payload"]["kernel"]));
    println!("cmdline        {}", text(&config["payload"]["cmdline"]));
    println!();
    println!("{:<20} {:<16} {:<14} BEHIND", "ID", "KIND", "PCI");
    for (id, node) in body["device_tree"].as_object().into_iter().flatten() {
        println!(
            "{id:<20} {:<16} {:<14} {}",
            text(&node["kind"]),
            text(&node["pci_bdf"]),
            text(&node["parent"])
        );
    }
}
