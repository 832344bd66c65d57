//! iovm's management API: Cloud Hypervisor's REST dialect (`/api/v1/vm.*`,
//! `/api/v1/vmm.*`, its JSON bodies and status codes) over HTTP/1.1 on a
//! Unix socket, so that orchestrators that drive Cloud Hypervisor (libvirt's
//! `ch` driver, Kata Containers' `clh`) can drive iovm.
//!
//! ```text
//!  client ─ HTTP ─▶ server (socket 0600, thread per client, limits)
//!     ─▶ http (parse) ─▶ routes (404/405) ─▶ body (CH shapes ⇄ iovm config,
//!     400 naming the field) ─▶ handler ─▶ vmm::manage::ManagePort ─▶ the
//!     VMM's run loop ─▶ answer ─▶ status + JSON
//! ```
//!
//! The document of the API is `docs/api/openapi.yaml`; a test keeps its
//! paths and the router's the same.

#![deny(missing_docs)]

pub mod body;
pub mod client;
pub mod handler;
pub mod http;
pub mod routes;
pub mod server;
pub mod spec;

pub use body::vm_config::{CreateDefaults, ParsedDevice};
pub use handler::Handler;
pub use http::Limits;
pub use server::{ApiServer, ServerError};
