//! Routing by the seed's reference rules (DESIGN.md "HTTP paths"), over HTTP and HTTPS:
//! every rule kind, host matching, and the two "nothing matches" answers.

use portico_tests::client::{connect, read_to_close, status_of};
use portico_tests::site::{Lab, APPS, BRANCH_B, HQ};
use std::io::Write;

/// (request path, path the target must get) for every rule of a PBX host in the seed.
const PBX_REQUESTS: [(&str, &str); 7] = [
    (
        "/PBX0/APPCLIENT/appclient.htm",
        "/PBX0/APPCLIENT/appclient.htm",
    ),
    ("/PBX0/APPS/webdav/x.htm", "/PBX0/APPS/webdav/x.htm"),
    // Head match: "/PBX0/APPS" matches "/PBX0/APPSX" (the seed's "/some" matches "/somepath").
    ("/PBX0/APPSX", "/PBX0/APPSX"),
    ("/PBX0/session", "/PBX0/session"),
    ("/PBX0/user.soap", "/PBX0/user.soap"),
    ("/PBX0/ADMIN/index.htm", "/PBX0/ADMIN/index.htm"),
    // The query string travels with the path.
    (
        "/OAUTH2/oauth2_login?client_id=phone&x=1",
        "/OAUTH2/oauth2_login?client_id=phone&x=1",
    ),
];

/// Paths no rule of a PBX host allows.
const PBX_FORBIDDEN: [&str; 6] = [
    "/",
    "/PBX0",
    "/PBX0/APP",
    "/PBX0/CONFIG",
    "/PBX0/APPCLIENT/other.htm",
    "/OAUTH2/",
];

fn check_pbx_host(lab: &Lab, host: &str, box_name: &str, https: bool) {
    let urls: Vec<String> = PBX_REQUESTS
        .iter()
        .map(|(path, _)| {
            if https {
                lab.https_url(host, path)
            } else {
                lab.http_url(host, path)
            }
        })
        .collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let run = lab.curl().get(&urls);
    assert_eq!(run.exit, 0, "curl failed: {}", run.stderr);
    assert_eq!(run.replies.len(), PBX_REQUESTS.len());
    for ((path, forwarded), reply) in PBX_REQUESTS.iter().zip(&run.replies) {
        assert_eq!(reply.status, 200, "{host}{path} over https={https}");
        assert_eq!(
            reply.text(),
            format!("{box_name} {forwarded}"),
            "{host}{path}"
        );
    }
    for path in PBX_FORBIDDEN {
        let url = if https {
            lab.https_url(host, path)
        } else {
            lab.http_url(host, path)
        };
        let run = lab.curl().fetch(&url);
        assert_eq!(
            run.status(),
            403,
            "{url} must be refused: no rule allows it"
        );
    }
}

#[test]
fn master_pbx_rules_over_http_and_https() {
    let lab = Lab::new();
    let _portico = lab.start();
    check_pbx_host(&lab, HQ, "master", false);
    check_pbx_host(&lab, HQ, "master", true);
    let expected: Vec<String> = PBX_REQUESTS.iter().map(|(_, f)| f.to_string()).collect();
    assert_eq!(
        lab.master.http.paths(),
        expected,
        "plain HTTP goes to the tcp port"
    );
    assert_eq!(
        lab.master.tls.paths(),
        expected,
        "HTTPS goes to the tls port"
    );
    assert_eq!(lab.slave.request_count() + lab.apps.request_count(), 0);
}

#[test]
fn slave_pbx_rules_over_http_and_https() {
    let lab = Lab::new();
    let _portico = lab.start();
    check_pbx_host(&lab, BRANCH_B, "slave", false);
    check_pbx_host(&lab, BRANCH_B, "slave", true);
    let expected: Vec<String> = PBX_REQUESTS.iter().map(|(_, f)| f.to_string()).collect();
    assert_eq!(lab.slave.http.paths(), expected);
    assert_eq!(lab.slave.tls.paths(), expected);
    assert_eq!(lab.master.request_count() + lab.apps.request_count(), 0);
}

#[test]
fn app_platform_empty_path_matches_every_path() {
    let lab = Lab::new();
    let _portico = lab.start();
    let paths = ["/", "/contacts/index.htm", "/PBX0/CONFIG", "/a/b/c?d=e"];
    for path in paths {
        for url in [lab.http_url(APPS, path), lab.https_url(APPS, path)] {
            let run = lab.curl().fetch(&url);
            assert_eq!(run.status(), 200, "{url}");
            assert_eq!(run.text(), format!("apps {path}"), "{url}");
        }
    }
    assert_eq!(lab.apps.http.paths(), paths);
    assert_eq!(lab.apps.tls.paths(), paths);
}

