//! The API's routes: Cloud Hypervisor's paths under `/api/v1`, each with
//! its one method. An unknown path is 404; a known path with another
//! method is 405 with `Allow`.

/// An endpoint of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET vmm.ping`
    VmmPing,
    /// `PUT vmm.shutdown`
    VmmShutdown,
    /// `PUT vm.create`
    VmCreate,
    /// `PUT vm.boot`
    VmBoot,
    /// `PUT vm.delete`
    VmDelete,
    /// `GET vm.info`
    VmInfo,
    /// `GET vm.counters`
    VmCounters,
    /// `PUT vm.shutdown`
    VmShutdown,
    /// `PUT vm.reboot`
    VmReboot,
    /// `PUT vm.power-button`
    VmPowerButton,
    /// `PUT vm.pause`
    VmPause,
    /// `PUT vm.resume`
    VmResume,
    /// `PUT vm.add-disk`
    VmAddDisk,
    /// `PUT vm.add-net`
    VmAddNet,
    /// `PUT vm.add-device`
    VmAddDevice,
    /// `PUT vm.remove-device`
    VmRemoveDevice,
}

/// The prefix of every path.
pub const PREFIX: &str = "/api/v1";

/// Every route: path below [`PREFIX`], method, endpoint.
pub const ROUTES: &[(&str, &str, Endpoint)] = &[
    ("/vmm.ping", "GET", Endpoint::VmmPing),
    ("/vmm.shutdown", "PUT", Endpoint::VmmShutdown),
    ("/vm.create", "PUT", Endpoint::VmCreate),
    ("/vm.boot", "PUT", Endpoint::VmBoot),
    ("/vm.delete", "PUT", Endpoint::VmDelete),
    ("/vm.info", "GET", Endpoint::VmInfo),
    ("/vm.counters", "GET", Endpoint::VmCounters),
    ("/vm.shutdown", "PUT", Endpoint::VmShutdown),
    ("/vm.reboot", "PUT", Endpoint::VmReboot),
    ("/vm.power-button", "PUT", Endpoint::VmPowerButton),
    ("/vm.pause", "PUT", Endpoint::VmPause),
    ("/vm.resume", "PUT", Endpoint::VmResume),
    ("/vm.add-disk", "PUT", Endpoint::VmAddDisk),
    ("/vm.add-net", "PUT", Endpoint::VmAddNet),
    ("/vm.add-device", "PUT", Endpoint::VmAddDevice),
    ("/vm.remove-device", "PUT", Endpoint::VmRemoveDevice),
];

/// Why a request has no endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No such path (404).
    NotFound,
    /// The path takes another method (405); `Allow` is this.
    WrongMethod(&'static str),
}

/// The endpoint `method path` reaches.
pub fn route(method: &str, path: &str) -> Result<Endpoint, RouteError> {
    let rest = path.strip_prefix(PREFIX).ok_or(RouteError::NotFound)?;
    let (_, allowed, endpoint) = ROUTES
        .iter()
        .find(|(p, _, _)| *p == rest)
        .ok_or(RouteError::NotFound)?;
    if method == *allowed {
        Ok(*endpoint)
    } else {
        Err(RouteError::WrongMethod(allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_known_path_and_method_reach_the_endpoint() {
        assert_eq!(route("GET", "/api/v1/vm.info"), Ok(Endpoint::VmInfo));
        assert_eq!(route("PUT", "/api/v1/vm.add-disk"), Ok(Endpoint::VmAddDisk));
    }

    #[test]
    fn test_unknown_path_is_not_found() {
        assert_eq!(
            route("GET", "/api/v1/vm.nothing"),
            Err(RouteError::NotFound)
        );
        assert_eq!(route("GET", "/vm.info"), Err(RouteError::NotFound));
        assert_eq!(route("GET", "/api/v1/vm.info/x"), Err(RouteError::NotFound));
    }

    #[test]
    fn test_wrong_method_names_the_right_one() {
        assert_eq!(
            route("PUT", "/api/v1/vm.info"),
            Err(RouteError::WrongMethod("GET"))
        );
        assert_eq!(
            route("GET", "/api/v1/vm.pause"),
            Err(RouteError::WrongMethod("PUT"))
        );
        assert_eq!(
            route("put", "/api/v1/vm.pause"),
            Err(RouteError::WrongMethod("PUT"))
        );
    }

    /// The spec (`docs/api/openapi.yaml`) and the router agree: every route
    /// served is documented with its method, and every documented
    /// operation is served.
    #[test]
    fn test_every_route_is_in_the_spec_and_every_spec_path_is_routed() {
        let spec = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/api/openapi.yaml"
        ))
        .unwrap();
        let documented = crate::spec::operations(&spec);
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(p, m, _)| (p.to_string(), m.to_lowercase()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
        assert!(spec.contains(&format!("url: http://localhost{PREFIX}")));
    }
}
