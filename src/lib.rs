//! botilyx-media: stores and serves Botilyx users' medication and treatment photos from a
//! persistent folder, one sub-folder per collection, at the URLs the web app already uses.
//!
//! How a request flows is in [`routes`]; start-up and the shared `App` are in [`app`].

pub mod access_log;
pub mod app;
pub mod auth;
pub mod check;
pub mod config;
pub mod error;
pub mod file_body;
pub mod file_cache;
pub mod folder_check;
pub mod folder_sync;
pub mod image_type;
pub mod metrics;
pub mod naming;
pub mod routes;
pub mod staging;
pub mod storage;

pub use app::{serve, start};
pub use config::{Cli, Command, Config};
