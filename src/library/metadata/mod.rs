//! Reading model metadata from file headers (GGUF, safetensors, Ollama config blobs).
//! (Being written: see issue 8.)
