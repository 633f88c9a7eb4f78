#pragma once
// The fields of SentencePiece's ModelProto (sentencepiece_model.proto) that kvsieve reads
// and writes, with a small protobuf wire-format codec: the library's headers do not expose
// the message types.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvs {

struct SpModelProto {
  struct Piece {
    std::string piece;
    float score = 0.0f;
    int32_t type = 1;  // NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6
  };
  std::vector<Piece> pieces;  // ModelProto.pieces = 1 {piece = 1, score = 2, type = 3}
  // TrainerSpec (ModelProto.trainer_spec = 2); defaults are the proto2 defaults.
  int32_t model_type = 1;                                   // = 3: UNIGRAM=1 BPE=2 WORD=3 CHAR=4
  int32_t vocab_size = 8000;                                // = 4
  bool treat_whitespace_as_suffix = false;                  // = 24
  bool byte_fallback = false;                               // = 35
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;  // = 40..43
  std::string unk_piece = "<unk>", bos_piece = "<s>", eos_piece = "</s>", pad_piece = "<pad>";
  // NormalizerSpec (ModelProto.normalizer_spec = 3).
  std::string normalizer_name;           // = 1
  std::string precompiled_charsmap;      // = 2
  bool add_dummy_prefix = true;          // = 3
  bool remove_extra_whitespaces = true;  // = 4
  bool escape_whitespaces = true;        // = 5
};

// Throws kvs::Error naming `source` on malformed wire data.
SpModelProto parse_sp_model(std::string_view bytes, const std::string& source);
std::string serialize_sp_model(const SpModelProto& m);

}  // namespace kvs
