//! Test harness: `spawn_app()` runs the real application in-process on port 0, in memory
//! mode or against a fresh PostgreSQL database; `appserver()` runs the real binary for
//! process-level behaviour (exit codes, signals).
//!
//! Databases: the first test of a run creates a template database with every migration
//! applied (named after a hash of the migration files, so a new migration makes a new
//! template), then each test clones it with `CREATE DATABASE … TEMPLATE …`. An advisory
//! lock serialises template creation across concurrently running test processes. Test
//! databases older than two hours are dropped when a run starts.

use actix_web::http::Method;
use serde_json::Value;
use service_layer::startup::Application;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, OnceCell};
use tokio_postgres::NoTls;

pub const TOKEN: &str = "test-admin-token-0123456789";
/// The encryption key PostgreSQL-mode apps get unless a test sets its own.
pub const KEY: &str = "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Where the test PostgreSQL server is; any database on it works as the admin database.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn database_url(name: &str) -> String {
    let admin = admin_url();
    let (prefix, _) = admin
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL must end in /<database>");
    format!("{prefix}/{name}")
}

pub async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e:?} (is PostgreSQL running?)"));
    actix_rt::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn migrations_hash() -> u64 {
    use std::hash::{Hash, Hasher};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("migrations folder")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        f.file_name().hash(&mut hasher);
        std::fs::read(&f).expect("migration file").hash(&mut hasher);
    }
    hasher.finish()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// The migrated template database, created once per test run.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("sl_tmpl_{:016x}", migrations_hash());
            let admin = admin_client(&admin_url()).await;
            admin
                .execute("SELECT pg_advisory_lock(7242001)", &[])
                .await
                .expect("lock");
            drop_stale_databases(&admin).await;
            let exists = admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .expect("query pg_database")
                .is_some();
            if !exists {
                let building = format!("{name}_build");
                // Left over if a run was killed while building: never used, safe to drop.
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                    .await
                    .expect("drop a half-built template");
                admin
                    .batch_execute(&format!("CREATE DATABASE {building}"))
                    .await
                    .expect("create template");
                let pool = actors::store::connect(
                    &database_url(&building),
                    &actors::store::PgOptions {
                        max_connections: 1,
                        connect_timeout: Duration::from_secs(10),
                    },
                )
                .await
                .expect("connect to template");
                actors::store::migrations::run(&pool)
                    .await
                    .expect("migrate template");
                pool.close();
                drop(pool);
                // Rename only when complete, so no process ever clones a half-built template.
                let mut attempt = 0;
                while let Err(e) = admin
                    .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .await
                {
                    // The pool's sessions may take a moment to end.
                    attempt += 1;
                    assert!(attempt < 50, "cannot rename the template: {e}");
                    actix_rt::time::sleep(Duration::from_millis(100)).await;
                }
            }
            admin
                .execute("SELECT pg_advisory_unlock(7242001)", &[])
                .await
                .expect("unlock");
            name
        })
        .await
}

