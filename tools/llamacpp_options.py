"""Settings shared by the scripts that run llama.cpp (llama-cpp-python) as the oracle."""


def disable_repack():
    """Makes llama.cpp keep weights in their GGUF block layout (llama-cli's --no-repack).

    By default llama.cpp repacks some types at load time into interleaved layouts
    (q4_K_8x8, q6_K_8x8, ...) whose kernels it picks by CPU feature and changes between
    releases; on Gemma 3 Q4_K_M the two settings of one build agree only to top-1 0.947.
    The plain per-block dot products of ggml-cpu's quants are the stable reference.
    Llama() takes no such flag, so the default parameters it starts from are patched.
    """
    import llama_cpp.llama_cpp as api  # the module Llama() calls through

    default = api.llama_model_default_params

    def no_repack():
        p = default()
        p.use_extra_bufts = False
        return p

    api.llama_model_default_params = no_repack
