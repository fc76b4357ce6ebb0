// libFuzzer target: the profile-1 decoder (shm::framing::DecodeMessage, then
// DecodeExtensions on what it accepts) over arbitrary
// payload bytes. The payload sits flush against a PROT_NONE page, once at its end and
// once at its start, so a read outside it faults; a decoded body must lie inside the
// payload and every byte of it is read.
#include <cstdint>
#include <cstring>

#include "guarded_mapping.hpp"
#include "shm/framing.hpp"

namespace {

void DecodeAt(const uint8_t* data, size_t size, bool at_end) {
  shmfuzz::GuardedMapping map(size, at_end);
  if (size != 0) std::memcpy(map.data(), data, size);
  const uint8_t* payload = map.data();
  shm::framing::Header h;
  const uint8_t* body = nullptr;
  uint32_t body_len = 0;
  const char* error = nullptr;
  if (!shm::framing::DecodeMessage(payload, static_cast<uint32_t>(size), &h, &body, &body_len,
                                   &error)) {
    if (error == nullptr || error[0] == '\0') __builtin_trap();  // a refusal says why
    return;
  }
  if (body < payload + shm::framing::kMinHeaderSize || body + body_len != payload + size) {
    __builtin_trap();
  }
  volatile uint8_t sum = 0;
  for (uint32_t i = 0; i < body_len; ++i) sum = static_cast<uint8_t>(sum + body[i]);
  // The header extensions of an accepted message: decoded within header_size or
  // refused with a reason.
  shm::framing::Extensions ext;
  if (!shm::framing::DecodeExtensions(payload, h, &ext, &error) &&
      (error == nullptr || error[0] == '\0')) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;
  DecodeAt(data, size, true);
  DecodeAt(data, size, false);
  return 0;
}
