// Reads the frames cpp_producer writes, verifies each (number and checksum) and
// prints the frame rate. Exits 0 at end of stream when every frame checked out.
//   cpp_consumer [--name cam0] [--timeout-ms 10000]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "example_frame.hpp"
#include "shm/shm_channel.hpp"

int main(int argc, char** argv) {
  std::string name = "cam0";
  long timeout_ms = 10000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--name")
      name = argv[i + 1];
    else if (a == "--timeout-ms")
      timeout_ms = std::atol(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const int64_t timeout_ns = static_cast<int64_t>(timeout_ms) * 1000000;
  shm::ShmConsumer consumer(name, timeout_ns);  // waits for the producer to appear
  if (!consumer.IsValid()) {
    std::fprintf(stderr, "cpp_consumer: %s\n", consumer.error().c_str());
    return 1;
  }
  std::printf("cpp_consumer: attached to '%s' (capacity %u)\n", name.c_str(), consumer.capacity());
  uint64_t expected = 0, bytes = 0;
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    shm::MessageView v;
    const shm::Status s = consumer.PeekFor(&v, timeout_ns);  // zero-copy view
    if (s == shm::Status::kClosed) break;
    if (s != shm::Status::kOk) {
      std::fprintf(stderr, "cpp_consumer: %s after %llu frames\n", shm::StatusName(s),
                   static_cast<unsigned long long>(expected));
      return 1;
    }
    uint64_t number = 0, sum = 0;
    if (v.len >= example::kPrefixSize) {
      std::memcpy(&number, v.data, 8);
      std::memcpy(&sum, v.data + 8, 8);
    }
    if (v.len < example::kPrefixSize || number != expected ||
        sum != example::Fnv1a(v.data + example::kPrefixSize, v.len - example::kPrefixSize)) {
      std::fprintf(stderr, "cpp_consumer: frame %llu is wrong\n",
                   static_cast<unsigned long long>(expected));
      return 1;
    }
    bytes += v.len;
    consumer.Release();
    ++expected;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("cpp_consumer: %llu frames verified, %.1f frames/s, %.0f MB/s\n",
              static_cast<unsigned long long>(expected), static_cast<double>(expected) / secs,
              static_cast<double>(bytes) / secs / 1e6);
  return 0;
}
