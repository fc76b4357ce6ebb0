// A C++ receiver for bench/bench.py's idle rows: ShmConsumer::PeekFor with no timeout in a
// loop, releasing each message, until end of stream or the producer is gone. When it stops
// it prints the status and the CLOCK_MONOTONIC time (ns) at which PeekFor reported it, so
// the driver can tell how long after the producer's death it noticed. Not a test.
//
//   idle_receiver NAME [OPEN_TIMEOUT_S]
#include <time.h>

#include <cstdio>
#include <cstdlib>

#include "shm/shm_channel.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: idle_receiver NAME [OPEN_TIMEOUT_S]\n");
    return 2;
  }
  const int64_t open_timeout_ns = (argc > 2 ? std::atoll(argv[2]) : 10) * 1'000'000'000LL;
  shm::ShmConsumer c(argv[1], open_timeout_ns);
  if (!c.IsValid()) {
    std::fprintf(stderr, "idle_receiver: %s\n", c.error().c_str());
    return 1;
  }
  uint64_t messages = 0;
  shm::Status s;
  for (;;) {
    shm::MessageView v;
    s = c.PeekFor(&v, shm::kForever);
    if (s != shm::Status::kOk) break;
    ++messages;
    c.Release();
  }
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  std::printf("{\"status\": \"%s\", \"messages\": %llu, \"at_ns\": %lld}\n", shm::StatusName(s),
              static_cast<unsigned long long>(messages),
              static_cast<long long>(ts.tv_sec) * 1'000'000'000LL + ts.tv_nsec);
  return 0;
}
