//! Reading the operations out of iovm's OpenAPI document
//! (`docs/api/openapi.yaml`), for the test that keeps it and the router
//! in step. The document is indented as OpenAPI documents conventionally
//! are: paths two spaces in under `paths:`, methods four.

/// Every `(path, method)` the document's `paths` section lists, sorted.
pub fn operations(spec: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in spec.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
            in_paths = line.trim_end() == "paths:";
            path = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            path = Some(format!("/{p}"));
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')) {
            let method = m.trim();
            let is_method = ["get", "put", "post", "delete", "patch", "head"].contains(&method);
            if let (Some(p), true, false) = (&path, is_method, m.starts_with(' ')) {
                out.push((p.clone(), method.to_string()));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_operations_are_read_from_the_paths_section_only() {
        let spec = "openapi: 3.0.3\npaths:\n  /a.b:\n    get:\n      summary: x\n  /c:\n    put:\n      responses:\n        get:\ncomponents:\n  /d:\n    get:\n";
        assert_eq!(
            operations(spec),
            vec![("/a.b".into(), "get".into()), ("/c".into(), "put".into())]
        );
    }
}
