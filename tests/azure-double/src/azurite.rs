//! Azurite, Microsoft's Azure Storage emulator (an npm package), for the blob data-plane
//! tests: [`start`] runs its blob service on a free loopback port, and the helpers arrange
//! data over plain HTTP (not through the code under test).
//!
//! The official `azure_storage_blob` crate authenticates with Entra ID tokens only (no shared
//! key), and a token needs https; so the tests use an **account SAS** in the URL
//! ([`account_sas`]), signed with Azurite's well-known development key.
//!
//! What Azurite 3.35 supports (its README, "Support Matrix", and what it answers): blobs and
//! **snapshots** yes; **blob versions** and **soft delete** no (`include=versions,deleted` is
//! accepted and lists nothing more), so there is no helper making versions. Paged listings
//! with snapshots have a quirk: the marker is the blob name, so a page boundary right after a
//! base blob skips that blob's snapshots.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Azurite's one account.
pub const ACCOUNT: &str = "devstoreaccount1";

/// Azurite's well-known (public, documented) development account key.
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How Azurite gets installed (from the workspace root; `scripts/test` does it).
pub const INSTALL: &str = "npm install --prefix .tools/azurite --no-audit --no-fund azurite@3.35";

/// The SAS version: its account string-to-sign has no encryption-scope field.
const SAS_VERSION: &str = "2020-08-04";
/// Read, write, delete, delete version, list, add, create, update, process.
const SAS_PERMISSIONS: &str = "rwdxlacup";
/// Blob service only; service, container and object resource types.
const SAS_SERVICES: &str = "b";
const SAS_RESOURCE_TYPES: &str = "sco";
/// Fixed and far away, so the SAS is a constant.
const SAS_EXPIRY: &str = "2099-12-31T23:59:59Z";

/// The API version of the helpers' own requests (Azurite 3.35's baseline).
const API_VERSION: &str = "2025-11-05";

/// How long Azurite may take to answer after it was started.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Starts the binary in the background and waits for it; a background reader of the
/// original stdin (fd 3) stops it when that pipe closes, i.e. when [`Azurite`] is dropped or
/// the test process exits in any way, so no emulator outlives its tests (statics are never
/// dropped). The shell exits with Azurite's status.
const SUPERVISOR: &str =
    r#"exec 3<&0; "$@" </dev/null & pid=$!; (read _ <&3; kill $pid 2>/dev/null) & wait $pid"#;

/// A running Azurite blob service.
pub struct Azurite {
    /// The account's service URL, `http://127.0.0.1:PORT/devstoreaccount1` (no trailing slash).
    pub url: String,
    port: u16,
    child: Child,
}

/// The account SAS query string (no leading `?`) the tests append to every URL: HMAC-SHA256
/// with the development key over Azure's account string-to-sign.
pub fn account_sas() -> String {
    let string_to_sign = [
        ACCOUNT,
        SAS_PERMISSIONS,
        SAS_SERVICES,
        SAS_RESOURCE_TYPES,
        "", // start: none
        SAS_EXPIRY,
        "", // IP range: any
        "", // protocol: any (Azurite is plain http)
        SAS_VERSION,
        "",
    ]
    .join("\n");
    let key = STANDARD.decode(ACCOUNT_KEY).expect("the dev key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    format!(
        "sv={SAS_VERSION}&ss={SAS_SERVICES}&srt={SAS_RESOURCE_TYPES}&sp={SAS_PERMISSIONS}&se={}&sig={}",
        encode(SAS_EXPIRY, false),
        encode(&signature, false)
    )
}

/// The Azurite binary under a tools directory.
fn binary(tools: &Path) -> PathBuf {
    tools.join("azurite/node_modules/.bin/azurite-blob")
}

