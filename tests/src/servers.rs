//! Emulator processes the tests start on free ports: `moto` (S3) and `azurite` (Azure Blob). Installed by
//! `scripts/test-tools.sh`; each runs under a watchdog shell that kills it as soon as the
//! test process exits (statics are never dropped, so a server cannot rely on `Drop`).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use replicator_lake::TableLocation;
use replicator_lake::location::StorageOptions;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tool from the project's tools directory (see scripts/test-tools.sh) or from PATH.
pub fn tool(name: &str) -> PathBuf {
    let tools = std::env::var_os("REPLICATOR_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/replicator-tools".into());
    let local = tools.join("node_modules/.bin").join(name);
    if local.exists() {
        return local;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("`{name}` not found: run scripts/test-tools.sh (installs moto and azurite)")
        })
}

/// Start `program args…` under a watchdog shell that kills it when this process exits.
pub fn spawn_watched(program: &Path, args: &[String]) -> Child {
    let mut quoted = vec![format!("'{}'", program.display())];
    quoted.extend(args.iter().map(|a| format!("'{a}'")));
    let script = format!(
        "{} & child=$!; trap 'kill $child 2>/dev/null' EXIT; \
         while kill -0 {} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done",
        quoted.join(" "),
        std::process::id()
    );
    Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("emulator starts")
}

/// Wait until something listens on `port` (60 s at most).
pub fn wait_for(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run a Python snippet (the emulators' own SDKs set up what object_store cannot), failing
/// the test with its stderr.
fn python(script: &str) {
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `moto_server` (S3).
pub struct Moto {
    _child: Child,
    pub port: u16,
}

impl Moto {
    /// A new server on a free port.
    pub fn start() -> Moto {
        let port = free_port();
        let child = spawn_watched(
            &tool("moto_server"),
            &[
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ],
        );
        wait_for(port, "moto_server");
        Moto {
            _child: child,
            port,
        }
    }

    /// The server this test process shares.
    pub fn shared() -> &'static Moto {
        static M: OnceLock<Moto> = OnceLock::new();
        M.get_or_init(Moto::start)
    }

    /// object_store options reaching this server.
    pub fn options(&self) -> StorageOptions {
        Arc::new(BTreeMap::from([
            (
                "aws_endpoint".to_owned(),
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("aws_allow_http".to_owned(), "true".to_owned()),
            ("aws_access_key_id".to_owned(), "testing".to_owned()),
            ("aws_secret_access_key".to_owned(), "testing".to_owned()),
            ("aws_region".to_owned(), "us-east-1".to_owned()),
        ]))
    }

    /// Create bucket `name` (with boto3: object_store has no bucket API); `s3://name`.
    pub fn bucket(&self, name: &str) -> String {
        python(&format!(
            "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{}', \
             aws_access_key_id='testing', aws_secret_access_key='testing', \
             region_name='us-east-1').create_bucket(Bucket='{name}')",
            self.port
        ));
        format!("s3://{name}")
    }

    /// `url` on this server.
    pub fn location(&self, url: &str) -> TableLocation {
        TableLocation::parse_with(url, self.options()).unwrap()
    }
}

/// The key of azurite's well-known development account `devstoreaccount1`.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An `azurite-blob` server (Azure Blob), its data in a directory of its own.
pub struct Azurite {
    _child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Azurite {
    /// A new server on a free port.
    pub fn start() -> Azurite {
        let port = free_port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let args: Vec<String> = vec![
            "--blobHost".into(),
            "127.0.0.1".into(),
            "--blobPort".into(),
            port.to_string(),
            "--location".into(),
            dir.path().display().to_string(),
            "--silent".into(),
            "--skipApiVersionCheck".into(),
            "--loose".into(),
        ];
        let child = spawn_watched(&tool("azurite-blob"), &args);
        wait_for(port, "azurite");
        Azurite {
            _child: child,
            port,
            _dir: dir,
        }
    }

    /// The server this test process shares.
    pub fn shared() -> &'static Azurite {
        static A: OnceLock<Azurite> = OnceLock::new();
        A.get_or_init(Azurite::start)
    }

    /// The blob endpoint of the development account.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/devstoreaccount1", self.port)
    }

    /// object_store options reaching this server with the account key.
    pub fn options(&self) -> StorageOptions {
        Arc::new(BTreeMap::from([
            (
                "azure_storage_account_name".to_owned(),
                "devstoreaccount1".to_owned(),
            ),
            (
                "azure_storage_account_key".to_owned(),
                AZURITE_KEY.to_owned(),
            ),
            ("azure_storage_endpoint".to_owned(), self.endpoint()),
            ("azure_allow_http".to_owned(), "true".to_owned()),
        ]))
    }

    /// Create container `name` (with the Python SDK: object_store has no container API);
    /// `az://name`.
    pub fn container(&self, name: &str) -> String {
        python(&format!(
            "from azure.storage.blob import BlobServiceClient; BlobServiceClient.from_connection_string(\
             'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};\
             BlobEndpoint={};').create_container('{name}')",
            self.endpoint()
        ));
        format!("az://{name}")
    }
}
