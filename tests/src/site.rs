//! The config writer and [`Lab`], one test's whole setup.
//!
//! [`Site`] writes the seed's complete reference (examples/dvl-ckl2.toml) in portico's
//! schema, HTTP part, moved onto loopback: each "box" of the seed (master PBX, slave
//! PBX, application platform) is a pair of recording targets on 127.0.0.1 (plain and
//! TLS) instead of 172.31.31.x:80/443; portico listens on test-chosen ports bound to
//! 127.0.0.1 only. Tests override `[proxy]` keys, set `[tls]` keys, add lines to a
//! host, or append whole TOML blocks.

use std::path::PathBuf;
use std::time::Duration;

use crate::binary::{Portico, Ready};
use crate::client::Curl;
use crate::pki::{Ca, Leaf};
use crate::target::Target;
use crate::{free_port, Scratch};

/// Where one box's plain and TLS HTTP servers listen.
#[derive(Clone, Copy, Debug)]
pub struct BoxPorts {
    pub tcp: u16,
    pub tls: u16,
}

/// The master PBX's host name in the seed.
pub const HQ: &str = "hq.dvl-ckl2.net";
/// The slave PBX's host name in the seed.
pub const BRANCH_B: &str = "branch-b.dvl-ckl2.net";
/// The application platform's host name in the seed.
pub const APPS: &str = "apps.dvl-ckl2.net";

/// The PBX HTTP paths the seed opens on both PBXs (master and slave), in its order.
pub const PBX_PATHS: [&str; 6] = [
    "/PBX0/APPCLIENT/appclient.htm",
    "/PBX0/APPS",
    "/PBX0/session",
    "/PBX0/user.soap",
    "/PBX0/ADMIN",
    "/OAUTH2/oauth2_login",
];

/// A portico config: the seed's reference rules plus test overrides.
#[derive(Clone, Debug)]
pub struct Site {
    pub http: Option<u16>,
    pub https: Option<u16>,
    pub master: BoxPorts,
    pub slave: BoxPorts,
    pub apps: BoxPorts,
    proxy: Vec<(String, String)>,
    tls: Vec<(String, String)>,
    host_lines: Vec<(String, String)>,
    extra: String,
}

impl Site {
    pub fn new(
        http: Option<u16>,
        https: Option<u16>,
        master: BoxPorts,
        slave: BoxPorts,
        apps: BoxPorts,
    ) -> Site {
        let proxy = [
            ("ipv4", "true"),
            ("ipv6", "false"),
            ("log_forwarded", "true"),
            ("log_rejected", "true"),
            ("blacklist_expiration_min", "5"),
            // High, so that tests sending many bad requests are not blacklisted;
            // the blacklist tests lower it.
            ("suspicious_requests_per_min", "100000"),
        ];
        Site {
            http,
            https,
            master,
            slave,
            apps,
            proxy: proxy
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tls: Vec::new(),
            host_lines: Vec::new(),
            extra: String::new(),
        }
    }

    /// Sets `[proxy] key = value` (`value` is raw TOML), replacing an earlier setting.
    pub fn proxy(&mut self, key: &str, value: &str) -> &mut Site {
        set(&mut self.proxy, key, value);
        self
    }

    /// Sets `[tls] key = value` (`value` is raw TOML), replacing an earlier setting.
    pub fn tls(&mut self, key: &str, value: &str) -> &mut Site {
        set(&mut self.tls, key, value);
        self
    }

    /// Removes `[tls] key`.
    pub fn remove_tls(&mut self, key: &str) -> &mut Site {
        self.tls.retain(|(k, _)| k != key);
        self
    }

    /// Sets `[tls] key = "path"`.
    pub fn tls_path(&mut self, key: &str, path: &std::path::Path) -> &mut Site {
        let value = toml_string(&path.display().to_string());
        self.tls(key, &value)
    }

    /// Adds a raw TOML line to the `[[host]]` block named `host`.
    pub fn host_line(&mut self, host: &str, line: &str) -> &mut Site {
        self.host_lines.push((host.to_string(), line.to_string()));
        self
    }

