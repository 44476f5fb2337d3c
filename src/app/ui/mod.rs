//! One file per panel. Each `*_ui` function takes the data it shows and returns the user's
//! intent as an action enum; `app.rs` applies it. Panels never talk to the worker.

pub mod cache_panel;
pub mod details;
pub mod dialogs;
pub mod notices;
pub mod status_bar;
pub mod stores;
pub mod table;
pub mod toolbar;
