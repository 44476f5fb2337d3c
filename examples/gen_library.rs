//! Generates a test library in the SPEC layout (sparse files, so it costs no disk).
//!
//! `cargo run --release --example gen_library -- DIR [--models N] [--files K] [--size BYTES]`

use std::path::PathBuf;

use clap::Parser;
use model_library::fixtures::{GenSpec, generate_library};

#[derive(Parser)]
struct Args {
    /// Library folder to create or fill.
    dir: PathBuf,
    /// Number of models.
    #[arg(long, default_value_t = 1000)]
    models: usize,
    /// Files per model.
    #[arg(long, default_value_t = 3)]
    files: usize,
    /// Size of each model's main file, bytes (sparse).
    #[arg(long, default_value_t = 64 << 20)]
    size: u64,
}

fn main() {
    let args = Args::parse();
    let spec = GenSpec {
        models: args.models,
        files_per_model: args.files,
        file_size: args.size,
    };
    match generate_library(&args.dir, &spec) {
        Ok(summary) => println!("{}: {summary:?}", args.dir.display()),
        Err(err) => {
            eprintln!("gen_library: error: {err}");
            std::process::exit(1);
        }
    }
}
