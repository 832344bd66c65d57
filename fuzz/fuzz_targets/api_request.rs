//! Fuzzes what an API client sends (`api::http::read_request`, then the
//! router and the body readers through `api::Handler`): the bytes arrive
//! on a socket as a client would write them. Input: one byte picks raw
//! (the rest is the whole request) or framed (the next byte picks a route,
//! the rest is its body, behind a well-formed head), so that the body
//! readers are reached as often as the HTTP reader. The VMM behind the handler
//! has gone, so every request that gets that far is answered "ending";
//! what is checked is that no input panics, hangs or is answered with a
//! status outside the API's.

#![no_main]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use api::{CreateDefaults, Handler, Limits, ParsedDevice};
use libfuzzer_sys::fuzz_target;
use vmm::config::{DeviceConfig, DeviceKind, HostConfig, LifecycleConfig, OnReboot};
use vmm::manage::ManagePort;

fn parse(text: &str) -> Result<ParsedDevice, String> {
    match text.split(',').next() {
        Some("root-port") => Ok(ParsedDevice::Pci(DeviceConfig::new(DeviceKind::RootPort(
            Default::default(),
        )))),
        _ => Err("not a device".into()),
    }
}

fuzz_target!(|data: &[u8]| {
    let (tx, rx) = std::sync::mpsc::channel();
    drop(rx);
    let handler = Handler::new(
        ManagePort::new(tx),
        CreateDefaults {
            lifecycle: LifecycleConfig {
                on_reboot: OnReboot::Exit,
                shutdown_timeout: Duration::from_secs(1),
            },
            host: HostConfig {
                kvm_device: "/dev/null".into(),
            },
            parse_device: parse,
        },
    );
    let Ok((mut client, server)) = UnixStream::pair() else {
        return;
    };
    let limits = Limits {
        head: 4096,
        body: 16 << 10,
        timeout: Duration::from_millis(50),
    };
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let rest = &rest[..rest.len().min(32 << 10)];
    let request = match (mode & 1, rest.split_first()) {
        (1, Some((&pick, body))) => {
            let (path, method, _) =
                api::routes::ROUTES[usize::from(pick) % api::routes::ROUTES.len()];
            let mut r = format!(
                "{method} {}{path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
                api::routes::PREFIX,
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        }
        _ => rest.to_vec(),
    };
    let _ = client.write_all(&request);
    let _ = client.shutdown(std::net::Shutdown::Write);
    let status = match api::http::read_request(&server, limits) {
        Ok(request) => handler.handle(request).status,
        Err(api::http::ReadError::Refuse(status, _)) => status,
        Err(api::http::ReadError::Gone) => return,
    };
    assert!(
        [200, 204, 400, 404, 405, 408, 409, 411, 413, 431, 500, 503].contains(&status),
        "status {status}"
    );
});
