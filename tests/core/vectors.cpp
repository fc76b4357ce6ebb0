#include "vectors.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

namespace shmtest {

std::vector<uint8_t> LoadVector(const std::string& file) {
  const char* dir = std::getenv("SHMRING_VECTORS");
  if (dir == nullptr) {
    ADD_FAILURE() << "SHMRING_VECTORS is not set (run through meson test)";
    return {};
  }
  std::ifstream in(std::string(dir) + "/" + file);
  if (!in) {
    ADD_FAILURE() << "cannot open vector " << file;
    return {};
  }
  std::vector<uint8_t> bytes;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '@') {  // "@OFFSET" (hex): zero bytes up to OFFSET
      const size_t offset = std::stoul(line.substr(1), nullptr, 16);
      if (offset < bytes.size()) {
        ADD_FAILURE() << file << ": " << line << " goes backwards";
        return {};
      }
      bytes.resize(offset, 0);
      continue;
    }
    std::istringstream words(line);
    std::string w;
    while (words >> w) bytes.push_back(static_cast<uint8_t>(std::stoul(w, nullptr, 16)));
  }
  return bytes;
}

std::string UniqueName(const std::string& prefix) {
  // Pids wrap quickly on a busy machine: a random token per process keeps a name
  // from meeting a segment an earlier, killed run left under the same pid.
  static const unsigned token = std::random_device{}() & 0xFFFF;
  static std::atomic<int> counter{0};
  char tok[8];
  std::snprintf(tok, sizeof tok, "%04x", token);
  return prefix + "-" + std::to_string(getpid()) + tok + "-" + std::to_string(counter++);
}

}  // namespace shmtest
