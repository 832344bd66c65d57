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
//! | vm.create when a VM exists; id in use;  |        |
//! | no free hot-plug port                   | 409    |
//! | body over the limit                     | 413    |
//! | the machine could not be built or paused|        |
//! | a device not let go in time             | 500    |
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
        ManageError::AlreadyCreated | ManageError::Conflict(_) => 409,
        ManageError::Invalid(_) => 400,
        ManageError::Boot(_) | ManageError::PauseTimeout(_) | ManageError::Failed(_) => 500,
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
                // The files it names are checked by the VMM's main thread
                // (vmm::vm::check_create): this thread opens no file.
                let cfg = vm_config::vm_config(&body, &self.defaults)?;
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
                Command::AddDevice(NewDevice {
                    device,
                    fds: Vec::new(),
                })
            }
            Endpoint::VmAddNet => {
                let (device, announced) = devices::net(&json_body(&request.body)?, "")?;
                // A body without `fds` takes every descriptor that came (as
                // libvirt sends them); one with `fds` must match them.
                if announced != 0 && announced != request.fds.len() {
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use vmm::config::{HostConfig, LifecycleConfig, OnReboot};
    use vmm::manage::{AddedDevice, MachineState, Request};
    use vmm::vm::VmEvent;

    use super::*;
    use crate::body::vm_config::ParsedDevice;

    /// What the fake VMM answers.
    type Answerer = fn(&Command) -> Result<Answer, ManageError>;

    fn no_devices(_: &str) -> Result<ParsedDevice, String> {
        Err("no devices here".into())
    }

    /// A handler whose VMM answers every command with `answer`, and the
    /// commands it got.
    fn handler(answer: Answerer) -> (Handler, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel::<VmEvent>();
        let (seen_tx, seen) = mpsc::channel();
        std::thread::spawn(move || {
            for event in rx {
                if let VmEvent::Manage(Request { command, reply }) = event {
                    let _ = seen_tx.send(command.name().to_string());
                    reply.answer(answer(&command));
                }
            }
        });
        let defaults = CreateDefaults {
            lifecycle: LifecycleConfig {
                on_reboot: OnReboot::Exit,
                shutdown_timeout: Duration::from_secs(1),
            },
            host: HostConfig {
                kvm_device: "/dev/kvm".into(),
            },
            parse_device: no_devices,
        };
        (Handler::new(ManagePort::new(tx), defaults), seen)
    }

    fn request(method: &str, path: &str, body: &str) -> http::Request {
        http::Request {
            method: method.into(),
            path: path.into(),
            body: body.as_bytes().to_vec(),
            fds: Vec::new(),
        }
    }

    #[test]
    fn test_done_is_204_and_reaches_the_vmm_as_its_command() {
        let (h, seen) = handler(|_| Ok(Answer::Done));
        let r = h.handle(request("PUT", "/api/v1/vm.pause", ""));
        assert_eq!((r.status, r.body), (204, None));
        assert_eq!(seen.recv().unwrap(), "vm.pause");
    }

    #[test]
    fn test_vmm_errors_get_cloud_hypervisors_statuses() {
        let cases: [(Answerer, u16); 8] = [
            (|_| Err(ManageError::NotCreated), 404),
            (
                |_| {
                    Err(ManageError::WrongState {
                        action: "vm.resume",
                        needs: "Paused",
                        state: MachineState::Running,
                    })
                },
                405,
            ),
            (|_| Err(ManageError::AlreadyCreated), 409),
            (|_| Err(ManageError::NoSuchDevice("x".into())), 404),
            (|_| Err(ManageError::Conflict("no free port".into())), 409),
            (
                |_| {
                    Err(ManageError::Invalid(
                        "a vfio-pci cannot be hot-added".into(),
                    ))
                },
                400,
            ),
            (|_| Err(ManageError::Failed("not let go".into())), 500),
            (|_| Err(ManageError::Ending), 503),
        ];
        for (answer, status) in cases {
            let (h, _) = handler(answer);
            let r = h.handle(request("PUT", "/api/v1/vm.resume", ""));
            assert_eq!(r.status, status, "{r:?}");
            assert!(r.body.unwrap()["error"].is_string());
        }
    }

    #[test]
    fn test_added_device_is_200_with_id_and_bdf() {
        let (h, seen) = handler(|c| match c {
            Command::AddDevice(n) => Ok(Answer::Added(AddedDevice {
                id: n.device.id.clone().unwrap_or_default(),
                bdf: pci::address::Bdf {
                    bus: 2,
                    device: 0,
                    function: 0,
                },
            })),
            _ => Ok(Answer::Done),
        });
        let r = h.handle(request(
            "PUT",
            "/api/v1/vm.add-disk",
            r#"{"path": "/dev/null", "id": "extra"}"#,
        ));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.body.unwrap(),
            json!({"id": "extra", "bdf": "0000:02:00.0"})
        );
        assert_eq!(seen.recv().unwrap(), "vm.add-device");
    }

    #[test]
    fn test_bad_bodies_never_reach_the_vmm() {
        let (h, seen) = handler(|_| Ok(Answer::Done));
        for (path, body) in [
            ("/api/v1/vm.add-disk", ""),
            ("/api/v1/vm.add-disk", "{"),
            ("/api/v1/vm.add-disk", r#"{"path": 7}"#),
            ("/api/v1/vm.add-disk", r#"{"path": "/no/such/file"}"#),
            ("/api/v1/vm.add-net", r#"{"fds": [-1]}"#),
            ("/api/v1/vm.add-net", r#"{"tap": "t0", "queue_size": 512}"#),
            ("/api/v1/vm.remove-device", r#"{"id": ""}"#),
            (
                "/api/v1/vm.create",
                r#"{"payload": {"kernel": "/no/such/kernel"}}"#,
            ),
            (
                "/api/v1/vm.create",
                r#"{"payload": {"kernel": "/k"}, "iovm_devices": [{"kind": "x"}]}"#,
            ),
        ] {
            let r = h.handle(request("PUT", path, body));
            assert_eq!(r.status, 400, "{path} {body}: {r:?}");
        }
        assert!(seen.try_recv().is_err());
    }

    #[test]
    fn test_ping_is_answered_without_the_vmm() {
        let (h, seen) = handler(|_| Err(ManageError::Ending));
        let r = h.handle(request("GET", "/api/v1/vmm.ping", ""));
        assert_eq!(r.status, 200);
        assert_eq!(r.body.unwrap()["pid"], std::process::id());
        assert!(seen.try_recv().is_err());
    }

    #[test]
    fn test_unknown_path_is_404_and_wrong_method_405_with_allow() {
        let (h, _) = handler(|_| Ok(Answer::Done));
        assert_eq!(h.handle(request("GET", "/api/v2/vm.info", "")).status, 404);
        let r = h.handle(request("POST", "/api/v1/vm.info", ""));
        assert_eq!((r.status, r.allow), (405, Some("GET")));
    }
}
