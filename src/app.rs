//! Start-up and the application: prepare the data folder, build the one `App` that the binary
//! and the tests both run, and serve until SIGTERM lets in-flight requests finish.

use std::net::SocketAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::{Context, bail};

use crate::access_log::access_log;
use crate::config::Config;
use crate::error::ApiError;
use crate::file_cache::FileCache;
use crate::folder_check::{FolderReport, Verdict};
use crate::metrics::Metrics;
use crate::routes;
use crate::staging::UploadRules;
use crate::storage::{self, Storage};

/// Connections the kernel may queue before the server accepts them.
const LISTEN_BACKLOG: u32 = 4096;

/// What every handler reads.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub storage: Storage,
    pub rules: UploadRules,
    pub metrics: Metrics,
    pub cache: FileCache,
}

impl AppState {
    pub fn new(config: Config, storage: Storage) -> web::Data<Self> {
        let rules = UploadRules {
            max_bytes: config.max_upload_bytes,
            allowed: config.allowed_types.clone(),
        };
        let metrics = Metrics::new(storage.collections().map(|c| c.name.as_str()));
        web::Data::new(AppState {
            config,
            storage,
            rules,
            metrics,
            cache: FileCache::default(),
        })
    }
}

/// The application: state, path errors as JSON, the access log, and the routes.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::InvalidPath.into()))
        .wrap(from_fn(access_log))
        .configure(routes::configure)
}

/// Makes every collection folder ready, or explains why it cannot be.
///
/// Creates missing folders, proves each writable with a probe file, removes temporary uploads a
/// crash left behind, and logs each folder with its free space.
///
/// # Errors
/// A folder that is missing or not writable: the message names the path, owner, mode, the
/// process's ids and the fix.
pub fn prepare_storage(config: &Config) -> anyhow::Result<Storage> {
    let storage = Storage::new(&config.data_dir, &config.collections);

    let mut failures = Vec::new();
    for collection in storage.collections() {
        let report = FolderReport::inspect(collection, true);
        match report.verdict {
            Verdict::Ok => {}
            Verdict::Ephemeral => log::warn!("{}", report.explain()),
            Verdict::Missing | Verdict::NotWritable => {
                failures.push(report.explain());
                continue;
            }
        }

        let removed = storage::remove_stale_uploads(&collection.dir)
            .with_context(|| format!("removing interrupted uploads from {:?}", collection.dir))?;
        if removed > 0 {
            log::warn!(
                "removed {removed} temporary file(s) left by interrupted uploads in {:?}",
                collection.dir
            );
        }
        log::info!(
            "collection {:?} at {:?}: {} free",
            collection.name,
            report.path,
            report.free_bytes.map_or("unknown".to_owned(), human_bytes)
        );
    }
    if !failures.is_empty() {
        bail!("cannot start: {}", failures.join("\n"));
    }
    Ok(storage)
}

/// Prepares storage, binds the listener and builds the server; the caller awaits it.
///
/// # Errors
/// Storage that cannot be written, or an address that cannot be bound.
pub fn start(config: Config) -> anyhow::Result<(Server, SocketAddr)> {
    let storage = prepare_storage(&config)?;
    if !config.token.is_configured() {
        log::warn!(
            "no upload token is set: only loopback clients may upload or delete (set --upload-token-file)"
        );
    }

    let bind = config.bind;
    let workers = config.workers;
    let grace = config.shutdown_grace;
    let state = AppState::new(config, storage);

    // NOTE: actix binds with a deep accept queue; a plain std listener gets 128, which a browser
    // opening a page of photos through a busy ingress can overflow.
    let server = HttpServer::new(move || app(state.clone()))
        .workers(workers)
        .backlog(LISTEN_BACKLOG)
        .shutdown_timeout(grace.as_secs())
        .bind(bind)
        .with_context(|| format!("--bind {bind}: cannot listen on this address"))?;
    let address = server
        .addrs()
        .first()
        .copied()
        .context("no address was bound")?;
    let server = server.run();

    log::info!("listening on http://{address}");
    Ok((server, address))
}

/// Runs the server until it is stopped; SIGTERM lets in-flight requests finish within the grace
/// period.
///
/// # Errors
/// Start-up failures (see [`start`]) and server I/O errors.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let (server, _) = start(config)?;
    let result = server.await.context("server stopped with an error");
    crate::access_log::flush();
    result?;
    log::info!("stopped");
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
