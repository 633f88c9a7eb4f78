#include "models/tokenizers/sp_model_proto.h"

#include <cstring>

#include "kernels/core/error.h"

namespace kvs {

namespace {

enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

class Reader {
 public:
  Reader(std::string_view data, const std::string& source, const char* what)
      : d_(data), source_(source), what_(what) {}
  bool done() const { return pos_ >= d_.size(); }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= d_.size()) fail("truncated varint");
      const auto b = static_cast<uint8_t>(d_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail("varint longer than 10 bytes");
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > d_.size() - pos_) fail("length-delimited field runs past the end");
    const std::string_view s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  float fixed32_float() {
    if (d_.size() - pos_ < 4) fail("truncated fixed32");
    uint32_t u = 0;
    for (int i = 0; i < 4; ++i)
      u |= static_cast<uint32_t>(static_cast<uint8_t>(d_[pos_ + i])) << (8 * i);
    pos_ += 4;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case kVarint:
        varint();
        break;
      case kFixed64:
        if (d_.size() - pos_ < 8) fail("truncated fixed64");
        pos_ += 8;
        break;
      case kBytes:
        bytes();
        break;
      case kFixed32:
        if (d_.size() - pos_ < 4) fail("truncated fixed32");
        pos_ += 4;
        break;
      default:
        fail("unsupported wire type " + std::to_string(wire));
    }
  }
  // Reads a tag; returns false at the end.
  bool tag(uint32_t& field, uint32_t& wire) {
    if (done()) return false;
    const uint64_t t = varint();
    field = static_cast<uint32_t>(t >> 3);
    wire = static_cast<uint32_t>(t & 7);
    if (field == 0) fail("field number 0");
    return true;
  }
  void expect(uint32_t wire, uint32_t want, uint32_t field) {
    if (wire != want)
      fail("field " + std::to_string(field) + " has wire type " + std::to_string(wire));
  }
  [[noreturn]] void fail(const std::string& why) const {
    throw Error(source_ + ": not a SentencePiece model (" + what_ + ": " + why + ")");
  }

 private:
  std::string_view d_;
  size_t pos_ = 0;
  const std::string& source_;
  const char* what_;
};

int32_t as_int32(uint64_t v) {
  return static_cast<int32_t>(static_cast<int64_t>(v));
}

class Writer {
 public:
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out_ += static_cast<char>((v & 0x7F) | 0x80);
      v >>= 7;
    }
    out_ += static_cast<char>(v);
  }
  void tag(uint32_t field, uint32_t wire) { varint((static_cast<uint64_t>(field) << 3) | wire); }
  // int32 fields are sign-extended to 64 bits on the wire (negative ids take 10 bytes).
  void int32_field(uint32_t field, int32_t v) {
    tag(field, kVarint);
    varint(static_cast<uint64_t>(static_cast<int64_t>(v)));
  }
  void bool_field(uint32_t field, bool v) {
    tag(field, kVarint);
    varint(v ? 1 : 0);
  }
  void bytes_field(uint32_t field, std::string_view s) {
    tag(field, kBytes);
    varint(s.size());
    out_.append(s);
  }
  void float_field(uint32_t field, float f) {
    tag(field, kFixed32);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    for (int i = 0; i < 4; ++i) out_ += static_cast<char>((u >> (8 * i)) & 0xFF);
  }
  std::string& str() { return out_; }

 private:
  std::string out_;
};

}  // namespace

