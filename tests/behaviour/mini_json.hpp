// A small JSON reader and writer for the behaviour suite's C++ driver: enough for the
// scenario table and the control channel (objects, arrays, strings with the common
// escapes, numbers, true/false/null). Not a general-purpose library.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mini_json {

struct Value {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string text;
  std::vector<Value> items;
  std::map<std::string, Value> members;

  bool is_null() const { return type == Type::kNull; }
  bool has(const std::string& key) const { return members.count(key) != 0; }
  // The member `key`; throws std::runtime_error naming the key when it is missing.
  const Value& at(const std::string& key) const {
    auto it = members.find(key);
    if (it == members.end()) throw std::runtime_error("missing JSON member '" + key + "'");
    return it->second;
  }
  const std::string& str() const {
    if (type != Type::kString) throw std::runtime_error("JSON value is not a string");
    return text;
  }
  double num() const {
    if (type != Type::kNumber) throw std::runtime_error("JSON value is not a number");
    return number;
  }
};

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}
  // Parses the whole input as one value; throws std::runtime_error with the offset.
  Value ParseAll() {
    Value v = ParseValue();
    SkipSpace();
    if (pos_ != s_.size()) Fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) {
    throw std::runtime_error("JSON: " + what + " at offset " + std::to_string(pos_));
  }
  void SkipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) {
      ++pos_;
    }
  }
  bool Eat(char c) {
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void Expect(char c) {
    if (!Eat(c)) Fail(std::string("expected '") + c + "'");
  }
  bool Word(const char* w) {
    const std::string word(w);
    if (s_.compare(pos_, word.size(), word) == 0) {
      pos_ += word.size();
      return true;
    }
    return false;
  }
  std::string ParseString() {
    Expect('"');
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      char c = s_[pos_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) Fail("unterminated escape");
      c = s_[pos_++];
      switch (c) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'u': {
          if (pos_ + 4 > s_.size()) Fail("short \\u escape");
          const unsigned code = static_cast<unsigned>(std::stoul(s_.substr(pos_, 4), nullptr, 16));
          pos_ += 4;
          if (code < 0x80) {
            out += static_cast<char>(code);
          } else if (code < 0x800) {
            out += static_cast<char>(0xC0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3F));
          } else {
            out += static_cast<char>(0xE0 | (code >> 12));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
          }
          break;
        }
        default:
          out += c;  // \" \\ \/
      }
    }
    if (pos_ >= s_.size()) Fail("unterminated string");
    ++pos_;
    return out;
  }
  Value ParseValue() {
    SkipSpace();
    if (pos_ >= s_.size()) Fail("unexpected end");
    Value v;
    const char c = s_[pos_];
    if (c == '{') {
      ++pos_;
      v.type = Value::Type::kObject;
      if (Eat('}')) return v;
      do {
        SkipSpace();
        std::string key = ParseString();
        Expect(':');
        v.members[key] = ParseValue();
      } while (Eat(','));
      Expect('}');
    } else if (c == '[') {
      ++pos_;
      v.type = Value::Type::kArray;
      if (Eat(']')) return v;
      do {
        v.items.push_back(ParseValue());
      } while (Eat(','));
      Expect(']');
    } else if (c == '"') {
      v.type = Value::Type::kString;
      v.text = ParseString();
    } else if (Word("true")) {
      v.type = Value::Type::kBool;
      v.boolean = true;
    } else if (Word("false")) {
      v.type = Value::Type::kBool;
    } else if (Word("null")) {
      v.type = Value::Type::kNull;
    } else {
      size_t used = 0;
      try {
        v.number = std::stod(s_.substr(pos_, 40), &used);
      } catch (const std::exception&) {
        Fail("bad value");
      }
      pos_ += used;
      v.type = Value::Type::kNumber;
    }
    return v;
  }

  const std::string& s_;
  size_t pos_ = 0;
};

inline Value Parse(const std::string& s) { return Parser(s).ParseAll(); }

// A JSON string literal for `s` (quotes included).
inline std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

}  // namespace mini_json
