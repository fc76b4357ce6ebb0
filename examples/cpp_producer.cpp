// Writes synthetic moving 1080p BGR frames into a ring and prints the frame rate.
//   cpp_producer [--name cam0] [--frames N] [--width W] [--height H] [--capacity BYTES]
// Each frame: the prefix of example_frame.hpp (frame number, FNV-1a of the pixels) + pixels.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "example_frame.hpp"
#include "shm/shm_channel.hpp"

int main(int argc, char** argv) {
  std::string name = "cam0";
  long frames = 300, width = 1920, height = 1080;
  long capacity = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--name")
      name = argv[i + 1];
    else if (a == "--frames")
      frames = std::atol(argv[i + 1]);
    else if (a == "--width")
      width = std::atol(argv[i + 1]);
    else if (a == "--height")
      height = std::atol(argv[i + 1]);
    else if (a == "--capacity")
      capacity = std::atol(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const size_t pixels = static_cast<size_t>(width * height * 3);
  const uint32_t frame_size = static_cast<uint32_t>(pixels + example::kPrefixSize);
  if (capacity == 0) capacity = static_cast<long>(frame_size) * 4;
  shm::ShmProducer producer(name, static_cast<uint32_t>(capacity));
  if (!producer.IsValid()) {
    std::fprintf(stderr, "cpp_producer: %s\n", producer.error().c_str());
    return 1;
  }
  std::printf("cpp_producer: ring '%s', capacity %u bytes, %ldx%ld BGR frames of %u bytes\n",
              name.c_str(), producer.capacity(), width, height, frame_size);
  std::vector<uint8_t> row(static_cast<size_t>(width * 3));
  const auto start = std::chrono::steady_clock::now();
  auto last = start;
  long last_n = 0;
  for (long n = 0; n < frames; ++n) {
    uint8_t* frame = nullptr;
    const shm::Status s = producer.Reserve(frame_size, &frame, shm::kForever);
    if (s != shm::Status::kOk) {
      std::fprintf(stderr, "cpp_producer: reserve failed: %s\n", shm::StatusName(s));
      return 1;
    }
    // A diagonal gradient that moves 4 pixels per frame, written straight into the ring.
    uint8_t* px = frame + example::kPrefixSize;
    for (long y = 0; y < height; ++y) {
      for (long x = 0; x < width; ++x) {
        const uint8_t v = static_cast<uint8_t>((x + y + n * 4) & 0xFF);
        row[static_cast<size_t>(x * 3)] = v;
        row[static_cast<size_t>(x * 3 + 1)] = static_cast<uint8_t>(y & 0xFF);
        row[static_cast<size_t>(x * 3 + 2)] = static_cast<uint8_t>(255 - v);
      }
      std::memcpy(px + static_cast<size_t>(y) * row.size(), row.data(), row.size());
    }
    const uint64_t number = static_cast<uint64_t>(n), sum = example::Fnv1a(px, pixels);
    std::memcpy(frame, &number, 8);
    std::memcpy(frame + 8, &sum, 8);
    producer.Commit(frame_size);
    const auto now = std::chrono::steady_clock::now();
    if (now - last >= std::chrono::seconds(1)) {
      const double secs = std::chrono::duration<double>(now - last).count();
      std::printf("cpp_producer: %.1f frames/s\n", static_cast<double>(n + 1 - last_n) / secs);
      std::fflush(stdout);
      last = now;
      last_n = n + 1;
    }
  }
  producer.Close();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("cpp_producer: wrote %ld frames in %.2f s (%.1f frames/s)\n", frames, secs,
              static_cast<double>(frames) / secs);
  return 0;
}