SpModelProto parse_sp_model(std::string_view bytes, const std::string& source) {
  SpModelProto m;
  Reader r(bytes, source, "ModelProto");
  uint32_t field = 0, wire = 0;
  while (r.tag(field, wire)) {
    if (field == 1) {
      r.expect(wire, kBytes, field);
      Reader p(r.bytes(), source, "SentencePiece");
      SpModelProto::Piece piece;
      uint32_t f = 0, w = 0;
      while (p.tag(f, w)) {
        if (f == 1) {
          p.expect(w, kBytes, f);
          piece.piece = std::string(p.bytes());
        } else if (f == 2) {
          p.expect(w, kFixed32, f);
          piece.score = p.fixed32_float();
        } else if (f == 3) {
          p.expect(w, kVarint, f);
          piece.type = as_int32(p.varint());
        } else {
          p.skip(w);
        }
      }
      m.pieces.push_back(std::move(piece));
    } else if (field == 2) {
      r.expect(wire, kBytes, field);
      Reader t(r.bytes(), source, "TrainerSpec");
      uint32_t f = 0, w = 0;
      while (t.tag(f, w)) {
        auto int_field = [&](int32_t& dst) {
          t.expect(w, kVarint, f);
          dst = as_int32(t.varint());
        };
        auto str_field = [&](std::string& dst) {
          t.expect(w, kBytes, f);
          dst = std::string(t.bytes());
        };
        switch (f) {
          case 3:
            int_field(m.model_type);
            break;
          case 4:
            int_field(m.vocab_size);
            break;
          case 24:
            t.expect(w, kVarint, f);
            m.treat_whitespace_as_suffix = t.varint() != 0;
            break;
          case 35:
            t.expect(w, kVarint, f);
            m.byte_fallback = t.varint() != 0;
            break;
          case 40:
            int_field(m.unk_id);
            break;
          case 41:
            int_field(m.bos_id);
            break;
          case 42:
            int_field(m.eos_id);
            break;
          case 43:
            int_field(m.pad_id);
            break;
          case 45:
            str_field(m.unk_piece);
            break;
          case 46:
            str_field(m.bos_piece);
            break;
          case 47:
            str_field(m.eos_piece);
            break;
          case 48:
            str_field(m.pad_piece);
            break;
          default:
            t.skip(w);
        }
      }
    } else if (field == 3) {
      r.expect(wire, kBytes, field);
      Reader n(r.bytes(), source, "NormalizerSpec");
      uint32_t f = 0, w = 0;
      while (n.tag(f, w)) {
        switch (f) {
          case 1:
            n.expect(w, kBytes, f);
            m.normalizer_name = std::string(n.bytes());
            break;
          case 2:
            n.expect(w, kBytes, f);
            m.precompiled_charsmap = std::string(n.bytes());
            break;
          case 3:
            n.expect(w, kVarint, f);
            m.add_dummy_prefix = n.varint() != 0;
            break;
          case 4:
            n.expect(w, kVarint, f);
            m.remove_extra_whitespaces = n.varint() != 0;
            break;
          case 5:
            n.expect(w, kVarint, f);
            m.escape_whitespaces = n.varint() != 0;
            break;
          default:
            n.skip(w);
        }
      }
    } else {
      r.skip(wire);
    }
  }
  if (m.pieces.empty()) r.fail("no pieces");
  return m;
}

std::string serialize_sp_model(const SpModelProto& m) {
  Writer out;
  for (const auto& p : m.pieces) {
    Writer w;
    w.bytes_field(1, p.piece);
    w.float_field(2, p.score);
    w.int32_field(3, p.type);
    out.bytes_field(1, w.str());
  }
  {
    Writer t;
    t.int32_field(3, m.model_type);
    t.int32_field(4, m.vocab_size);
    t.bool_field(24, m.treat_whitespace_as_suffix);
    t.bool_field(35, m.byte_fallback);
    t.int32_field(40, m.unk_id);
    t.int32_field(41, m.bos_id);
    t.int32_field(42, m.eos_id);
    t.int32_field(43, m.pad_id);
    t.bytes_field(45, m.unk_piece);
    t.bytes_field(46, m.bos_piece);
    t.bytes_field(47, m.eos_piece);
    t.bytes_field(48, m.pad_piece);
    out.bytes_field(2, t.str());
  }
  {
    Writer n;
    n.bytes_field(1, m.normalizer_name);
    if (!m.precompiled_charsmap.empty()) n.bytes_field(2, m.precompiled_charsmap);
    n.bool_field(3, m.add_dummy_prefix);
    n.bool_field(4, m.remove_extra_whitespaces);
    n.bool_field(5, m.escape_whitespaces);
    out.bytes_field(3, n.str());
  }
  return std::move(out.str());
}

}  // namespace kvs