async fn drop_stale_databases(admin: &tokio_postgres::Client) {
    let rows = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'sl_test_%'",
            &[],
        )
        .await
        .expect("list test databases");
    let cutoff = unix_now().saturating_sub(2 * 3600);
    for row in rows {
        let name: String = row.get(0);
        let created: u64 = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if created < cutoff {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// A database that exists for one test.
#[derive(Clone)]
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    fn fresh_name() -> String {
        format!(
            "sl_test_{}_{}",
            unix_now(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
    }

    /// A clone of the migrated template.
    pub async fn migrated() -> Self {
        let template = template().await;
        let name = Self::fresh_name();
        let admin = admin_client(&admin_url()).await;
        let mut attempt = 0;
        loop {
            match admin
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .await
            {
                Ok(()) => break,
                // Another session may still be connected to the template for a moment.
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    eprintln!("retrying CREATE DATABASE: {e}");
                    actix_rt::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot clone template: {e}"),
            }
        }
        Self {
            url: database_url(&name),
            name,
        }
    }

    /// An empty database with no migrations applied.
    pub async fn empty() -> Self {
        let name = Self::fresh_name();
        admin_client(&admin_url())
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        Self {
            url: database_url(&name),
            name,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        admin_client(&self.url).await
    }

    /// Drops the database while the app still uses it (readiness and 5xx tests).
    pub async fn drop_now(&self) {
        admin_client(&admin_url())
            .await
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .expect("drop database");
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Postgres,
}

/// How to start an in-process app: extra environment and flags on top of the defaults.
#[derive(Default)]
pub struct AppOptions {
    pub env: HashMap<String, String>,
    pub args: Vec<String>,
    /// Reuse this database instead of creating one (restart tests).
    pub db: Option<TestDb>,
    /// Leave out the admin token (auth tests).
    pub no_token: bool,
}

impl AppOptions {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    pub fn db(mut self, db: TestDb) -> Self {
        self.db = Some(db);
        self
    }
}

/// An HTTP client aimed at one running server, with the admin token at hand.
pub struct Api {
    pub base: String,
    pub client: awc::Client,
}

impl Api {
    pub fn new(base: String) -> Self {
        Self {
            base,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(60))
                .finish(),
        }
    }
}

/// The application running in this process (see `spawn_app`).
pub struct TestApp {
    pub api: Api,
    pub db: Option<TestDb>,
    pub accounts: actors::supervisor::ActorHandle<actors::accounts::AccountsActor>,
    pub secrets: actors::supervisor::ActorHandle<actors::secrets::SecretsActor>,
    shutdown: Arc<Notify>,
    stopped: actix_rt::task::JoinHandle<Result<(), service_layer::error::StartupError>>,
    arbiters: Vec<actix::ArbiterHandle>,
}

impl Drop for TestApp {
    /// A test that ends without `stop()` would leave its actors running on their own
    /// thread, polling (and holding connections to) a database nobody uses any more.
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, AppOptions::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: AppOptions) -> TestApp {
    init_test_logging();
    let db = match (backend, options.db) {
        (Backend::Memory, _) => None,
        (Backend::Postgres, Some(db)) => Some(db),
        (Backend::Postgres, None) => Some(TestDb::migrated().await),
    };
    let mut env = options.env;
    if let Some(db) = &db {
        env.insert("DATABASE_URL".to_owned(), db.url.clone());
        env.entry("SECRET_ENCRYPTION_KEY".to_owned())
            .or_insert_with(|| KEY.to_owned());
    }
    let mut args = vec![
        "appserver".to_owned(),
        "--addr".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    if !options.no_token {
        args.extend(["--api-tokens".to_owned(), TOKEN.to_owned()]);
    }
    args.extend(options.args);
    let mut invocation =
        service_layer::settings::load(&args, &|k| env.get(k).cloned()).expect("test settings");
    // This process is the test harness: workers are the real binary in worker mode.
    invocation.settings.executor.worker_program = Some(env!("CARGO_BIN_EXE_appserver").into());
    let app = Application::build(invocation.settings)
        .await
        .expect("application starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_trigger();
    let accounts = app.accounts();
    let secrets = app.secrets();
    let arbiters = app.arbiters();
    let stopped = actix_rt::spawn(app.run_until_stopped());
    TestApp {
        api: Api::new(base),
        db,
        accounts,
        secrets,
        shutdown,
        stopped,
        arbiters,
    }
}

/// Set `TEST_LOG=debug` to see the application's logs in test output.
fn init_test_logging() {
    if let Ok(level) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(level)
            .with_test_writer()
            .try_init();
    }
}

/// A response with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: awc::http::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_owned())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status and the exact `{"error","code"}` body.
    pub fn assert_error(&self, status: u16, code: &str, message: &str) {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body {}",
            self.text()
        );
        assert_eq!(
            self.json(),
            serde_json::json!({"error": message, "code": code})
        );
    }
}

pub async fn read(
    mut res: awc::ClientResponse<
        impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
            + Unpin,
    >,
) -> Resp {
    let body = res.body().limit(64 << 20).await.expect("read body");
    Resp {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: body.to_vec(),
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request carrying the admin token.
    pub fn req(&self, method: Method, path: &str) -> awc::ClientRequest {
        self.client
            .request(method, self.url(path))
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Resp {
        let req = self.req(method, path);
        let res = match body {
            Some(b) => req.send_json(b).await,
            None => req.send().await,
        };
        read(res.expect("request sent")).await
    }

    /// GET with a raw `Authorization` header value (`None`: no header at all).
    pub async fn get_as(&self, authorization: Option<&str>, path: &str) -> Resp {
        let mut req = self.client.get(self.url(path));
        if let Some(value) = authorization {
            req = req.insert_header(("Authorization", value));
        }
        read(req.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates an account and returns its JSON.
    pub async fn create_account(&self, owner: &str) -> Value {
        let res = self
            .post("/accounts", &serde_json::json!({"owner": owner}))
            .await;
        assert_eq!(res.status, 201, "{}", res.text());
        res.json()
    }

    /// Creates an account and returns its id.
    pub async fn create_account_id(&self, owner: &str) -> String {
        self.create_account(owner).await["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }
}

impl TestApp {
    /// Orderly shutdown, as on SIGTERM; waits until it has finished.
    pub async fn stop(mut self) {
        self.shutdown.notify_one();
        (&mut self.stopped)
            .await
            .expect("app task")
            .expect("clean shutdown");
    }
}

/// The real binary, with a clean environment apart from what the test sets.
pub fn appserver() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_appserver"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SECRET_ENCRYPTION_KEY", KEY)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// Waits for a child process, killing it after `limit` (a hang guard: the caller
/// asserts that it did not hang, never how fast it was).
pub async fn wait_with_limit(
    mut child: std::process::Child,
    limit: Duration,
) -> (Option<i32>, String, String) {
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read as _;
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    (status, stdout, stderr)
}

/// A real `appserver` process on a free port, in memory mode unless the environment
/// given says otherwise; killed when dropped. For what only a separate process shows:
/// its own memory, its worker processes, signals.
pub struct ServerProcess {
    pub api: Api,
    child: std::process::Child,
}

impl ServerProcess {
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut cmd = appserver();
        cmd.args([
            "--api-tokens",
            TOKEN,
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .env("LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let server = Self {
            api: Api::new(format!("http://127.0.0.1:{port}")),
            child: cmd.spawn().expect("start appserver"),
        };
        for _ in 0..600 {
            if let Ok(res) = server.client.get(server.url("/readyz")).send().await {
                if res.status() == 200 {
                    return server;
                }
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("appserver on port {port} never became ready");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's direct children (its executor workers).
    pub fn children(&self) -> Vec<u32> {
        let me = self.pid().to_string();
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                // `pid (comm) state ppid …`; comm may hold spaces, so split after it.
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| {
                        let rest = stat.rsplit_once(')')?.1.to_owned();
                        rest.split_whitespace().nth(1).map(|p| p == me)
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Peak resident memory of the server process so far (`VmHWM`), bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("process status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kib * 1024
    }
}

impl std::ops::Deref for ServerProcess {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (for binaries that must be told their port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Generates a memory and a PostgreSQL test from one `async fn(Backend)`.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[actix_web::test]
                async fn memory() {
                    super::$name($crate::helpers::Backend::Memory).await;
                }

                #[actix_web::test]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            }
        )*
    };
}

/// The `items` of the list at `path`, polled until `done` holds (a hang guard, not a
/// timing assertion).
pub async fn items_until(
    app: &TestApp,
    path: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    for _ in 0..400 {
        let items = app.get(path).await.json()["items"]
            .as_array()
            .unwrap()
            .clone();
        if done(&items) {
            return items;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "{path} never reached the expected state: {}",
        app.get(path).await.text()
    );
}

/// Every store of `backend` (PostgreSQL: a fresh migrated database) with one account in
/// it, and the instant it was created at: for tests of a store's own guarantees.
pub async fn stores_with_account(
    backend: Backend,
) -> (
    actors::stores::Stores,
    actors::accounts::Account,
    chrono::DateTime<chrono::Utc>,
) {
    let stores = match backend {
        Backend::Memory => actors::stores::Stores::memory(1000),
        Backend::Postgres => {
            let db = TestDb::migrated().await;
            let options = actors::store::postgres::PgOptions {
                max_connections: 4,
                connect_timeout: Duration::from_secs(5),
            };
            let pool = actors::store::postgres::connect(&db.url, &options)
                .await
                .expect("connect to the test database");
            actors::stores::Stores::postgres(pool)
        }
    };
    let now = actors::clock::truncate_micros(chrono::Utc::now());
    let account = actors::accounts::Account::new("o", now);
    stores
        .accounts
        .insert(&account)
        .await
        .expect("insert the account");
    (stores, account, now)
}

/// Sends `first` and `second` as PATCHes to every path at once (a pair per path, racing)
/// and checks each answered 200: what the tests of PATCHes under the row lock start with.
pub async fn race_patches(app: &TestApp, paths: &[String], first: &Value, second: &Value) {
    let patches = paths.iter().flat_map(|path| {
        [
            app.send(Method::PATCH, path, Some(first)),
            app.send(Method::PATCH, path, Some(second)),
        ]
    });
    for res in futures_util::future::join_all(patches).await {
        assert_eq!(res.status, 200, "{}", res.text());
    }
}
