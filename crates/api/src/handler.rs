//! One request to one answer: route, read the body, ask the VMM through
//! its [`ManagePort`], and turn the result into a status and a body.
//!
//! | result                                  | status |
//! |-----------------------------------------|--------|
//! | done, nothing to say                    | 204    |
//! | info, counters, added device            | 200    |
//! | bad body, bad value, path not there     | 400    |
//! | unknown path; no VM; no such device     | 404    |
//! | wrong method; VM in the wrong state     | 405    |
//! | vm.create when a VM exists; id in use   | 409    |
//! | body over the limit                     | 413    |
//! | the machine could not be built or paused| 500    |
//! | not in this build (hotplug, counters)   | 501    |
//! | the machine was ending                  | 503    |
//!
//! The wrong-state 405 and the 404 for "no VM" are Cloud Hypervisor's.

use std::time::Duration;

use serde_json::{json, Value};
use vmm::manage::{Answer, Command, ManageError, ManagePort, NewDevice};

use crate::body::fields::BodyError;
use crate::body::vm_config::CreateDefaults;
use crate::body::{devices, info, vm_config};
use crate::http;
use crate::routes::{self, Endpoint, RouteError};

/// How long a request may wait for the VMM (a removal waits for the guest).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// An answer to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body (none for 204).
    pub body: Option<Value>,
    /// `Allow`, for a 405 of the wrong method.
    pub allow: Option<&'static str>,
}

impl Response {
    fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body: Some(body),
            allow: None,
        }
    }

    fn done() -> Self {
        Self {
            status: 204,
            body: None,
            allow: None,
        }
    }

    /// An error: `{"error": message}`.
    pub fn error(status: u16, message: impl std::fmt::Display) -> Self {
        Self {
            status,
            body: Some(json!({"error": message.to_string()})),
            allow: None,
        }
    }
}

impl From<BodyError> for Response {
    fn from(e: BodyError) -> Self {
        Self::error(400, e)
    }
}

/// The status a [`ManageError`] is answered with.
pub fn status_of(e: &ManageError) -> u16 {
    match e {
        ManageError::NotCreated | ManageError::NoSuchDevice(_) => 404,
        ManageError::WrongState { .. } => 405,
        ManageError::AlreadyCreated => 409,
        ManageError::Invalid(_) => 400,
        ManageError::Boot(_) | ManageError::PauseTimeout(_) => 500,
        ManageError::NotAvailable(_) => 501,
        ManageError::Ending => 503,
    }
}

/// Turns requests into commands to the VMM.
#[derive(Debug)]
pub struct Handler {
    port: ManagePort,
    defaults: CreateDefaults,
}

fn json_body(body: &[u8]) -> Result<Value, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Response::error(400, "this endpoint needs a JSON body"));
    }
    serde_json::from_slice(body).map_err(|e| Response::error(400, format!("malformed JSON: {e}")))
}

fn existing(path: &std::path::Path, field: &str) -> Result<(), Response> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| Response::error(400, format!("{field}: {}: {e}", path.display())))
}

impl Handler {
    /// A handler sending to `port`, filling what bodies leave out from
    /// `defaults`.
    pub fn new(port: ManagePort, defaults: CreateDefaults) -> Self {
        Self { port, defaults }
    }

    /// Answers `request`.
    pub fn handle(&self, request: http::Request) -> Response {
        match routes::route(&request.method, &request.path) {
            Ok(endpoint) => self
                .endpoint(endpoint, request)
                .unwrap_or_else(|refusal| refusal),
            Err(RouteError::NotFound) => Response::error(
                404,
                format!("no endpoint {} (see docs/api/openapi.yaml)", request.path),
            ),
            Err(RouteError::WrongMethod(allow)) => Response {
                allow: Some(allow),
                ..Response::error(405, format!("{} takes {allow}", request.path))
            },
        }
    }

    fn endpoint(&self, endpoint: Endpoint, request: http::Request) -> Result<Response, Response> {
        let command = match endpoint {
            Endpoint::VmmPing => {
                return Ok(Response::ok(json!({
                    "build_version": env!("CARGO_PKG_VERSION"),
                    "version": env!("CARGO_PKG_VERSION"),
                    "pid": std::process::id(),
                    "features": ["iovm"],
                })))
            }
            Endpoint::VmmShutdown => Command::VmmShutdown,
            Endpoint::VmCreate => {
                let body = json_body(&request.body)?;
                let cfg = vm_config::vm_config(&body, &self.defaults)?;
                vmm::vm::open_kernel(&cfg.boot.kernel)
                    .map_err(|e| Response::error(400, format!("payload.kernel: {e}")))?;
                if let Some(i) = &cfg.boot.initramfs {
                    existing(i, "payload.initramfs")?;
                }
                vmm::vm::validate(&cfg, vmm::vm::host_memory())
                    .map_err(|e| Response::error(400, e))?;
                Command::Create(Box::new(cfg))
            }
            Endpoint::VmBoot => Command::Boot,
            Endpoint::VmDelete => Command::Delete,
            Endpoint::VmInfo => Command::Info,
            Endpoint::VmCounters => Command::Counters,
            Endpoint::VmShutdown => Command::Shutdown,
            Endpoint::VmReboot => Command::Reboot,
            Endpoint::VmPowerButton => Command::PowerButton,
            Endpoint::VmPause => Command::Pause,
            Endpoint::VmResume => Command::Resume,
            Endpoint::VmAddDisk => {
                let device = devices::disk(&json_body(&request.body)?, "")?;
                if let Some((path, _)) = device.kind.disk() {
                    existing(path, "path")?;
                }
                Command::AddDevice(NewDevice {
                    device,
                    fds: Vec::new(),
                })
            }
            Endpoint::VmAddNet => {
                let (device, announced) = devices::net(&json_body(&request.body)?, "")?;
                if announced != request.fds.len() {
                    return Err(Response::error(
                        400,
                        format!(
                            "fds: the body announces {announced} file descriptors and the request carried {}",
                            request.fds.len()
                        ),
                    ));
                }
                Command::AddDevice(NewDevice {
                    device,
                    fds: request.fds,
                })
            }
            Endpoint::VmAddDevice => {
                let device = devices::vfio(&json_body(&request.body)?, "")?;
                if let vmm::config::DeviceKind::VfioPci(v) = &device.kind {
                    existing(&v.sysfs, "path")?;
                }
                Command::AddDevice(NewDevice {
                    device,
                    fds: Vec::new(),
                })
            }
            Endpoint::VmRemoveDevice => {
                Command::RemoveDevice(devices::remove(&json_body(&request.body)?)?)
            }
        };
        let name = command.name();
        let result = self.port.call(command, CALL_TIMEOUT);
        tracing::debug!("API {name}: {result:?}");
        Ok(match result {
            Ok(Answer::Done) => Response::done(),
            Ok(Answer::Info(i)) => Response::ok(info::info_json(&i)),
            Ok(Answer::Added(a)) => Response::ok(info::added_json(&a)),
            Ok(Answer::Counters(c)) => Response::ok(json!(c)),
            Err(e) => Response::error(status_of(&e), e),
        })
    }
}