/// Starts Azurite's blob service from `<tools>/azurite` (installed there by `scripts/test`)
/// on a free loopback port, in memory, and waits until it answers a SAS-signed listing.
///
/// # Panics
///
/// When Azurite is not installed (with the command that installs it), exits, or does not
/// answer within 30 s. Tests never skip for want of it.
pub fn start(tools: &Path) -> Azurite {
    let bin = binary(tools);
    if !bin.exists() {
        panic!(
            "\n\n*** Azurite (the Azure Storage emulator) is not installed: {} is missing.\n\
             *** The blob data-plane tests need it. Install it (Node.js and npm needed) with\n\
             ***     {INSTALL}\n\
             *** from the workspace root, or run scripts/test, which does that.\n\n",
            bin.display()
        );
    }
    let port = free_port();
    let child = Command::new("sh")
        .arg("-c")
        .arg(SUPERVISOR)
        .arg("sh")
        .arg(&bin)
        .args(["--blobHost", "127.0.0.1", "--blobPort"])
        .arg(port.to_string())
        .args([
            "--inMemoryPersistence",
            // The crate sends a newer x-ms-version than Azurite knows (400 without this).
            "--skipApiVersionCheck",
            "--loose",
            // Otherwise it reaches for an external telemetry host.
            "--disableTelemetry",
            "--silent",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run sh to start Azurite: {e}"));
    let mut azurite = Azurite {
        url: format!("http://127.0.0.1:{port}/{ACCOUNT}"),
        port,
        child,
    };
    let started = Instant::now();
    loop {
        if let Some(status) = azurite.child.try_wait().expect("Azurite's status") {
            panic!(
                "Azurite ({}) exited at start with {status} (its messages are above). \
                 Reinstall it with `{INSTALL}`.",
                bin.display()
            );
        }
        match azurite.try_request("GET", "?comp=list", &[], b"") {
            Ok(r) if r.status == 200 => return azurite,
            Ok(r) => panic!(
                "Azurite answered a SAS-signed listing with HTTP {}: {}",
                r.status, r.body
            ),
            Err(_) if started.elapsed() < READY_WITHIN => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("Azurite did not answer on port {port} within {READY_WITHIN:?}: {e}"),
        }
    }
}

impl Azurite {
    /// [`Azurite::url`] with [`account_sas`] appended: what `BlobPlane::local` takes.
    pub fn endpoint_with_sas(&self) -> String {
        format!("{}?{}", self.url, account_sas())
    }

    /// Creates container `name`.
    ///
    /// # Panics
    ///
    /// Unless Azurite answers 201 Created.
    pub fn create_container(&self, name: &str) {
        let path = format!("/{}?restype=container", encode(name, false));
        self.expect(201, "PUT", &path, &[], b"");
    }

    /// Uploads block blob `blob` (a name of unreserved characters and `/`) into `container`.
    ///
    /// # Panics
    ///
    /// Unless Azurite answers 201 Created.
    pub fn upload(&self, container: &str, blob: &str, body: &[u8]) {
        let path = blob_path(container, blob);
        self.expect(201, "PUT", &path, &[("x-ms-blob-type", "BlockBlob")], body);
    }

    /// Takes a snapshot of `blob` and returns its id (`x-ms-snapshot`, a timestamp).
    ///
    /// # Panics
    ///
    /// Unless Azurite answers 201 Created with the id.
    pub fn snapshot(&self, container: &str, blob: &str) -> String {
        let path = format!("{}?comp=snapshot", blob_path(container, blob));
        let r = self.expect(201, "PUT", &path, &[], b"");
        r.header("x-ms-snapshot")
            .unwrap_or_else(|| panic!("no x-ms-snapshot in the answer: {r:?}"))
            .to_string()
    }

    /// How many entries (blobs, snapshots, versions, deleted blobs) one listing of
    /// `container` shows: an independent check on the code under test.
    ///
    /// # Panics
    ///
    /// Unless Azurite lists them all in one page.
    pub fn count(&self, container: &str) -> usize {
        let path = format!(
            "/{}?restype=container&comp=list&include=snapshots,versions,deleted&maxresults=5000",
            encode(container, false)
        );
        let r = self.expect(200, "GET", &path, &[], b"");
        assert!(
            !r.body.contains("<NextMarker>"),
            "the listing of {container} did not fit one page: {}",
            r.body
        );
        r.body.matches("<Blob>").count()
    }

    /// The names of the blobs in `container`, in listing order (one page).
    ///
    /// # Panics
    ///
    /// Unless Azurite lists them all in one page.
    pub fn names(&self, container: &str) -> Vec<String> {
        let path = format!(
            "/{}?restype=container&comp=list&maxresults=5000",
            encode(container, false)
        );
        let r = self.expect(200, "GET", &path, &[], b"");
        assert!(!r.body.contains("<NextMarker>"), "{}", r.body);
        r.body
            .split("<Name>")
            .skip(1)
            .filter_map(|s| s.split_once("</Name>").map(|(name, _)| name.to_string()))
            .collect()
    }

    /// The lease state and duration of `blob` as Azurite reports them (`x-ms-lease-state`:
    /// `available`, `leased`, `broken`...; `x-ms-lease-duration`: `fixed` or `infinite`
    /// while leased).
    ///
    /// # Panics
    ///
    /// Unless the blob exists.
    pub fn lease(&self, container: &str, blob: &str) -> (String, Option<String>) {
        let r = self.expect(200, "HEAD", &blob_path(container, blob), &[], b"");
        let state = r.header("x-ms-lease-state").unwrap_or_default().to_string();
        (state, r.header("x-ms-lease-duration").map(str::to_string))
    }

    /// Breaks `blob`'s lease at once, whoever holds it (a human with the portal).
    ///
    /// # Panics
    ///
    /// Unless Azurite answers 202 Accepted.
    pub fn break_lease(&self, container: &str, blob: &str) {
        let path = format!("{}?comp=lease", blob_path(container, blob));
        let headers = [
            ("x-ms-lease-action", "break"),
            ("x-ms-lease-break-period", "0"),
        ];
        self.expect(202, "PUT", &path, &headers, b"");
    }

    /// Overwrites block blob `blob` with no lease id and no condition, and returns Azurite's
    /// status and error code (`x-ms-error-code`).
    ///
    /// # Panics
    ///
    /// When Azurite does not answer.
    pub fn try_overwrite(&self, container: &str, blob: &str, body: &[u8]) -> (u16, Option<String>) {
        let path = blob_path(container, blob);
        let r = self
            .try_request("PUT", &path, &[("x-ms-blob-type", "BlockBlob")], body)
            .unwrap_or_else(|e| panic!("PUT {path} to Azurite: {e}"));
        (r.status, r.header("x-ms-error-code").map(str::to_string))
    }

    /// Sends a request and panics unless the answer has status `want`.
    fn expect(
        &self,
        want: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let r = self
            .try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} to Azurite: {e}"));
        assert_eq!(r.status, want, "{method} {path}: {}", r.body);
        r
    }

    /// One HTTP/1.1 request to `/devstoreaccount1{path}` with the SAS appended (`path` is
    /// `/container...` or `?query`).
    fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Answer> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut head = format!(
            "{method} /{ACCOUNT}{path}{sep}{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             x-ms-version: {API_VERSION}\r\nContent-Length: {}\r\nConnection: close\r\n",
            account_sas(),
            self.port,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        Answer::parse(&raw)
    }
}

impl Drop for Azurite {
    /// Closes the supervisor's stdin (it stops Azurite and exits), then reaps it; kills it
    /// if that takes more than 5 s.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn parse(raw: &[u8]) -> std::io::Result<Answer> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| bad("no end of headers"))?;
        let head = String::from_utf8_lossy(&raw[..end]);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[end + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
        {
            body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
        }
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes a chunked transfer encoding.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// `/container/blob`, percent-encoded (a blob name's `/` kept).
fn blob_path(container: &str, blob: &str) -> String {
    format!("/{}/{}", encode(container, false), encode(blob, true))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` when asked).
fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools")
    }

    #[test]
    fn the_sas_is_signed_with_the_dev_key() {
        // Computed independently (Python's hmac over the same string-to-sign).
        assert_eq!(
            account_sas(),
            "sv=2020-08-04&ss=b&srt=sco&sp=rwdxlacup&se=2099-12-31T23%3A59%3A59Z\
             &sig=IV2HoG8wARwYatnLGL%2Fiu80QpeWdjnjpIVBMIND7h%2Bo%3D"
        );
    }

    #[test]
    fn azurite_keeps_snapshots_but_no_versions() {
        let a = start(&tools());
        a.create_container("facts");
        a.upload("facts", "dir/a", b"one");
        a.upload("facts", "dir/a", b"two");
        a.snapshot("facts", "dir/a");
        // The base blob and its snapshot; an overwrite makes no version.
        assert_eq!(a.count("facts"), 2);
        let r = a.expect(
            200,
            "GET",
            "/facts?restype=container&comp=list&include=versions",
            &[],
            b"",
        );
        assert!(!r.body.contains("<VersionId>"), "{}", r.body);
        let url = a.url.clone();
        drop(a);
        let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
        assert!(
            TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
            "Azurite still listens after drop"
        );
    }
}
