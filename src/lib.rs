//! Model Library: a desktop app, CLI and local HTTP API over the AI models kept in one
//! library folder. See `ARCHITECTURE.md` for the map.

pub mod app;
pub mod cli;
pub mod fixtures;
pub mod library;
pub mod server;
pub mod util;
