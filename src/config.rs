//! Command line and environment: parsed once by clap, validated once into [`Config`].
//!
//! Every flag has an environment variable (`MEDIA_*`); a flag given on the command line wins
//! over its variable. A value that cannot work stops the program at start with a message that
//! names the flag, the value and how to fix it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::TokenSource;
use crate::image_type::ImageType;

/// Names a collection may not take, because a route of the service already uses them.
const RESERVED_COLLECTIONS: &[&str] = &["healthz", "readyz", "metrics", "static", "openapi"];

/// The most files one upload request may carry.
pub const MAX_FILES_PER_REQUEST: usize = 10;

/// `botilyx-media`: stores and serves Botilyx users' medication and treatment photos.
#[derive(Debug, Parser)]
#[command(name = "botilyx-media", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub options: Options,
}

/// What to do; `serve` when none is given.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Check every collection folder (exists, owner, writable now, mount, free space) and exit
    /// non-zero unless all are OK.
    Check {
        /// Print the findings as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running server's /healthz on the local port of --bind; exit 0 when it answers 200.
    Healthcheck,
}

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Address and port to listen on.
    #[arg(
        long,
        env = "MEDIA_BIND",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub bind: SocketAddr,

    /// Folder that holds one sub-folder per collection (the persistent volume).
    #[arg(long, env = "MEDIA_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// Comma-separated collection names ([a-z0-9-]); each is served at /<name>/ and stored in
    /// <data-dir>/<name>/.
    #[arg(
        long,
        env = "MEDIA_COLLECTIONS",
        default_value = "medications,treatment-images",
        value_delimiter = ',',
        value_parser = parse_collection,
        global = true
    )]
    pub collections: Vec<String>,

    /// Largest file accepted in an upload, in bytes (per file).
    #[arg(long, env = "MEDIA_MAX_UPLOAD_BYTES", default_value_t = 20 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub max_upload_bytes: u64,

    /// Bearer token that uploads and deletes must present. Prefer --upload-token-file.
    #[arg(
        long,
        env = "MEDIA_UPLOAD_TOKEN",
        hide_env_values = true,
        conflicts_with = "upload_token_file",
        global = true
    )]
    pub upload_token: Option<String>,

    /// File holding the upload token (a mounted Kubernetes Secret); read on every write, so a
    /// rotated Secret takes effect without a restart. Trailing white space is ignored.
    #[arg(long, env = "MEDIA_UPLOAD_TOKEN_FILE", global = true)]
    pub upload_token_file: Option<PathBuf>,

    /// Comma-separated image types accepted in uploads.
    #[arg(
        long,
        env = "MEDIA_ALLOWED_TYPES",
        default_value = "jpeg,png,webp,gif,avif,heic",
        value_delimiter = ',',
        value_parser = parse_image_type,
        global = true
    )]
    pub allowed_types: Vec<ImageType>,

    /// Seconds that in-flight requests get to finish after SIGTERM.
    #[arg(
        long,
        env = "MEDIA_SHUTDOWN_GRACE_SECS",
        default_value_t = 25,
        global = true
    )]
    pub shutdown_grace_secs: u64,

    /// Seconds an upload body may stay silent before the request is cut off.
    #[arg(long, env = "MEDIA_BODY_IDLE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub body_idle_secs: u64,

    /// Seconds a whole upload request may take, however steadily its body arrives.
    #[arg(long, env = "MEDIA_UPLOAD_TIMEOUT_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub upload_timeout_secs: u64,

    /// Worker threads serving requests (default: one per CPU core).
    #[arg(long, env = "MEDIA_WORKERS", value_parser = clap::value_parser!(u16).range(1..),
          global = true)]
    pub workers: Option<u16>,
}

/// The validated configuration every part of the service reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub collections: Vec<String>,
    pub max_upload_bytes: u64,
    pub token: TokenSource,
    pub allowed_types: Vec<ImageType>,
    pub shutdown_grace: Duration,
    pub body_idle: Duration,
    pub upload_timeout: Duration,
    pub workers: usize,
}

