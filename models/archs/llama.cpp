// llama: Llama 2/3, TinyLlama, SmolLM/SmolLM2, Mistral. Interleaved (NORM) RoPE on GGUF
// weights, whose Q/K rows the converter permuted; HF weights set kvsieve.rope_neox.
#include "models/formats/metadata.h"
#include "models/model/arch.h"

namespace kvs {
namespace {

const ArchRegistrar kLlama({"llama", [](const MetaMap&, ModelConfig& c) {
                              c.rope_neox = false;
                              c.activation = Activation::Silu;
                              c.attn_bias = true;  // some llama-arch files carry q/k/v biases
                            }});

}  // namespace
}  // namespace kvs
