//! Starting portico with the services routed on their first message (`sip`, `sips`,
//! `ldap`, `ldaps`) on top of a [`Lab`]: [`Site`](crate::site::Site) writes only the
//! HTTP listeners, so the extra `[proxy.listen]` lines are added to its output here.
//! The rules themselves (`[[host]]` blocks with `sip = {…}` / `ldap = {…}`) are added
//! by the tests with `Site::append` / `Site::host_line`.

use std::path::PathBuf;

use crate::binary::{Portico, Ready};
use crate::site::Lab;

/// A routed listener: service name in `[proxy.listen]` and port on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub struct Listen {
    pub service: &'static str,
    pub port: u16,
}

impl Listen {
    pub fn new(service: &'static str, port: u16) -> Listen {
        Listen { service, port }
    }

    fn ready(self) -> Ready {
        if matches!(self.service, "sips" | "ldaps" | "https" | "h323_tls") {
            Ready::Tls(self.port)
        } else {
            Ready::Tcp(self.port)
        }
    }
}

/// The lab's config with `listen` added to `[proxy.listen]`.
pub fn config_toml(lab: &Lab, listen: &[Listen]) -> String {
    let extra: String = listen
        .iter()
        .map(|l| format!("{} = {}\n", l.service, l.port))
        .collect();
    let toml = lab.site.to_toml();
    assert!(
        toml.contains("[proxy.listen]\n"),
        "the site config has no [proxy.listen] table"
    );
    toml.replacen("[proxy.listen]\n", &format!("[proxy.listen]\n{extra}"), 1)
}

/// Writes the config (as `portico.toml` in the lab's scratch dir) and returns its path.
pub fn write_config(lab: &Lab, listen: &[Listen]) -> PathBuf {
    lab.scratch.write("portico.toml", config_toml(lab, listen))
}

/// Writes the config and starts portico (one shard), waiting for every listener: the
/// lab's HTTP ones (if any) and `listen`.
pub fn start(lab: &Lab, listen: &[Listen]) -> Portico {
    let config = write_config(lab, listen);
    let ready: Vec<Ready> = lab
        .site
        .http
        .map(Ready::Tcp)
        .into_iter()
        .chain(lab.site.https.map(Ready::Tls))
        .chain(listen.iter().map(|l| l.ready()))
        .collect();
    Portico::start(&config, &["--shards", "1"], &ready)
}

/// A `[[host]]` block named `name` with the given raw TOML lines.
pub fn host_block(name: &str, lines: &[String]) -> String {
    let mut out = format!("\n[[host]]\nname = \"{name}\"\n");
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `service = { target = "127.0.0.1", tcp = …, tls = …[, check_certificate = …] }`,
/// ports left out when `None`.
pub fn rule(service: &str, tcp: Option<u16>, tls: Option<u16>, check: Option<bool>) -> String {
    let mut parts = vec!["target = \"127.0.0.1\"".to_string()];
    if let Some(p) = tcp {
        parts.push(format!("tcp = {p}"));
    }
    if let Some(p) = tls {
        parts.push(format!("tls = {p}"));
    }
    if let Some(c) = check {
        parts.push(format!("check_certificate = {c}"));
    }
    format!("{service} = {{ {} }}", parts.join(", "))
}
