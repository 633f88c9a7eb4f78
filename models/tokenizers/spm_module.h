#pragma once
// Finds and loads the SentencePiece module (spm_module_api.h) on first use.
#include "models/tokenizers/spm_module_api.h"

namespace kvs {

// The module's API. Looks in $KVSIEVE_SPM_MODULE, beside the executable, then in the build
// tree; throws kvs::Error naming every path tried when none loads.
const SpmModuleApi& spm_module();

}  // namespace kvs
