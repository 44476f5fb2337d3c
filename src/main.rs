//! Entry point: parses the command line and dispatches to the window or a headless command.

use clap::Parser;

use model_library::app::{AppOptions, run_window};
use model_library::cli::{Cli, run};

fn main() {
    model_library::library::memory::limit_arenas();
    let cli = Cli::parse();
    let code = match cli.command {
        Some(command) => run(cli.library, cli.no_sources, command),
        None => run_window(AppOptions {
            library: cli.library,
            settings: None,
            stores: !cli.no_sources,
            watch: cli.watch,
        }),
    };
    std::process::exit(code);
}