/// A configuration that cannot work; the message names the flag and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Validates what clap could not check on a single value.
    ///
    /// # Errors
    /// Duplicate collections, an empty token, or a token file that cannot be read.
    pub fn from_options(options: Options) -> Result<Self, ConfigError> {
        let mut collections = Vec::new();
        for name in options.collections {
            if collections.contains(&name) {
                return Err(ConfigError(format!(
                    "--collections (MEDIA_COLLECTIONS) names {name:?} twice; list each collection once"
                )));
            }
            collections.push(name);
        }

        let token = match (options.upload_token, options.upload_token_file) {
            (Some(token), _) if token.trim().is_empty() => {
                return Err(ConfigError(
                    "--upload-token (MEDIA_UPLOAD_TOKEN) is empty; set a long random value or leave it unset"
                        .into(),
                ));
            }
            (Some(token), _) => TokenSource::Inline(token.trim().to_owned()),
            (None, Some(path)) => {
                let source = TokenSource::File(path);
                source.current().map_err(|e| {
                    ConfigError(format!(
                        "--upload-token-file (MEDIA_UPLOAD_TOKEN_FILE): {e}; point it at a readable, non-empty file"
                    ))
                })?;
                source
            }
            (None, None) => TokenSource::None,
        };

        let mut allowed_types = options.allowed_types;
        allowed_types.dedup();

        let workers = match options.workers {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };

        Ok(Config {
            bind: options.bind,
            data_dir: options.data_dir,
            collections,
            max_upload_bytes: options.max_upload_bytes,
            token,
            allowed_types,
            shutdown_grace: Duration::from_secs(options.shutdown_grace_secs),
            body_idle: Duration::from_secs(options.body_idle_secs),
            upload_timeout: Duration::from_secs(options.upload_timeout_secs),
            workers,
        })
    }
}

fn parse_collection(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(format!(
            "{value:?} is not a collection name: use 1 to 64 of a-z, 0-9 and '-'"
        ));
    }
    if RESERVED_COLLECTIONS.contains(&value) {
        return Err(format!(
            "{value:?} is used by a route of the service; pick another collection name"
        ));
    }
    Ok(value.to_owned())
}

fn parse_image_type(value: &str) -> Result<ImageType, String> {
    ImageType::from_config_name(value.trim()).ok_or_else(|| {
        format!(
            "{value:?} is not a supported image type: choose from jpeg, png, webp, gif, avif, heic"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["botilyx-media"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::from_options(cli.options).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_documented_table() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.bind.to_string(), "0.0.0.0:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.collections, ["medications", "treatment-images"]);
        assert_eq!(config.max_upload_bytes, 20_971_520);
        assert_eq!(config.allowed_types.len(), 6);
        assert_eq!(config.shutdown_grace, Duration::from_secs(25));
    }

    #[test]
    fn invalid_values_name_the_flag_and_the_value() {
        let cases: &[(&[&str], &str, &str)] = &[
            (&["--bind", "nonsense"], "--bind", "nonsense"),
            (&["--collections", "Bad_Name"], "--collections", "Bad_Name"),
            (&["--collections", "healthz"], "--collections", "healthz"),
            (&["--collections", "a,a"], "--collections", "\"a\""),
            (&["--max-upload-bytes", "0"], "--max-upload-bytes", "0"),
            (&["--allowed-types", "svg"], "--allowed-types", "svg"),
            (&["--upload-token", " "], "--upload-token", "empty"),
            (
                &["--upload-token-file", "/nonexistent/token"],
                "--upload-token-file",
                "/nonexistent/token",
            ),
        ];
        for (args, flag, value) in cases {
            let message = parse(args).expect_err("must be refused");
            assert!(message.contains(flag), "{args:?}: {message}");
            assert!(message.contains(value), "{args:?}: {message}");
        }
    }
}
