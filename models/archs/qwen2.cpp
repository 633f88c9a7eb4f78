// qwen2: Qwen1.5/2/2.5. NEOX RoPE and q/k/v biases.
#include "models/formats/metadata.h"
#include "models/model/arch.h"

namespace kvs {
namespace {

const ArchRegistrar kQwen2({"qwen2", [](const MetaMap&, ModelConfig& c) {
                              c.rope_neox = true;
                              c.activation = Activation::Silu;
                              c.attn_bias = true;
                            }});

}  // namespace
}  // namespace kvs
