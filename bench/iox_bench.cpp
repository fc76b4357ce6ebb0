// iceoryx peer for bench/bench.py: the same 64-byte and 1080p BGR streams as ring_bench,
// through iceoryx (Debian's libiceoryx-posh-dev, RouDi started by the driver with
// bench/iox_roudi.toml). A benchmark program, not a test.
//
//   iox_bench pub|sub small|frames COUNT [TOPIC]
//   iox_bench idle-pub|idle-sub TOPIC
//   iox_bench lat-pub|lat-sub poll|wait COUNT TOPIC ACK_FILE
//
// pub/sub: the publisher waits for a subscriber, then loans, fills and publishes COUNT
// samples (WAIT_FOR_CONSUMER / BLOCK_PRODUCER: nothing is lost, like the rings); the
// subscriber polls take() in a loop (spinning, as the minimal ring does), touches each
// sample, releases it, and prints {"value": samples/s} from its first to its last sample.
// idle-pub publishes one 1080p BGR frame per second until killed; idle-sub waits in a
// WaitSet (HAS_DATA) and takes what arrives, until killed (the idle row).
// lat-pub/lat-sub: 64-byte samples carrying the publisher's CLOCK_MONOTONIC time, the next
// one 20 us (poll: subscriber spinning on take) or 1 ms (wait: subscriber asleep in a
// WaitSet) after the previous one was taken (the subscriber counts taken samples in the
// first 8 bytes of ACK_FILE, a file both map); lat-sub prints {"p50_ns", "p99_ns"}.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/popo/wait_set.hpp"
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

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// SIGTERM/SIGINT end the idle loops cleanly (deregistered from RouDi), as the example
// programs of iceoryx do: a flag, and the WaitSet marked for destruction to wake it.
volatile std::sig_atomic_t g_stop = 0;
iox::popo::WaitSet<>* g_waitset = nullptr;

extern "C" void OnSignal(int) {
  g_stop = 1;
  if (g_waitset) g_waitset->markForDestruction();
}

void HandleSignals() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

