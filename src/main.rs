//! Entry point: parses the command line and dispatches to the window or a headless command.

use clap::Parser;

use model_library::app::{AppOptions, run_window};
use model_library::cli::{Cli, Command, run, stores_of};

fn main() {
    let cli = Cli::parse();
    // Dates are shown in the user's time zone, read once here (never by the UI thread).
    model_library::util::load_local_zone();
    // Long-running processes (the window, `serve`) keep their memory lean; a one-shot
    // command would only pay for it in allocator contention.
    if matches!(cli.command, None | Some(Command::Serve(_))) {
        model_library::library::memory::tune_allocator();
    }
    let sources = stores_of(&cli);
    let store_overrides = model_library::cli::store_overrides(&cli);
    let redis = model_library::cli::redis_of(&cli);
    let code = match cli.command {
        Some(command) => run(cli.library, sources, redis, command),
        None => run_window(AppOptions {
            library: cli.library,
            settings: None,
            stores: !cli.no_sources,
            watch: cli.watch,
            store_overrides,
            redis,
        }),
    };
    std::process::exit(code);
}
