// iceoryx peer for bench/bench.py: the same 64-byte and 1080p BGR streams as ring_bench,
// through iceoryx (Debian's libiceoryx-posh-dev, RouDi started by the driver with
// bench/iox_roudi.toml). A benchmark program, not a test.
//
//   iox_bench pub|sub small|frames COUNT [TOPIC]
//
// The publisher waits for a subscriber, then loans, fills and publishes COUNT samples
// (WAIT_FOR_CONSUMER / BLOCK_PRODUCER: nothing is lost, like the rings); the subscriber
// polls take() in a loop (spinning, as the minimal ring does), touches each sample,
// releases it, and prints {"value": samples/s} measured from its first to its last sample.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/runtime/posh_runtime.hpp"

namespace {

using Clock = std::chrono::steady_clock;

int Publish(const iox::capro::ServiceDescription& service, uint32_t size, uint64_t count) {
  iox::popo::PublisherOptions options;
  options.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
  iox::popo::UntypedPublisher pub(service, options);
  const auto give_up = Clock::now() + std::chrono::seconds(20);
  while (!pub.hasSubscribers()) {
    if (Clock::now() > give_up) {
      std::fprintf(stderr, "iox_bench: no subscriber within 20 s\n");
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  static uint8_t src[1920 * 1080 * 3];
  std::memset(src, 0x33, sizeof src);
  for (uint64_t i = 0; i < count;) {
    auto loaned = pub.loan(size);
    if (loaned.has_error()) {  // every chunk is in flight: the subscriber is behind
      std::this_thread::yield();
      continue;
    }
    void* payload = loaned.value();
    std::memcpy(payload, src, size);
    std::memcpy(payload, &i, 8);
    pub.publish(payload);
    ++i;
  }
  // Stay offered until the subscriber has taken everything (it unsubscribes at exit).
  while (pub.hasSubscribers()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return 0;
}

int Subscribe(const iox::capro::ServiceDescription& service, uint32_t size, uint64_t count) {
  iox::popo::SubscriberOptions options;
  options.queueCapacity = 256;
  options.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
  iox::popo::UntypedSubscriber sub(service, options);
  uint64_t got = 0, bad = 0, sum = 0;
  Clock::time_point start;
  while (got < count) {
    auto taken = sub.take();
    if (taken.has_error()) continue;  // spinning
    const auto* p = static_cast<const uint8_t*>(taken.value());
    if (got == 0) start = Clock::now();
    uint64_t seq;
    std::memcpy(&seq, p, 8);
    bad += seq != got;
    sum += p[size / 2];
    sub.release(taken.value());
    ++got;
  }
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  if (bad || sum == 0) {
    std::fprintf(stderr, "iox_bench: %llu samples out of order\n",
                 static_cast<unsigned long long>(bad));
    return 1;
  }
  std::printf("{\"value\": %.6g}\n", static_cast<double>(count - 1) / s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: iox_bench pub|sub small|frames COUNT [TOPIC]\n");
    return 2;
  }
  const std::string role = argv[1], kind = argv[2];
  const uint64_t count = std::strtoull(argv[3], nullptr, 10);
  const std::string topic = argc > 4 ? argv[4] : "bench";
  const uint32_t size = kind == "frames" ? 1920 * 1080 * 3 : 60;
  const std::string app = "iox_bench_" + role + std::to_string(getpid());
  iox::runtime::PoshRuntime::initRuntime(
      iox::RuntimeName_t(iox::cxx::TruncateToCapacity, app.c_str()));
  const iox::capro::ServiceDescription service(
      iox::capro::IdString_t(iox::cxx::TruncateToCapacity, "shmring"),
      iox::capro::IdString_t(iox::cxx::TruncateToCapacity, kind.c_str()),
      iox::capro::IdString_t(iox::cxx::TruncateToCapacity, topic.c_str()));
  if (count < 2) return 2;
  return role == "pub" ? Publish(service, size, count) : Subscribe(service, size, count);
}