int IdlePublish(const iox::capro::ServiceDescription& service) {
  HandleSignals();
  iox::popo::UntypedPublisher pub(service);
  static uint8_t src[1920 * 1080 * 3];
  while (!g_stop) {
    auto loaned = pub.loan(sizeof src);
    if (!loaned.has_error()) {
      std::memcpy(loaned.value(), src, sizeof src);
      pub.publish(loaned.value());
    }
    for (int i = 0; i < 100 && !g_stop; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return 0;
}

int IdleSubscribe(const iox::capro::ServiceDescription& service) {
  iox::popo::UntypedSubscriber sub(service);
  iox::popo::WaitSet<> waitset;
  if (waitset.attachState(sub, iox::popo::SubscriberState::HAS_DATA).has_error()) return 1;
  g_waitset = &waitset;
  HandleSignals();
  while (!g_stop) {
    waitset.wait();
    for (auto taken = sub.take(); !taken.has_error(); taken = sub.take())
      sub.release(taken.value());
  }
  g_waitset = nullptr;
  return 0;
}

std::atomic<uint64_t>* MapAck(const char* path) {
  const int fd = open(path, O_RDWR);
  if (fd < 0) return nullptr;
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  return p == MAP_FAILED ? nullptr : static_cast<std::atomic<uint64_t>*>(p);
}

int LatencyPublish(const iox::capro::ServiceDescription& service, bool poll, uint64_t count,
                   std::atomic<uint64_t>* taken) {
  iox::popo::PublisherOptions options;
  options.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
  iox::popo::UntypedPublisher pub(service, options);
  while (!pub.hasSubscribers()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const int64_t gap = poll ? 20'000 : 1'000'000;
  for (uint64_t i = 0; i < count; ++i) {
    while (taken->load(std::memory_order_acquire) < i) {
    }
    const int64_t next = NowNs() + gap;
    if (poll) {
      while (NowNs() < next) {
      }
    } else {
      const timespec ts{static_cast<time_t>(next / 1'000'000'000),
                        static_cast<long>(next % 1'000'000'000)};
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
    }
    for (;;) {
      auto loaned = pub.loan(60);
      if (loaned.has_error()) continue;
      const int64_t now = NowNs();
      std::memcpy(loaned.value(), &now, 8);
      pub.publish(loaned.value());
      break;
    }
  }
  while (pub.hasSubscribers()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return 0;
}

int LatencySubscribe(const iox::capro::ServiceDescription& service, bool poll, uint64_t count,
                     std::atomic<uint64_t>* taken) {
  iox::popo::SubscriberOptions options;
  options.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
  iox::popo::UntypedSubscriber sub(service, options);
  iox::popo::WaitSet<> waitset;
  if (waitset.attachState(sub, iox::popo::SubscriberState::HAS_DATA).has_error()) return 1;
  std::vector<int64_t> v;
  v.reserve(count);
  while (v.size() < count) {
    if (!poll) waitset.wait();
    auto sample = sub.take();
    if (sample.has_error()) continue;
    const int64_t now = NowNs();
    int64_t sent;
    std::memcpy(&sent, sample.value(), 8);
    sub.release(sample.value());
    v.push_back(now - sent);
    taken->store(v.size(), std::memory_order_release);
  }
  std::sort(v.begin(), v.end());
  std::printf("{\"p50_ns\": %lld, \"p99_ns\": %lld, \"max_ns\": %lld, \"samples\": %zu}\n",
              static_cast<long long>(v[v.size() / 2]),
              static_cast<long long>(v[std::min(v.size() - 1, v.size() * 99 / 100)]),
              static_cast<long long>(v.back()), v.size());
  return 0;
}

iox::capro::ServiceDescription Service(const std::string& kind, const std::string& topic) {
  return iox::capro::ServiceDescription(
      iox::capro::IdString_t(iox::cxx::TruncateToCapacity, "shmring"),
      iox::capro::IdString_t(iox::cxx::TruncateToCapacity, kind.c_str()),
      iox::capro::IdString_t(iox::cxx::TruncateToCapacity, topic.c_str()));
}

void InitRuntime(const std::string& role) {
  const std::string app = "iox_bench_" + role + std::to_string(getpid());
  iox::runtime::PoshRuntime::initRuntime(
      iox::RuntimeName_t(iox::cxx::TruncateToCapacity, app.c_str()));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if ((mode == "idle-pub" || mode == "idle-sub") && argc > 2) {
    InitRuntime(mode);
    return mode == "idle-pub" ? IdlePublish(Service("idle", argv[2]))
                              : IdleSubscribe(Service("idle", argv[2]));
  }
  if ((mode == "lat-pub" || mode == "lat-sub") && argc > 5) {
    std::atomic<uint64_t>* ack = MapAck(argv[5]);
    if (!ack) {
      std::fprintf(stderr, "iox_bench: cannot map %s\n", argv[5]);
      return 1;
    }
    InitRuntime(mode);
    const bool poll = std::string(argv[2]) == "poll";
    const uint64_t count = std::strtoull(argv[3], nullptr, 10);
    const auto service = Service("latency", argv[4]);
    return mode == "lat-pub" ? LatencyPublish(service, poll, count, ack)
                             : LatencySubscribe(service, poll, count, ack);
  }
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: iox_bench pub|sub small|frames COUNT [TOPIC]\n"
                 "       iox_bench idle-pub|idle-sub TOPIC\n"
                 "       iox_bench lat-pub|lat-sub poll|wait COUNT TOPIC ACK_FILE\n");
    return 2;
  }
  const std::string role = argv[1], kind = argv[2];
  const uint64_t count = std::strtoull(argv[3], nullptr, 10);
  const std::string topic = argc > 4 ? argv[4] : "bench";
  const uint32_t size = kind == "frames" ? 1920 * 1080 * 3 : 60;
  if (count < 2) return 2;
  InitRuntime(role);
  const auto service = Service(kind, topic);
  return role == "pub" ? Publish(service, size, count) : Subscribe(service, size, count);
}