    /// Appends raw TOML (e.g. more `[[host]]` blocks) at the end.
    pub fn append(&mut self, toml: &str) -> &mut Site {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# Written by portico-tests: the seed's reference on loopback.\n\n[proxy]\n",
        );
        for (k, v) in &self.proxy {
            out.push_str(&format!("{k} = {v}\n"));
        }
        out.push_str("\n[proxy.listen]\n");
        if let Some(port) = self.http {
            out.push_str(&format!("http = {port}\n"));
        }
        if let Some(port) = self.https {
            out.push_str(&format!("https = {port}\n"));
        }
        out.push_str("bind = [\"127.0.0.1\"]\n");
        if !self.tls.is_empty() {
            out.push_str("\n[tls]\n");
            for (k, v) in &self.tls {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        out.push_str(&self.host_block("The application platform.", APPS, &[""], self.apps));
        out.push_str(&self.host_block("The slave PBX.", BRANCH_B, &PBX_PATHS, self.slave));
        out.push_str(&self.host_block("The master PBX.", HQ, &PBX_PATHS, self.master));
        out.push('\n');
        out.push_str(&self.extra);
        out
    }

    fn host_block(&self, comment: &str, name: &str, paths: &[&str], ports: BoxPorts) -> String {
        let mut out = format!("\n# {comment}\n[[host]]\nname = \"{name}\"\n");
        for (host, line) in &self.host_lines {
            if host == name {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("http = [\n");
        for path in paths {
            out.push_str(&format!(
                "  {{ path = \"{path}\", target = \"127.0.0.1\", tcp = {}, tls = {} }},\n",
                ports.tcp, ports.tls
            ));
        }
        out.push_str("]\n");
        out
    }
}

fn set(list: &mut Vec<(String, String)>, key: &str, value: &str) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_string(),
        None => list.push((key.to_string(), value.to_string())),
    }
}

/// A TOML basic string holding `s`.
pub fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One box of the seed: a plain and a TLS recording target.
pub struct PbxBox {
    pub http: Target,
    pub tls: Target,
}

impl PbxBox {
    fn new(name: &str, leaf: &Leaf) -> PbxBox {
        PbxBox {
            http: Target::http(name),
            tls: Target::tls(name, leaf),
        }
    }

    pub fn ports(&self) -> BoxPorts {
        BoxPorts {
            tcp: self.http.port,
            tls: self.tls.port,
        }
    }

    /// Requests received on both ports.
    pub fn request_count(&self) -> usize {
        self.http.requests().len() + self.tls.requests().len()
    }
}

/// One test's world: a scratch dir, a CA and portico's certificate (covering
/// `*.dvl-ckl2.net` and `dvl-ckl2.net`) as PEM files, the three boxes of the seed as
/// recording targets (TLS ones with self-signed certificates, as PBXs have), free
/// listen ports, and the [`Site`] config pointing at all of them.
pub struct Lab {
    pub scratch: Scratch,
    pub ca: Ca,
    pub ca_pem: PathBuf,
    pub master: PbxBox,
    pub slave: PbxBox,
    pub apps: PbxBox,
    pub site: Site,
}

impl Lab {
    pub fn new() -> Lab {
        let scratch = Scratch::new();
        let ca = Ca::new("portico-tests CA");
        let ca_pem = scratch.write("ca.pem", ca.pem());
        let portico_leaf = ca.issue(
            "portico wildcard dvl-ckl2.net",
            &["*.dvl-ckl2.net", "dvl-ckl2.net"],
        );
        let (cert, key) = portico_leaf.write(scratch.path(), "portico");
        let pbx_leaf = Leaf::self_signed("pbx self-signed", &["127.0.0.1", "localhost"]);
        let master = PbxBox::new("master", &pbx_leaf);
        let slave = PbxBox::new("slave", &pbx_leaf);
        let apps = PbxBox::new("apps", &pbx_leaf);
        let mut site = Site::new(
            Some(free_port()),
            Some(free_port()),
            master.ports(),
            slave.ports(),
            apps.ports(),
        );
        site.tls_path("certificate", &cert);
        site.tls_path("private_key", &key);
        Lab {
            scratch,
            ca,
            ca_pem,
            master,
            slave,
            apps,
            site,
        }
    }

    pub fn http_port(&self) -> u16 {
        self.site.http.expect("http listener configured")
    }

    pub fn https_port(&self) -> u16 {
        self.site.https.expect("https listener configured")
    }

    /// Writes the config and starts portico (one shard), waiting for its listeners.
    pub fn start(&self) -> Portico {
        self.start_with(&["--shards", "1"])
    }

    /// Like [`Lab::start`], with other command-line arguments after `--config FILE`.
    pub fn start_with(&self, args: &[&str]) -> Portico {
        let config = self.scratch.write("portico.toml", self.site.to_toml());
        let ready: Vec<Ready> = (self.site.http.map(Ready::Tcp).into_iter())
            .chain(self.site.https.map(Ready::Tls))
            .collect();
        Portico::start(&config, args, &ready)
    }

    /// `http://<host>:<http port><path>`.
    pub fn http_url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.http_port())
    }

    /// `https://<host>:<https port><path>`.
    pub fn https_url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https_port())
    }

    /// A curl resolving the seed's names to 127.0.0.1 on both listen ports and trusting
    /// the test CA.
    pub fn curl(&self) -> Curl {
        let mut curl = Curl::new().cacert(&self.ca_pem);
        for host in [HQ, BRANCH_B, APPS, "dvl-ckl2.net", "unknown.dvl-ckl2.net"] {
            for port in self.site.http.into_iter().chain(self.site.https) {
                curl = curl.resolve(host, port);
            }
        }
        curl
    }

    /// Total requests received by every target of every box.
    pub fn requests_reaching_targets(&self) -> usize {
        self.master.request_count() + self.slave.request_count() + self.apps.request_count()
    }

    /// Waits a little for stray requests to arrive, then the total as above.
    pub fn settled_request_count(&self) -> usize {
        std::thread::sleep(Duration::from_millis(200));
        self.requests_reaching_targets()
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}
