//! What fits this machine: the memory a model needs to run at a context length, estimated
//! from its size and its header, and the machine's memory to set it beside.
//!
//! The estimate (an approximation, said as such wherever it is shown):
//! `weights + kv_bytes_per_token × context + overhead`, where the weights are the model's
//! bytes on disk (a GGUF file is loaded as it is stored), the attention cache is the
//! header's per-token figure ([`ModelMetadata::kv_bytes_per_token`], f16 as llama.cpp
//! allocates it by default) and the overhead stands for compute buffers and the runtime:
//! [`OVERHEAD_BASE`] plus [`OVERHEAD_PERCENT`] of the weights (our own round figure:
//! gguf-parser and LM Studio's estimates add compute and output buffers of this order).
//! Sliding-window attention (Gemma 2/3), compressed caches (DeepSeek's MLA) and recurrent
//! models need less cache than this says; quantized caches need less too.
//!
//! Owns: the estimate and reading the machine's memory (`/proc/meminfo`; AMD GPUs'
//! `mem_info_vram_total` under `/sys/class/drm`). Must not touch anything else.

use std::path::Path;

use crate::library::model::{ModelInfo, ModelMetadata};

/// The context a runner gives a model unless told otherwise (llama.cpp's and Ollama's
/// default of 4096 tokens), capped at the model's own context length.
pub const DEFAULT_CONTEXT: u64 = 4096;
/// Fixed part of the overhead: 256 MiB.
pub const OVERHEAD_BASE: u64 = 256 << 20;
/// Part of the overhead that grows with the weights, percent.
pub const OVERHEAD_PERCENT: u64 = 5;
/// The contexts the estimate is shown at besides the default.
pub const SHOWN_CONTEXTS: [u64; 2] = [8192, 32768];

/// The memory this machine offers a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Machine {
    /// Installed RAM, bytes (`MemTotal`).
    pub ram_bytes: u64,
    /// The largest GPU's own memory, bytes, where the system reports it (AMD's
    /// `mem_info_vram_total`; NVIDIA's driver only through its own `nvidia-smi`).
    pub gpu_bytes: Option<u64>,
}

impl Machine {
    /// Reads this machine's memory (Linux; elsewhere RAM is 0, which fits nothing). An
    /// NVIDIA GPU's memory is asked of `nvidia-smi` when it is installed (its driver puts
    /// no size under `/proc` or `/sys`).
    pub fn read() -> Machine {
        let mut m = Machine::read_from(Path::new("/proc/meminfo"), Path::new("/sys/class/drm"));
        let nvidia = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=memory.total", "--format=csv,noheader,nounits"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| nvidia_total(&String::from_utf8_lossy(&o.stdout)));
        m.gpu_bytes = m.gpu_bytes.max(nvidia);
        m
    }

    /// [`Machine::read`] from other files (tests).
    pub fn read_from(meminfo: &Path, drm: &Path) -> Machine {
        let ram_bytes = std::fs::read_to_string(meminfo)
            .ok()
            .and_then(|t| mem_total(&t))
            .unwrap_or(0);
        let gpu_bytes = std::fs::read_dir(drm)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|card| {
                std::fs::read_to_string(card.path().join("device/mem_info_vram_total")).ok()
            })
            .filter_map(|t| t.trim().parse::<u64>().ok())
            .max();
        Machine {
            ram_bytes,
            gpu_bytes,
        }
    }

    /// Whether `need` bytes fit: in the GPU's memory, or in RAM with a tenth kept for the
    /// system and the programs already running.
    pub fn fits(&self, need: u64) -> bool {
        need <= self.ram_bytes / 10 * 9 || self.gpu_bytes.is_some_and(|g| need <= g)
    }
}

/// The largest GPU's memory from `nvidia-smi --query-gpu=memory.total
/// --format=csv,noheader,nounits` (MiB, one line per GPU), bytes.
pub fn nvidia_total(out: &str) -> Option<u64> {
    out.lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max()
        .and_then(|mib| mib.checked_mul(1 << 20))
}

/// `MemTotal` of `/proc/meminfo`, bytes (the file says kB, meaning KiB).
pub fn mem_total(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?.trim();
        let kib: u64 = rest.strip_suffix("kB")?.trim().parse().ok()?;
        kib.checked_mul(1024)
    })
}

/// The context a model runs at by default: [`DEFAULT_CONTEXT`], or less when the model's
/// own context is shorter.
pub fn default_context(meta: &ModelMetadata) -> u64 {
    meta.context_length
        .filter(|&c| c > 0)
        .map_or(DEFAULT_CONTEXT, |c| c.min(DEFAULT_CONTEXT))
}

/// Estimated bytes to run `model` at `context` tokens; `None` when its size or its
/// per-token cache is unknown.
pub fn estimate(model: &ModelInfo, context: u64) -> Option<u64> {
    let weights = model.size_bytes()?;
    let kv = model.metadata.as_ref()?.kv_bytes_per_token?;
    let overhead = OVERHEAD_BASE.saturating_add(weights / 100 * OVERHEAD_PERCENT);
    Some(
        weights
            .saturating_add(kv.saturating_mul(context))
            .saturating_add(overhead),
    )
}

/// Whether `model` fits `machine` at its default context; `None` when it cannot be told.
pub fn fits(model: &ModelInfo, machine: &Machine) -> Option<bool> {
    let ctx = default_context(model.metadata.as_ref()?);
    estimate(model, ctx).map(|need| machine.fits(need))
}