#[test]
fn forwarded_headers_say_who_and_which_scheme() {
    let lab = Lab::new();
    let _portico = lab.start();
    assert_eq!(
        lab.curl().fetch(&lab.http_url(HQ, "/PBX0/APPS/h")).status(),
        200
    );
    assert_eq!(
        lab.curl()
            .fetch(&lab.https_url(HQ, "/PBX0/APPS/h"))
            .status(),
        200
    );
    let plain = &lab.master.http.requests()[0];
    let tls = &lab.master.tls.requests()[0];
    assert_eq!(plain.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(plain.header("x-forwarded-proto"), Some("http"));
    assert_eq!(tls.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(tls.header("x-forwarded-proto"), Some("https"));
    assert_eq!(plain.method, "GET");
    assert_eq!(plain.version, "HTTP/1.1");
}

#[test]
fn host_matches_case_insensitively_with_or_without_port() {
    let lab = Lab::new();
    let _portico = lab.start();
    let url = format!("http://127.0.0.1:{}/PBX0/APPS/case", lab.http_port());
    let with_port = format!("Host: hq.dvl-ckl2.net:{}", lab.http_port());
    for host in [
        "Host: hq.dvl-ckl2.net",
        "Host: HQ.DVL-CKL2.NET",
        "Host: Hq.Dvl-Ckl2.Net:90",
        with_port.as_str(),
    ] {
        let run = lab.curl().header(host).fetch(&url);
        assert_eq!(run.status(), 200, "{host}");
        assert_eq!(run.text(), "master /PBX0/APPS/case", "{host}");
    }
    // Over HTTPS, a Host in capitals with the SNI in lower case.
    let run = lab
        .curl()
        .header("Host: HQ.DVL-CKL2.NET")
        .fetch(&lab.https_url(HQ, "/PBX0/APPS/case"));
    assert_eq!(run.status(), 200);
    assert_eq!(lab.master.http.requests().len(), 4);
    assert_eq!(lab.master.tls.requests().len(), 1);
}

#[test]
fn unknown_host_is_421_and_path_without_rule_is_403_and_neither_reaches_a_target() {
    let lab = Lab::new();
    let _portico = lab.start();
    let url = format!("http://127.0.0.1:{}/PBX0/APPS/x", lab.http_port());
    for host in [
        "Host: unknown.dvl-ckl2.net",
        "Host: dvl-ckl2.net",
        "Host: hq.dvl-ckl2.net.evil.example",
        "Host: xhq.dvl-ckl2.net",
        "Host: 127.0.0.1",
    ] {
        assert_eq!(lab.curl().header(host).fetch(&url).status(), 421, "{host}");
    }
    let run = lab
        .curl()
        .fetch(&lab.https_url("unknown.dvl-ckl2.net", "/PBX0/APPS/x"));
    assert_eq!(run.status(), 421, "unknown host over HTTPS");
    for url in [
        lab.http_url(HQ, "/PBX0/CONFIG"),
        lab.https_url(HQ, "/PBX0/CONFIG"),
        lab.http_url(BRANCH_B, "/admin.xml"),
    ] {
        assert_eq!(lab.curl().fetch(&url).status(), 403, "{url}");
    }
    assert_eq!(
        lab.settled_request_count(),
        0,
        "a rejected request reached a target"
    );
}

#[test]
fn request_without_host_is_400() {
    let lab = Lab::new();
    let _portico = lab.start();
    let mut stream = connect(lab.http_port());
    stream
        .write_all(b"GET /PBX0/APPS/x HTTP/1.1\r\nUser-Agent: t\r\n\r\n")
        .unwrap();
    let answer = read_to_close(&mut stream);
    assert_eq!(
        status_of(&answer),
        Some(400),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(lab.settled_request_count(), 0);
}

#[test]
fn trailing_slash_default_and_longest_match() {
    let mut lab = Lab::new();
    let (m, s, a) = (lab.site.master, lab.site.slave, lab.site.apps);
    lab.site.append(&format!(
        r#"
[[host]]
name = "rules.test"
http = [
  {{ path = "", target = "127.0.0.1", tcp = {}, tls = {}, default = true }},
  {{ path = "/dir/", target = "127.0.0.1", tcp = {}, tls = {} }},
  {{ path = "/dir/deep", target = "127.0.0.1", tcp = {}, tls = {} }},
]
"#,
        a.tcp, a.tls, s.tcp, s.tls, m.tcp, m.tls
    ));
    let _portico = lab.start();
    let base = format!("http://127.0.0.1:{}", lab.http_port());
    let cases = [
        // `default`: the empty path matches only the empty request path.
        ("/", 200, "apps /"),
        ("/other", 403, ""),
        // Trailing slash: the rest may not contain another "/".
        ("/dir/file.htm", 200, "slave /dir/file.htm"),
        ("/dir/sub/file.htm", 403, ""),
        // Longest match wins, and it has no trailing slash.
        ("/dir/deep/x/y", 200, "master /dir/deep/x/y"),
        ("/dir/deeper", 200, "master /dir/deeper"),
    ];
    for (path, status, body) in cases {
        let run = lab
            .curl()
            .header("Host: rules.test")
            .fetch(&format!("{base}{path}"));
        assert_eq!(run.status(), status, "{path}");
        if status == 200 {
            assert_eq!(run.text(), body, "{path}");
        }
    }
    assert_eq!(lab.apps.http.paths(), ["/"]);
    assert_eq!(lab.slave.http.paths(), ["/dir/file.htm"]);
    assert_eq!(lab.master.http.paths(), ["/dir/deep/x/y", "/dir/deeper"]);
}

#[test]
fn two_shards_route_alike() {
    let lab = Lab::new();
    let _portico = lab.start_with(&["--shards", "2"]);
    for i in 0..10 {
        let path = format!("/PBX0/APPS/{i}");
        let run = lab.curl().fetch(&lab.http_url(HQ, &path));
        assert_eq!(run.status(), 200);
        assert_eq!(run.text(), format!("master {path}"));
        let run = lab.curl().fetch(&lab.https_url(BRANCH_B, &path));
        assert_eq!(run.status(), 200);
        assert_eq!(run.text(), format!("slave {path}"));
    }
    assert_eq!(lab.master.http.requests().len(), 10);
    assert_eq!(lab.slave.tls.requests().len(), 10);
}
