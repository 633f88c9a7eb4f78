// qwen3: NEOX RoPE, no biases, per-head RMSNorm of Q and K before RoPE.
#include "models/formats/metadata.h"
#include "models/model/arch.h"

namespace kvs {
namespace {

const ArchRegistrar kQwen3({"qwen3", [](const MetaMap&, ModelConfig& c) {
                              c.rope_neox = true;
                              c.activation = Activation::Silu;
                              c.qk_norm = true;
                            }});

}  // namespace
}  // namespace kvs
