// Written as a user of the original design would (its section 5 API only): one
// zeroed buffer, a producer view that initializes it and a consumer view, in two
// threads at the same time. Every byte of every message is checked. Exit code 0 = pass.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "shm/byte_ring_buffer.hpp"

namespace {

constexpr uint32_t kMessages = 20000;
constexpr uint32_t kMaxLen = 300;

uint32_t LengthOf(uint32_t i) { return 1 + (i * 37) % kMaxLen; }
uint8_t ByteOf(uint32_t i, uint32_t k) { return static_cast<uint8_t>(i * 131 + k * 7 + 3); }

}  // namespace

int main() {
  std::vector<uint8_t> memory(shm::kHeaderSize + 4096, 0);
  shm::ByteRingBuffer producer(memory.data(), memory.size(), true);
  shm::ByteRingBuffer consumer(memory.data(), memory.size(), false);
  if (consumer.HasData()) return 1;
  if (consumer.ReadableBytes() != 0 || producer.WriteableBytes() < 4000) {
    std::fprintf(stderr, "fresh ring: readable %u, writeable %u\n", consumer.ReadableBytes(),
                 producer.WriteableBytes());
    return 1;
  }

  std::thread writer([&] {
    std::vector<uint8_t> msg(kMaxLen);
    for (uint32_t i = 0; i < kMessages; ++i) {
      const uint32_t len = LengthOf(i);
      for (uint32_t k = 0; k < len; ++k) msg[k] = ByteOf(i, k);
      while (!producer.Write(msg.data(), len)) std::this_thread::yield();
    }
  });

  int bad = 0;
  uint8_t buf[kMaxLen];
  uint32_t n;
  for (uint32_t i = 0; i < kMessages && bad == 0; ++i) {
    while ((n = consumer.Read(buf, sizeof buf)) == 0) std::this_thread::yield();
    if (n != LengthOf(i)) {
      std::fprintf(stderr, "message %u: length %u, expected %u\n", i, n, LengthOf(i));
      bad = 1;
      break;
    }
    for (uint32_t k = 0; k < n; ++k) {
      if (buf[k] != ByteOf(i, k)) {
        std::fprintf(stderr, "message %u: byte %u differs\n", i, k);
        bad = 1;
        break;
      }
    }
  }
  writer.join();
  if (bad == 0 && (consumer.HasData() || consumer.Read(buf, sizeof buf) != 0)) {
    std::fprintf(stderr, "more messages than written\n");
    bad = 1;
  }
  if (bad == 0) std::printf("%u messages through two views of one buffer\n", kMessages);
  return bad;
}
