//! moto's S3-compatible server as a child process of the test, on a free loopback port,
//! with a few object operations (plain, unsigned path-style requests; moto accepts them).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::http::{http_request, percent_encode, HttpResponse};
use crate::process::{ProcessBuilder, WorkerProcess};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The S3 region the test credentials name.
const REGION: &str = "us-east-1";

/// The access key in [`Moto::s3_env`].
const ACCESS_KEY: &str = "rivulet-test";

/// A syntactically valid SigV4 `Authorization` header for [`ACCESS_KEY`]; moto does not
/// verify signatures.
const DUMMY_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
    Credential=rivulet-test/20240101/us-east-1/s3/aws4_request, \
    SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000";

/// A running moto S3 server. Dropping it kills the server and its data.
pub struct Moto {
    port: u16,
    process: WorkerProcess,
}

/// `$MOTO_SERVER_BIN`, else `moto_server` on `PATH`, else `python3 -m moto.server`.
fn moto_command() -> ProcessBuilder {
    if let Some(bin) = std::env::var_os("MOTO_SERVER_BIN") {
        return ProcessBuilder::new(PathBuf::from(bin));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("moto_server"))
            .find(|p| p.is_file())
    });
    match on_path {
        Some(bin) => ProcessBuilder::new(bin),
        None => ProcessBuilder::new("python3").args(["-m", "moto.server"]),
    }
}

impl Moto {
    /// Starts moto's server on a free loopback port and waits until it answers HTTP.
    /// Retries on another port if the server exits during startup.
    pub fn start() -> anyhow::Result<Moto> {
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_once() {
                Ok(moto) => return Ok(moto),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn start_once() -> anyhow::Result<Moto> {
        let port = crate::free_port();
        let mut process = moto_command()
            .label("moto")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .spawn()
            .context("start moto's server (run scripts/setup.sh, or set MOTO_SERVER_BIN)")?;
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.try_exit_status() {
                bail!(
                    "moto exited during startup ({status})\n{}",
                    process.log_tail(40)
                );
            }
            if http_request(&addr, "GET", "/", &[], b"", Duration::from_secs(2)).is_ok() {
                return Ok(Moto { port, process });
            }
            if Instant::now() >= deadline {
                bail!(
                    "moto did not answer on {port} within {START_TIMEOUT:?}\n{}",
                    process.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// The server's process, e.g. to check that it is still running.
    pub fn process(&mut self) -> &mut WorkerProcess {
        &mut self.process
    }

    /// Environment for a process using this server through `object_store`'s S3 store
    /// (`AmazonS3Builder::from_env`) or the AWS SDKs: dummy credentials, region, endpoint,
    /// and plain HTTP allowed.
    pub fn s3_env(&self) -> Vec<(String, String)> {
        let endpoint = self.endpoint();
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", ACCESS_KEY),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ENDPOINT", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<HttpResponse> {
        // moto checks no signature, but treats a request without credentials as anonymous
        // (denied reads), and reads a body typed as a form as form fields.
        http_request(
            &format!("127.0.0.1:{}", self.port),
            method,
            path,
            &[
                ("Authorization", DUMMY_AUTHORIZATION),
                ("Content-Type", "application/octet-stream"),
            ],
            body,
            REQUEST_TIMEOUT,
        )
    }

    fn object_path(bucket: &str, key: &str) -> String {
        format!(
            "/{}/{}",
            percent_encode(bucket, false),
            percent_encode(key, true)
        )
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let response = self.request("PUT", &format!("/{}", percent_encode(bucket, false)), b"")?;
        if !response.is_success() {
            bail!(
                "create bucket {bucket}: HTTP {}: {}",
                response.status,
                response.text()
            );
        }
        Ok(())
    }

    /// Writes an object.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> anyhow::Result<()> {
        let response = self.request("PUT", &Self::object_path(bucket, key), body)?;
        if !response.is_success() {
            bail!(
                "put s3://{bucket}/{key}: HTTP {}: {}",
                response.status,
                response.text()
            );
        }
        Ok(())
    }

    /// Reads an object; `None` if it does not exist.
    pub fn get_object(&self, bucket: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let response = self.request("GET", &Self::object_path(bucket, key), b"")?;
        match response.status {
            200 => Ok(Some(response.body)),
            404 => Ok(None),
            status => bail!(
                "get s3://{bucket}/{key}: HTTP {status}: {}",
                response.text()
            ),
        }
    }

    /// Deletes an object (no error if it does not exist).
    pub fn delete_object(&self, bucket: &str, key: &str) -> anyhow::Result<()> {
        let response = self.request("DELETE", &Self::object_path(bucket, key), b"")?;
        if !response.is_success() {
            bail!(
                "delete s3://{bucket}/{key}: HTTP {}: {}",
                response.status,
                response.text()
            );
        }
        Ok(())
    }

    /// The keys of all objects under `prefix` (ListObjectsV2, every page), sorted.
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!(
                "/{}?list-type=2&prefix={}",
                percent_encode(bucket, false),
                percent_encode(prefix, false)
            );
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={}", percent_encode(t, false)));
            }
            let response = self.request("GET", &path, b"")?;
            if !response.is_success() {
                bail!(
                    "list s3://{bucket}/{prefix}: HTTP {}: {}",
                    response.status,
                    response.text()
                );
            }
            let xml = response.text();
            keys.extend(xml_values(&xml, "Key"));
            let truncated =
                xml_values(&xml, "IsTruncated").first().map(String::as_str) == Some("true");
            token = xml_values(&xml, "NextContinuationToken").into_iter().next();
            if !truncated || token.is_none() {
                break;
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// The unescaped text of every `<tag>…</tag>` element in `xml` (no nesting inside).
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        out.push(
            rest[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[end + close.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn extracts_xml_values() {
        let xml = "<R><Contents><Key>a&amp;b</Key></Contents><Contents><Key>c</Key></Contents>\
                   <IsTruncated>false</IsTruncated></R>";
        assert_eq!(super::xml_values(xml, "Key"), ["a&b", "c"]);
        assert_eq!(super::xml_values(xml, "IsTruncated"), ["false"]);
    }
}
