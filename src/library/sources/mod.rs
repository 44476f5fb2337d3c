//! Read-only model stores besides the library: the Hugging Face hub cache, Ollama and
//! LM Studio. (Being written: see issue 8.)
