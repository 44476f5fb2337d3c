//! Entry point: parses the command line and dispatches to the window or a headless command.

use clap::Parser;

use model_library::cli::{Cli, run};

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(command) => run(cli.library, cli.no_sources, command),
        None => model_library::app::run_window(cli.library, cli.no_sources),
    };
    std::process::exit(code);
}
