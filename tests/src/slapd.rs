//! A real OpenLDAP server (`slapd`, Debian package `slapd`) as a test fixture, and the
//! `ldap-utils` clients (`ldapwhoami`, `ldapsearch`).
//!
//! [`Slapd::start`] writes a slapd.conf-style config into a directory of its own (core
//! schema, one mdb database for the suffix, a rootdn with a plain-text password, TLS
//! with a self-signed certificate), loads a base entry and one person with `slapadd`,
//! and runs `slapd -d 0` (foreground) listening on `ldap://127.0.0.1:<port>/` and
//! `ldaps://127.0.0.1:<tls_port>/`. The process is killed when the guard is dropped.

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::binary::{run_within, Finished};
use crate::free_port;
use crate::pki::Leaf;

/// The password of every fixture's rootdn.
pub const PASSWORD: &str = "secret";

/// A running slapd.
pub struct Slapd {
    child: Child,
    pub dir: PathBuf,
    /// `ldap://127.0.0.1:port/`
    pub port: u16,
    /// `ldaps://127.0.0.1:tls_port/`
    pub tls_port: u16,
    /// e.g. `dc=dvl-ckl2,dc=net`
    pub suffix: String,
    /// `cn=ldap-guest,<suffix>`
    pub rootdn: String,
}

impl Slapd {
    /// Starts a slapd for `suffix` (`dc=a,dc=b`) with its files under `dir` (created),
    /// waiting up to 10 s until it accepts a bind as its rootdn on the plain port.
    pub fn start(dir: &Path, suffix: &str) -> Slapd {
        std::fs::create_dir_all(dir.join("db")).expect("slapd dirs");
        let leaf = Leaf::self_signed("slapd self-signed", &["127.0.0.1", "localhost"]);
        let (cert, key) = leaf.write(dir, "slapd");
        let rootdn = format!("cn=ldap-guest,{suffix}");
        let first_dc = suffix
            .split(',')
            .next()
            .and_then(|rdn| rdn.strip_prefix("dc="))
            .unwrap_or("example");
        let conf = format!(
            "# Written by portico-tests.\n\
             include /etc/ldap/schema/core.schema\n\
             pidfile {dir}/slapd.pid\n\
             argsfile {dir}/slapd.args\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             TLSCertificateFile {cert}\n\
             TLSCertificateKeyFile {key}\n\
             database mdb\n\
             maxsize 10485760\n\
             suffix \"{suffix}\"\n\
             rootdn \"{rootdn}\"\n\
             rootpw {PASSWORD}\n\
             directory {dir}/db\n",
            dir = dir.display(),
            cert = cert.display(),
            key = key.display(),
        );
        let conf_path = dir.join("slapd.conf");
        std::fs::write(&conf_path, conf).expect("write slapd.conf");
        let ldif = format!(
            "dn: {suffix}\nobjectClass: dcObject\nobjectClass: organization\ndc: {first_dc}\no: {first_dc}\n\n\
             dn: cn=alice,{suffix}\nobjectClass: person\ncn: alice\nsn: Example\ntelephoneNumber: 4711\n"
        );
        let ldif_path = dir.join("base.ldif");
        std::fs::write(&ldif_path, ldif).expect("write base.ldif");
        let added = run_within(
            Command::new("slapadd")
                .arg("-f")
                .arg(&conf_path)
                .arg("-l")
                .arg(&ldif_path),
            b"",
            Duration::from_secs(20),
        );
        assert_eq!(
            added.code(),
            Some(0),
            "slapadd failed: {}\n{}",
            added.stderr,
            added.stdout_text()
        );

        let port = free_port();
        let tls_port = free_port();
        let log = File::create(dir.join("slapd.log")).expect("slapd log file");
        let child = Command::new("slapd")
            .arg("-f")
            .arg(&conf_path)
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
            ))
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn slapd (Debian package slapd)");
        let mut slapd = Slapd {
            child,
            dir: dir.to_path_buf(),
            port,
            tls_port,
            suffix: suffix.to_string(),
            rootdn,
        };
        slapd.wait_ready();
        slapd
    }

    fn wait_ready(&mut self) {
        let ready = crate::wait_for(Duration::from_secs(10), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("slapd exited ({status}):\n{}", self.log());
            }
            let up = TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && TcpStream::connect(("127.0.0.1", self.tls_port)).is_ok();
            up.then_some(())
        });
        assert!(ready.is_some(), "slapd did not listen:\n{}", self.log());
        // Listening is not serving yet: a direct bind must work before tests start.
        let run = ldap(
            "ldapwhoami",
            &format!("ldap://127.0.0.1:{}", self.port),
            &["-D", &self.rootdn, "-w", PASSWORD],
        );
        assert_eq!(
            run.code(),
            Some(0),
            "direct bind to slapd failed: {}\n{}",
            run.stderr,
            self.log()
        );
    }

    /// slapd's own output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("slapd.log")).unwrap_or_default()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- slapd {} ----\n{}", self.suffix, self.log());
        }
    }
}

