//! Traversal: the path is normalised (RFC 3986 §5.2.4 dot segments, percent-decoded
//! unreserved characters) before it is matched, what was matched is what is
//! forwarded, and encoded slashes or a climb above the root are refused.

use portico_tests::site::{Lab, HQ};

/// (path as sent with curl --path-as-is, expected status, path the target must get).
const CASES: [(&str, u16, Option<&str>); 14] = [
    ("/PBX0/APPS/../CONFIG", 403, None),
    ("/PBX0/APPS/%2e%2e/MY", 403, None),
    ("/PBX0/APPS/%2E%2E/MY", 403, None),
    ("/PBX0/APPS/.%2e/CONFIG", 403, None),
    ("/PBX0/APPS/..%2fCONFIG", 400, None),
    ("/PBX0/APPS/..%2FCONFIG", 400, None),
    ("/PBX0/APPS/..%5cCONFIG", 400, None),
    ("/../../etc/passwd", 400, None),
    ("/PBX0/APPS/../../../etc/passwd", 400, None),
    // Normalised, then allowed: the head match on /PBX0/ADMIN allows /PBX0/ADMIN2.
    ("/PBX0/APPS/../ADMIN2", 200, Some("/PBX0/ADMIN2")),
    (
        "/PBX0/APPS/./../ADMIN/x.htm",
        200,
        Some("/PBX0/ADMIN/x.htm"),
    ),
    ("/PBX0/APPS/%2e/x", 200, Some("/PBX0/APPS/x")),
    ("/PBX0/%41PPS/y", 200, Some("/PBX0/APPS/y")),
    ("/PBX0/CONFIG/../APPS/z", 200, Some("/PBX0/APPS/z")),
];

fn run_cases(lab: &Lab, https: bool) -> Vec<String> {
    let mut forwarded = Vec::new();
    for (path, status, target_path) in CASES {
        let url = if https {
            lab.https_url(HQ, path)
        } else {
            lab.http_url(HQ, path)
        };
        let run = lab.curl().path_as_is().fetch(&url);
        assert_eq!(run.status(), status, "{url}: {}", run.text());
        if let Some(target_path) = target_path {
            assert_eq!(run.text(), format!("master {target_path}"), "{url}");
            forwarded.push(target_path.to_string());
        }
    }
    forwarded
}

#[test]
fn traversal_variants_over_http() {
    let lab = Lab::new();
    let _portico = lab.start();
    let expected = run_cases(&lab, false);
    assert_eq!(
        lab.master.http.paths(),
        expected,
        "the target must get exactly the normalised allowed paths"
    );
    assert_eq!(lab.settled_request_count(), expected.len());
}

#[test]
fn traversal_variants_over_https() {
    let lab = Lab::new();
    let _portico = lab.start();
    let expected = run_cases(&lab, true);
    assert_eq!(lab.master.tls.paths(), expected);
    assert_eq!(lab.settled_request_count(), expected.len());
}
