#pragma once
// <immintrin.h> for the files that use AVX-512 intrinsics. GCC 12 reports the intrinsics' own
// `_mm512_undefined_*()` pass-through operands as (maybe) uninitialized once they are inlined
// (GCC bug 105593, fixed in 13), so the header is read with those warnings off.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