/// Runs an ldap-utils client (`ldapwhoami`, `ldapsearch`, …) with `-x -H uri`, a 5 s
/// network timeout and `args`; ldaps server certificates are not verified
/// (`LDAPTLS_REQCERT=never`). 20 s limit.
pub fn ldap(tool: &str, uri: &str, args: &[&str]) -> Finished {
    let mut cmd = Command::new(tool);
    cmd.args(["-x", "-H", uri, "-o", "nettimeout=5"])
        .args(args)
        .env("LDAPTLS_REQCERT", "never");
    run_within(&mut cmd, b"", Duration::from_secs(20))
}

/// An LDAPv3 simple BindRequest (RFC 4511 §4.2) in BER, for clients that must see
/// the raw answer. Names and passwords shorter than 100 bytes (short-form lengths).
pub fn bind_request(message_id: u8, name: &str, password: &str) -> Vec<u8> {
    assert!(name.len() < 100 && password.len() < 100 && message_id < 128);
    let mut bind = vec![0x02, 0x01, 0x03, 0x04, name.len() as u8];
    bind.extend_from_slice(name.as_bytes());
    bind.extend_from_slice(&[0x80, password.len() as u8]);
    bind.extend_from_slice(password.as_bytes());
    let mut op = vec![0x60, bind.len() as u8];
    op.extend_from_slice(&bind);
    let mut message = vec![0x30, (op.len() + 3) as u8, 0x02, 0x01, message_id];
    message.extend_from_slice(&op);
    message
}

/// The (messageID, resultCode) of a BindResponse at the start of `bytes`, if it is one
/// (definite lengths, short or long form).
pub fn bind_result(bytes: &[u8]) -> Option<(u32, u8)> {
    // A TLV at `at`: (tag, value range).
    fn tlv(bytes: &[u8], at: usize) -> Option<(u8, usize, usize)> {
        let tag = *bytes.get(at)?;
        let first = *bytes.get(at + 1)?;
        let (len, start) = if first < 0x80 {
            (usize::from(first), at + 2)
        } else {
            let count = usize::from(first & 0x7f);
            let len = bytes
                .get(at + 2..at + 2 + count)?
                .iter()
                .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
            (len, at + 2 + count)
        };
        (start + len <= bytes.len()).then_some((tag, start, start + len))
    }
    let (tag, start, _) = tlv(bytes, 0)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, id_start, id_end) = tlv(bytes, start)?;
    if tag != 0x02 {
        return None;
    }
    let id = bytes[id_start..id_end]
        .iter()
        .fold(0u32, |acc, &b| acc << 8 | u32::from(b));
    let (tag, op_start, _) = tlv(bytes, id_end)?;
    if tag != 0x61 {
        return None;
    }
    let (tag, code_start, code_end) = tlv(bytes, op_start)?;
    (tag == 0x0a && code_end == code_start + 1).then(|| (id, bytes[code_start]))
}
