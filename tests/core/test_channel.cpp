// ShmProducer / ShmConsumer lifecycle: names, capacity, creation over live, dead
// and closed producers, waiting for a producer, end of stream, dead and replaced
// producers, one consumer per ring, unlinking, permissions, refused segments.
// Timeouts are hang guards only.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "blocking_call.hpp"
#include "ring_name_test.hpp"
#include "shm/byte_ring_buffer.hpp"
#include "shm/layout.hpp"
#include "shm/liveness.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"
#include "test_util.hpp"
#include "vectors.hpp"

namespace {

using namespace shm;
using namespace std::chrono_literals;

using shmtest::kGuardNs;

class ChannelTest : public shmtest::RingNameTest {
 protected:
  ChannelTest() : RingNameTest("chan") {}
  static bool Exists(const std::string& name) {
    uint8_t b[4];
    return SharedMemory::PeekHeader(name, b, sizeof b, nullptr) >= 0;
  }
  static uint64_t GenerationOf(const std::string& name) {
    uint8_t hdr[layout::kHeaderSize] = {};
    if (SharedMemory::PeekHeader(name, hdr, sizeof hdr, nullptr) < 32) return 0;
    uint64_t g;
    std::memcpy(&g, hdr + layout::kGenerationOffset, 8);
    return g;
  }
  // Plants a segment by hand: `size` bytes, the first bytes from `header`.
  static void Plant(const std::string& name, size_t size, const std::vector<uint8_t>& header) {
    const int fd = shm_open(OsName(name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
    if (size > 0 && !header.empty()) {
      void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      ASSERT_NE(p, MAP_FAILED);
      std::memcpy(p, header.data(), std::min(size, header.size()));
      munmap(p, size);
    }
    close(fd);
  }
  // A valid header for `capacity`, produced by the library itself.
  static std::vector<uint8_t> GoodHeader(uint32_t capacity) {
    std::vector<uint8_t> img(layout::kHeaderSize + capacity);
    EXPECT_EQ(ByteRingBuffer::Initialize(img.data(), img.size(), capacity, 0, 42), "");
    img.resize(layout::kHeaderSize);
    return img;
  }
};

std::string Msg(int i) { return "message " + std::to_string(i); }

// Reads one message with ReadFor; "" with the status name on failure.
ReadResult ReadOne(ShmConsumer& c, std::string* out, int64_t timeout = kGuardNs) {
  std::vector<char> buf(4096);
  const ReadResult r = c.ReadFor(buf.data(), static_cast<uint32_t>(buf.size()), timeout);
  if (r) out->assign(buf.data(), r.len);
  return r;
}

TEST_F(ChannelTest, CapacityRoundedUp) {
  // Asking for room for 10 frames gives room for at least 10 frames (mistake 7).
  constexpr uint32_t kFrame = 1000;
  const std::string name = Name();
  ShmProducer p(name, 10 * static_cast<uint32_t>(layout::RecordSize(kFrame)));
  ASSERT_TRUE(p.IsValid()) << p.error();
  EXPECT_GE(p.capacity(), 10 * layout::RecordSize(kFrame));
  EXPECT_TRUE(layout::IsPowerOfTwo(p.capacity()));
  std::vector<uint8_t> frame(kFrame, 7);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(p.Write(frame.data(), kFrame)) << "frame " << i;
  for (auto [asked, got] : std::vector<std::pair<uint32_t, uint32_t>>{
           {65, 128}, {64, 64}, {1, 64}, {0, 64}, {100, 128}, {4097, 8192}, {1u << 20, 1u << 20}}) {
    const std::string n = Name();
    ShmProducer q(n, asked);
    ASSERT_TRUE(q.IsValid()) << q.error();
    EXPECT_EQ(q.capacity(), got) << "asked " << asked;
    EXPECT_EQ(q.MaxMessageSize(), got - 4);
  }
  ShmProducer huge(Name(), 0x80000001u);
  EXPECT_FALSE(huge.IsValid());
  EXPECT_NE(huge.error().find("capacity"), std::string::npos) << huge.error();
}

TEST_F(ChannelTest, BadNamesRejected) {
  for (const std::string& bad :
       {std::string(), std::string(31, 'a'), std::string("a/b"), std::string("/abs"),
        std::string(".hidden"), std::string("-dash"), std::string("sp ace"),
        std::string("uml\xC3\xA4ut"), std::string("a\\b")}) {
    SCOPED_TRACE("name '" + bad + "'");
    EXPECT_NE(ValidateName(bad), "");
    ShmProducer p(bad, 64);
    EXPECT_FALSE(p.IsValid());
    EXPECT_NE(p.error(), "");
    ShmConsumer c(bad, 0);
    EXPECT_FALSE(c.IsValid());
    EXPECT_EQ(c.open_status(), Status::kInvalid);
    EXPECT_NE(c.error(), "");
    SharedMemory m(bad, 128, true);
    EXPECT_FALSE(m.valid());
  }
  // The limits themselves are fine.
  EXPECT_EQ(ValidateName(std::string(30, 'a')), "");
  EXPECT_EQ(ValidateName("a.b_c-D9"), "");
  EXPECT_EQ(ValidateName("x"), "");
}

TEST_F(ChannelTest, CreateOverLiveProducerRefused) {
  const std::string name = Name();
  ShmProducer p(name, 1024);
  ASSERT_TRUE(p.IsValid()) << p.error();
  const uint64_t gen = p.generation();
  ShmProducer q(name, 1024);
  EXPECT_FALSE(q.IsValid());
  EXPECT_NE(q.error().find("live producer"), std::string::npos) << q.error();
  EXPECT_EQ(GenerationOf(name), gen) << "the live ring is untouched";
  // From another process too.
  const pid_t child = shmtest::ForkChild([&]() -> int {
    ShmProducer r(name, 1024);
    return r.IsValid() ? 1 : 0;
  });
  EXPECT_EQ(shmtest::WaitChild(child), 0);
  EXPECT_EQ(GenerationOf(name), gen);
  EXPECT_TRUE(p.Write("still mine", 10));
}

TEST_F(ChannelTest, CreateOverDeadProducerReplaces) {
  const std::string name = Name();
  // The child creates the ring and dies without closing or unlinking.
  const pid_t child = shmtest::ForkChild([&]() -> int {
    ShmProducer p(name, 1024);
    if (!p.IsValid()) _exit(2);
    p.Write("orphan", 6);
    _exit(0);  // no destructor: the segment stays, CLOSED unset
  });
  ASSERT_EQ(shmtest::WaitChild(child), 0);  // reaped: the pid is gone, not a zombie
  ASSERT_TRUE(Exists(name));
  const uint64_t old_gen = GenerationOf(name);
  ShmProducer p(name, 1024);
  ASSERT_TRUE(p.IsValid()) << p.error();
  EXPECT_NE(p.generation(), old_gen);
  EXPECT_EQ(GenerationOf(name), p.generation());
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  uint8_t b[8];
  EXPECT_EQ(c.TryRead(b, sizeof b).status, Status::kEmpty) << "the orphan's data is gone";
}

// A CLOSED ring is replaced even while its producer lives; the old producer's
// destructor then leaves the successor's name alone.
TEST_F(ChannelTest, CreateOverClosedProducerReplacesAndOldDestructorKeepsNewSegment) {
  const std::string name = Name();
  auto old_p = std::make_unique<ShmProducer>(name, 1024);
  ASSERT_TRUE(old_p->IsValid());
  old_p->Close();
  EXPECT_EQ(old_p->WriteFor("x", 1, 0), Status::kClosed);
  ShmProducer new_p(name, 1024);
  ASSERT_TRUE(new_p.IsValid()) << new_p.error();
  EXPECT_NE(new_p.generation(), old_p->generation());
  old_p.reset();  // must not unlink the successor's segment
  ASSERT_TRUE(Exists(name));
  EXPECT_EQ(GenerationOf(name), new_p.generation());
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  ASSERT_TRUE(new_p.Write("new", 3));
  std::string got;
  ASSERT_TRUE(ReadOne(c, &got));
  EXPECT_EQ(got, "new");
}

// Seam: SharedMemory::before_unlink_for_tests runs `g_in_window` once, between a
// remover's checks and its unlink (with the file's flock held).
std::function<void()> g_in_window;
void RunInWindowOnce(const std::string&) {
  std::function<void()> f;
  std::swap(f, g_in_window);
  if (f) f();
}

// Two producers replacing the same stale ring (producer dead): while the first
// is between its check and its unlink, the second tries too. It cannot remove
// the stale ring and put its own there meanwhile (the first would then unlink
// that): exactly one producer ends up owning the name.
TEST_F(ChannelTest, RacingReplacersOfAStaleRingNeverRemoveEachOthersRing) {
  const std::string name = Name();
  Plant(name, layout::kHeaderSize + 4096, GoodHeader(4096));  // no producer byte held
  std::unique_ptr<ShmProducer> second;
  std::thread t;
  g_in_window = [&] {
    t = std::thread([&] { second = std::make_unique<ShmProducer>(name, 4096); });
    std::this_thread::sleep_for(200ms);  // room for the second to act (not an assertion)
  };
  SharedMemory::before_unlink_for_tests = RunInWindowOnce;
  ShmProducer first(name, 4096);
  SharedMemory::before_unlink_for_tests = nullptr;
  ASSERT_TRUE(t.joinable());
  t.join();
  ASSERT_TRUE(first.IsValid()) << first.error();
  EXPECT_FALSE(second->IsValid()) << "two producers own ring " << name;
  EXPECT_EQ(GenerationOf(name), first.generation()) << "the first producer's ring was removed";
}

// A producer that ended its stream (Close) is being replaced while its destructor
// runs: the destructor, between its check and its unlink, lets the replacer try.
// The replacer's ring is never removed by the old producer's destructor.
TEST_F(ChannelTest, OldProducerDestructorNeverRemovesARingPutThereDuringIt) {
  const std::string name = Name();
  auto old_p = std::make_unique<ShmProducer>(name, 4096);
  ASSERT_TRUE(old_p->IsValid());
  old_p->Close();
  std::unique_ptr<ShmProducer> new_p;
  std::thread t;
  g_in_window = [&] {
    t = std::thread([&] { new_p = std::make_unique<ShmProducer>(name, 4096); });
    std::this_thread::sleep_for(200ms);  // room for the replacer to act (not an assertion)
  };
  SharedMemory::before_unlink_for_tests = RunInWindowOnce;
  old_p.reset();
  SharedMemory::before_unlink_for_tests = nullptr;
  ASSERT_TRUE(t.joinable());
  t.join();
  ASSERT_TRUE(new_p->IsValid()) << new_p->error();
  EXPECT_EQ(GenerationOf(name), new_p->generation()) << "the replacer's ring was removed";
}

TEST_F(ChannelTest, ProducerDestructorUnlinksItsOwnSegment) {
  const std::string name = Name();
  {
    ShmProducer p(name, 1024);
    ASSERT_TRUE(p.IsValid());
    ASSERT_TRUE(Exists(name));
  }
  EXPECT_FALSE(Exists(name));
}

TEST_F(ChannelTest, ConsumerWaitsForProducerThatAppearsLater) {
  const std::string name = Name();
  {
    // No producer at all: the open timeout expires.
    ShmConsumer c(name, 30'000'000);
    EXPECT_FALSE(c.IsValid());
    EXPECT_EQ(c.open_status(), Status::kTimeout);
    ShmConsumer now(name);
    EXPECT_FALSE(now.IsValid());
    EXPECT_NE(now.open_status(), Status::kOk);
  }
  // A thread creates the producer once the consumer is already waiting.
  std::unique_ptr<ShmProducer> p;
  std::atomic<bool> consumer_started{false};
  std::thread creator([&] {
    while (!consumer_started.load()) std::this_thread::yield();
    std::this_thread::sleep_for(50ms);
    p = std::make_unique<ShmProducer>(name, 4096);
    p->Write("hello", 5);
  });
  consumer_started = true;
  auto c = std::make_unique<ShmConsumer>(name, kGuardNs);
  creator.join();
  ASSERT_TRUE(c->IsValid()) << c->error();
  EXPECT_EQ(c->open_status(), Status::kOk);
  std::string got;
  ASSERT_TRUE(ReadOne(*c, &got));
  EXPECT_EQ(got, "hello");
  c.reset();
  ShmConsumer again(name);  // re-attaching works once the first one detached
  EXPECT_TRUE(again.IsValid()) << again.error();
}

TEST_F(ChannelTest, ConsumerWaitsForProducerProcessThatAppearsLater) {
  const std::string name = Name();
  const pid_t child = shmtest::ForkChild([&]() -> int {
    std::this_thread::sleep_for(50ms);
    ShmProducer p(name, 4096);
    if (!p.IsValid()) return 2;
    for (int i = 0; i < 100; ++i) {
      const std::string m = Msg(i);
      if (p.WriteFor(m.data(), static_cast<uint32_t>(m.size()), kGuardNs) != Status::kOk) return 3;
    }
    p.Close();
    // Stay alive until the consumer has drained (then the destructor unlinks).
    while (p.ring()->LoadTail() != p.ring()->LoadHead() || p.ConsumerAttached()) {
      std::this_thread::sleep_for(1ms);
    }
    return 0;
  });
  auto c = std::make_unique<ShmConsumer>(name, kGuardNs);
  ASSERT_TRUE(c->IsValid()) << c->error();
  for (int i = 0; i < 100; ++i) {
    std::string got;
    const ReadResult r = ReadOne(*c, &got);
    ASSERT_TRUE(r) << StatusName(r.status);
    EXPECT_EQ(got, Msg(i));
  }
  std::string got;
  EXPECT_EQ(ReadOne(*c, &got).status, Status::kClosed);
  c.reset();  // detach so the child can finish
  EXPECT_EQ(shmtest::WaitChild(child), 0);
}

TEST_F(ChannelTest, EndOfStreamAfterDrain) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ShmConsumer c(name);
  ASSERT_TRUE(p.IsValid() && c.IsValid());
  EXPECT_TRUE(p.ConsumerAttached());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(p.Write(Msg(i).data(), 9));
  p.Close();
  EXPECT_EQ(c.CheckProducer(), Status::kOk) << "closed, but not drained yet";
  for (int i = 0; i < 3; ++i) {
    std::string got;
    ASSERT_TRUE(ReadOne(c, &got));
    EXPECT_EQ(got, Msg(i));
  }
  std::string got;
  EXPECT_EQ(ReadOne(c, &got).status, Status::kClosed);
  EXPECT_EQ(ReadOne(c, &got, 0).status, Status::kClosed);
  EXPECT_EQ(c.CheckProducer(), Status::kClosed);
  MessageView v;
  EXPECT_EQ(c.PeekFor(&v, kGuardNs), Status::kClosed);
  EXPECT_EQ(c.AcquireFor(&v, kGuardNs), Status::kClosed);
}

// ReadFor with a buffer too small for the next message: kBufferTooSmall with its
// size, the message stays (never dropped) and a large enough buffer then gets it.
TEST_F(ChannelTest, ReadForTooSmallBufferLeavesTheMessage) {
  ShmProducer& p = Producer(4096);
  ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  ASSERT_TRUE(p.Write("0123456789", 10));
  char buf[16] = {};
  const ReadResult small = c.ReadFor(buf, 4, kGuardNs);
  EXPECT_EQ(small.status, Status::kBufferTooSmall);
  EXPECT_EQ(small.len, 10u);
  const ReadResult whole = c.ReadFor(buf, sizeof buf, kGuardNs);
  EXPECT_EQ(whole.status, Status::kOk);
  EXPECT_EQ(std::string(buf, whole.len), "0123456789");
  EXPECT_EQ(c.ReadFor(buf, sizeof buf, 0).status, Status::kEmpty);
}

TEST_F(ChannelTest, EndOfStreamWakesBlockedConsumer) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ShmConsumer c(name);
  shmtest::BlockingCall reader([&] {
    std::string got;
    return ReadOne(c, &got, kGuardNs).status;
  });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(c));
  p.Close();
  EXPECT_EQ(reader.Join(), Status::kClosed);
}

// The producer process is killed (no CLOSED): what it wrote is delivered, then kPeerDead.
TEST_F(ChannelTest, DeadProducerAfterDrain) {
  const std::string name = Name();
  const pid_t child = shmtest::ForkHolding([&]() -> int {
    ShmProducer p(name, 4096);
    if (!p.IsValid()) return 2;
    for (int i = 0; i < 5; ++i) p.Write(Msg(i).data(), 9);
    shmtest::HoldUntilKilled();
  });
  ASSERT_GT(child, 0);
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(c.CheckProducer(), Status::kOk);
  kill(child, SIGKILL);
  EXPECT_EQ(shmtest::WaitChild(child), 128 + SIGKILL);  // reaped: no zombie left
  for (int i = 0; i < 5; ++i) {
    std::string got;
    const ReadResult r = ReadOne(c, &got);
    ASSERT_TRUE(r) << "message " << i << ": " << StatusName(r.status);
    EXPECT_EQ(got, Msg(i));
  }
  std::string got;
  EXPECT_EQ(ReadOne(c, &got).status, Status::kPeerDead);
  EXPECT_EQ(c.CheckProducer(), Status::kPeerDead);
  MessageView v;
  EXPECT_EQ(c.PeekFor(&v, kGuardNs), Status::kPeerDead);
  EXPECT_TRUE(Exists(name)) << "a consumer never unlinks, not even a dead producer's ring";
}

// The name now holds another incarnation: kReplaced (after draining the old one).
TEST_F(ChannelTest, ReplacedSegment) {
  const std::string name = Name();
  // (a) The producer died and a new one took the name: replaced says more than dead.
  {
    const pid_t child = shmtest::ForkChild([&]() -> int {
      ShmProducer p(name, 4096);
      if (!p.IsValid()) _exit(2);
      p.Write("old", 3);
      _exit(0);
    });
    ASSERT_EQ(shmtest::WaitChild(child), 0);
    ShmConsumer c(name);
    ASSERT_TRUE(c.IsValid()) << c.error();
    ShmProducer p2(name, 4096);
    ASSERT_TRUE(p2.IsValid()) << p2.error();
    std::string got;
    ASSERT_TRUE(ReadOne(c, &got));
    EXPECT_EQ(got, "old");
    EXPECT_EQ(ReadOne(c, &got).status, Status::kReplaced);
    EXPECT_EQ(c.CheckProducer(), Status::kReplaced);
    ShmConsumer c2(name);  // re-opening finds the new incarnation
    ASSERT_TRUE(c2.IsValid()) << c2.error();
    EXPECT_EQ(c2.generation(), p2.generation());
  }
  // (b) The producer lives, but its name was removed and re-created behind its
  // back: it is still its consumer's producer (liveness is its lock, not the name),
  // so the stream goes on until it ends; its exit leaves the new name alone.
  {
    const std::string n = Name();
    auto p = std::make_unique<ShmProducer>(n, 4096);
    ShmConsumer c(n);
    ASSERT_TRUE(p->IsValid() && c.IsValid());
    ASSERT_TRUE(SharedMemory::Unlink(n, nullptr));
    ShmProducer p2(n, 4096);
    ASSERT_TRUE(p2.IsValid()) << p2.error();
    std::string got;
    EXPECT_EQ(ReadOne(c, &got, 30'000'000).status, Status::kTimeout);
    EXPECT_EQ(c.CheckProducer(), Status::kOk);
    ASSERT_TRUE(p->Write("still here", 10));
    ASSERT_TRUE(ReadOne(c, &got));
    EXPECT_EQ(got, "still here");
    p.reset();
    EXPECT_EQ(ReadOne(c, &got).status, Status::kClosed);
    EXPECT_EQ(GenerationOf(n), p2.generation());
  }
}

// A producer hands its stream to a new ring under the same name (ReleaseName, the
// new ring, then Close while it still lives): its consumer reads everything the old
// ring holds, then kClosed with HandedOver; once the old producer has let go of its
// lock, the same ring reads as an ended stream.
TEST_F(ChannelTest, HandedOverRing) {
  const std::string name = Name();
  auto old = std::make_unique<ShmProducer>(name, 4096);
  ASSERT_TRUE(old->IsValid()) << old->error();
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  ASSERT_TRUE(old->Write("last of the old", 15));
  std::string err;
  ASSERT_TRUE(old->ReleaseName(&err)) << err;
  EXPECT_FALSE(Exists(name));
  ShmProducer next(name, 16384);
  ASSERT_TRUE(next.IsValid()) << next.error();
  EXPECT_FALSE(c.HandedOver()) << "not CLOSED yet";
  old->Close();
  std::string got;
  ASSERT_TRUE(ReadOne(c, &got));
  EXPECT_EQ(got, "last of the old");
  EXPECT_EQ(ReadOne(c, &got).status, Status::kClosed);
  EXPECT_TRUE(c.HandedOver());
  ShmConsumer follower(name);
  ASSERT_TRUE(follower.IsValid()) << follower.error();
  EXPECT_EQ(follower.generation(), next.generation());
  old.reset();
  EXPECT_FALSE(c.HandedOver()) << "an old producer that let go of its lock has just ended";
  EXPECT_EQ(GenerationOf(name), next.generation()) << "its end leaves the new name alone";
}

// CLOSED alone is no handover: not while the producer keeps its name, nor once a
// new producer replaced the ring of one that had let go of its lock.
TEST_F(ChannelTest, ClosedRingIsNotHandedOver) {
  const std::string name = Name();
  auto p = std::make_unique<ShmProducer>(name, 4096);
  ShmConsumer c(name);
  ASSERT_TRUE(p->IsValid() && c.IsValid());
  p->Close();
  std::string got;
  EXPECT_EQ(ReadOne(c, &got).status, Status::kClosed);
  EXPECT_FALSE(c.HandedOver()) << "the name still holds this ring";
  p.reset();
  ShmProducer p2(name, 4096);  // a new ring under the name
  ASSERT_TRUE(p2.IsValid()) << p2.error();
  EXPECT_FALSE(c.HandedOver()) << "the old producer let go of its lock first";
}

// A handover stays within one process: a ring closed without a handover whose
// producer still holds its lock (a sender that closed after an error keeps it until
// it stops) is not handed over when another process's producer took the name.
TEST_F(ChannelTest, RingReplacedByAnotherProcessIsNotHandedOver) {
  const std::string name = Name();
  shmtest::CuedChild other([&](const std::function<void(bool)>& made) {
    ShmProducer ring(name, 4096);
    made(ring.IsValid());
  });
  auto old = std::make_unique<ShmProducer>(name, 4096);
  ShmConsumer c(name);
  ASSERT_TRUE(old->IsValid() && c.IsValid());
  ASSERT_TRUE(old->Write("cut short", 9));
  std::string err;
  ASSERT_TRUE(old->ReleaseName(&err)) << err;  // the name goes, as another process's unlink
  EXPECT_TRUE(other.Cue());                    // another process puts its ring under the name
  old->Close();                                // CLOSED, lock still held
  std::string got;
  ASSERT_TRUE(ReadOne(c, &got));
  EXPECT_EQ(ReadOne(c, &got).status, Status::kClosed);
  EXPECT_FALSE(c.HandedOver()) << "the name holds another process's ring";
  EXPECT_EQ(other.Release(), 0);
}

TEST_F(ChannelTest, SecondConsumerRefusedWhileFirstAlive) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid());
  int ready[2], quit[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(quit), 0);
  const pid_t child = shmtest::ForkChild([&]() -> int {
    ShmConsumer c(name);
    if (!c.IsValid()) return 2;
    char b = 1;
    if (write(ready[1], &b, 1) != 1) return 3;
    if (read(quit[0], &b, 1) != 1) return 4;
    return 0;  // the destructor detaches
  });
  char b;
  ASSERT_EQ(read(ready[0], &b, 1), 1);
  EXPECT_TRUE(p.ConsumerAttached());
  {
    ShmConsumer second(name);
    EXPECT_FALSE(second.IsValid());
    EXPECT_EQ(second.open_status(), Status::kInvalid);
    EXPECT_NE(second.error().find("consumer"), std::string::npos) << second.error();
    ShmConsumer waiting(name, 20'000'000);
    EXPECT_FALSE(waiting.IsValid()) << "refused at once, not waited for";
    EXPECT_EQ(waiting.open_status(), Status::kInvalid);
  }
  EXPECT_EQ(write(quit[1], &b, 1), 1);
  EXPECT_EQ(shmtest::WaitChild(child), 0);
  EXPECT_FALSE(p.ConsumerAttached());
  ShmConsumer after(name);
  EXPECT_TRUE(after.IsValid()) << after.error();
  for (int fd : {ready[0], ready[1], quit[0], quit[1]}) close(fd);
}

TEST_F(ChannelTest, DeadConsumerDoesNotBlockTheNext) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  const pid_t child = shmtest::ForkChild([&]() -> int {
    ShmConsumer c(name);
    _exit(c.IsValid() ? 0 : 2);  // dies attached
  });
  ASSERT_EQ(shmtest::WaitChild(child), 0);
  EXPECT_NE(p.ring()->ConsumerFlags() & layout::kConsumerAttached, 0u);
  EXPECT_FALSE(p.ConsumerAttached()) << "its pid is gone";
  ShmConsumer c(name);
  EXPECT_TRUE(c.IsValid()) << c.error();
}

TEST_F(ChannelTest, ConsumerNeverUnlinks) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  {
    ShmConsumer c(name);
    ASSERT_TRUE(c.IsValid());
  }
  EXPECT_TRUE(Exists(name));
  EXPECT_EQ(GenerationOf(name), p.generation());
  p.Close();
  {
    ShmConsumer c(name);
    ASSERT_TRUE(c.IsValid());
    std::string got;
    EXPECT_EQ(ReadOne(c, &got).status, Status::kClosed);
  }
  EXPECT_TRUE(Exists(name)) << "even after end of stream only the producer unlinks";
}

TEST_F(ChannelTest, SegmentMode0600ByDefault) {
  const mode_t old_umask = umask(0);  // the mode must not depend on the umask
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ProducerOptions o;
  o.capacity = 4096;
  o.mode = 0640;
  const std::string name2 = Name();
  ShmProducer q(name2, o);
  umask(old_umask);
  ASSERT_TRUE(p.IsValid() && q.IsValid());
  for (auto [n, mode] : {std::pair<std::string, mode_t>{name, 0600}, {name2, 0640}}) {
    const int fd = shm_open(OsName(n).c_str(), O_RDONLY, 0);
    ASSERT_GE(fd, 0);
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    close(fd);
    EXPECT_EQ(st.st_mode & 0777, mode) << n;
  }
}

// Segments planted by hand with shm_open: refused with an error naming the field, at
// once (kInvalid, not kTimeout) even when the consumer may wait for a producer.
TEST_F(ChannelTest, BadSegmentsRefused) {
  constexpr uint32_t kCap = 1024;
  const size_t full = layout::kHeaderSize + kCap;
  struct Case {
    const char* what;
    size_t size;
    std::vector<uint8_t> header;
    std::string field;
  };
  auto with_u32 = [&](uint32_t off, uint32_t v) {
    std::vector<uint8_t> h = GoodHeader(kCap);
    std::memcpy(h.data() + off, &v, 4);
    return h;
  };
  auto with_u16 = [&](uint32_t off, uint16_t v) {
    std::vector<uint8_t> h = GoodHeader(kCap);
    std::memcpy(h.data() + off, &v, 2);
    return h;
  };
  const std::vector<Case> cases = {
      {"bad magic", full, with_u32(layout::kMagicOffset, 0x12345678), "magic"},
      {"bad version", full, with_u16(layout::kVersionOffset, 1), "version is 1"},
      {"max_receivers 0", full, with_u32(layout::kMaxReceiversOffset, 0), "max_receivers"},
      {"bad header_size", full, with_u16(layout::kHeaderSizeOffset, 64), "header_size"},
      {"capacity not a power of two", full, with_u32(layout::kCapacityOffset, 1000), "capacity"},
      {"capacity below 64", full, with_u32(layout::kCapacityOffset, 32), "capacity"},
      {"capacity larger than the segment", full, with_u32(layout::kCapacityOffset, 2048),
       "capacity"},
      {"segment one byte short", full - 1, GoodHeader(kCap),
       "size " + std::to_string(layout::kHeaderSize + kCap - 1)},
      {"segment size not a multiple of 8", full + 4, GoodHeader(kCap), "not a multiple of 8"},
      {"segment smaller than the header", 64, GoodHeader(kCap), "size"},
      {"zeroed segment smaller than the header", 64, std::vector<uint8_t>(64, 0), "size"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string name = Name();
    Plant(name, c.size, c.header);
    if (HasFatalFailure()) return;
    ShmConsumer now(name);
    EXPECT_FALSE(now.IsValid());
    EXPECT_EQ(now.open_status(), Status::kInvalid);
    EXPECT_NE(now.error().find(c.field), std::string::npos) << now.error();
    ShmConsumer waiting(name, kGuardNs);
    EXPECT_FALSE(waiting.IsValid());
    EXPECT_EQ(waiting.open_status(), Status::kInvalid) << "refused at once, not waited for";
    EXPECT_NE(waiting.error().find(c.field), std::string::npos) << waiting.error();
  }
  // A segment that is not a shmring ring at all is not replaced by a producer.
  const std::string foreign = Name();
  Plant(foreign, full, with_u32(layout::kMagicOffset, 0x12345678));
  ShmProducer p(foreign, kCap);
  EXPECT_FALSE(p.IsValid());
  EXPECT_NE(p.error().find("magic"), std::string::npos) << p.error();
}

// Created but not initialized yet (size 0 or magic 0): a producer mid-way. The
// consumer waits for it (up to its open timeout) instead of refusing.
TEST_F(ChannelTest, ConsumerWaitsForHalfCreatedSegment) {
  const std::string name = Name();
  Plant(name, 0, {});
  ShmConsumer c(name, 20'000'000);
  EXPECT_FALSE(c.IsValid());
  EXPECT_EQ(c.open_status(), Status::kTimeout);
  const std::string name2 = Name();
  Plant(name2, layout::kHeaderSize + 1024, std::vector<uint8_t>(layout::kHeaderSize, 0));
  ShmConsumer c2(name2, 20'000'000);
  EXPECT_FALSE(c2.IsValid());
  EXPECT_EQ(c2.open_status(), Status::kTimeout);
}

TEST_F(ChannelTest, InterruptWakesBlockedReadAndWrite) {
  const std::string name = Name();
  ShmProducer p(name, 64);
  ShmConsumer c(name);
  ASSERT_TRUE(p.IsValid() && c.IsValid());
  shmtest::BlockingCall reader([&] {
    std::string got;
    return ReadOne(c, &got, kForever).status;
  });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(c));
  c.Interrupt();
  EXPECT_EQ(reader.Join(), Status::kInterrupted);
  c.ClearInterrupt();
  while (p.Write("12345678", 8)) {
  }
  shmtest::BlockingCall writer([&] { return p.WriteFor("12345678", 8, kForever); });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(p));
  p.Interrupt();
  EXPECT_EQ(writer.Join(), Status::kInterrupted);
  p.ClearInterrupt();
  // Blocked write completes when the consumer reads.
  shmtest::BlockingCall writer2([&] { return p.WriteFor("abcdefgh", 8, kGuardNs); });
  ASSERT_TRUE(shmtest::WaitUntilAsleep(p));
  std::string got;
  ASSERT_TRUE(ReadOne(c, &got));
  EXPECT_EQ(writer2.Join(), Status::kOk);
}

TEST_F(ChannelTest, ZeroCopyThroughTheChannel) {
  const std::string name = Name();
  ShmProducer p(name, 256);
  ShmConsumer c(name);
  ASSERT_TRUE(p.IsValid() && c.IsValid());
  uint8_t* w = nullptr;
  ASSERT_EQ(p.Reserve(100, &w, 0), Status::kOk);
  std::memcpy(w, "zero-copy", 9);
  p.Commit(9);
  MessageView v;
  ASSERT_EQ(c.PeekFor(&v, kGuardNs), Status::kOk);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(v.data), v.len), "zero-copy");
  c.Release();
  ASSERT_TRUE(p.Write("a", 1));
  ASSERT_TRUE(p.Write("b", 1));
  MessageView a, b;
  ASSERT_EQ(c.AcquireFor(&a, kGuardNs), Status::kOk);
  ASSERT_EQ(c.AcquireFor(&b, kGuardNs), Status::kOk);
  EXPECT_EQ(c.AcquireFor(&v, 0), Status::kEmpty);
  c.ReleaseTo(b.end);
  EXPECT_EQ(c.ring()->ReadableBytes(), 0u);
  EXPECT_EQ(p.Reserve(300, &w, 0), Status::kTooLarge);
  p.CountDropped(2);
  EXPECT_EQ(p.Dropped(), 2u);
}

}  // namespace

namespace {

// Review fix: the consumer role is claimed with a flock before any consumer word is
// written, so a second consumer is refused even in the same process and leaves the
// first one's flags alone.
TEST_F(ChannelTest, SecondConsumerInSameProcessRefusedWithoutTouchingFlags) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  ShmConsumer first(name);
  ASSERT_TRUE(first.IsValid()) << first.error();
  const uint32_t flags_before = p.ring()->ConsumerFlags();
  {
    ShmConsumer second(name);
    EXPECT_FALSE(second.IsValid());
    EXPECT_NE(second.error().find("already has a consumer"), std::string::npos) << second.error();
  }
  EXPECT_EQ(p.ring()->ConsumerFlags(), flags_before);
  EXPECT_EQ(p.ring()->ConsumerPid(), CurrentPid());
  ASSERT_TRUE(p.Write("x", 1));
  std::string got;
  ASSERT_TRUE(ReadOne(first, &got));
  EXPECT_EQ(got, "x");
}

// Review fix: attaching is atomic: of several consumers racing to attach, one wins.
TEST_F(ChannelTest, RacingConsumersOnlyOneAttaches) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  constexpr int kRacers = 4;
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::unique_ptr<ShmConsumer>> consumers(kRacers);
    std::vector<std::thread> threads;
    for (int i = 0; i < kRacers; ++i) {
      threads.emplace_back([&, i] {
        ready.fetch_add(1);
        while (!go.load()) {
        }
        consumers[i] = std::make_unique<ShmConsumer>(name);
      });
    }
    while (ready.load() < kRacers) {
    }
    go.store(true);
    for (auto& t : threads) t.join();
    int valid = 0;
    for (auto& c : consumers) valid += c->IsValid() ? 1 : 0;
    EXPECT_EQ(valid, 1) << "round " << round;
  }
}

// Review fix: a name whose segment has no magic yet (or is shorter than the header)
// is another creator mid-way, not debris: a producer refuses it instead of
// unlinking it from under that creator.
TEST_F(ChannelTest, ProducerDoesNotReplaceASegmentBeingCreated) {
  const std::string no_magic = Name();
  Plant(no_magic, layout::kHeaderSize + 1024, std::vector<uint8_t>(layout::kHeaderSize, 0));
  ShmProducer p(no_magic, 1024);
  EXPECT_FALSE(p.IsValid());
  EXPECT_NE(p.error().find("being created"), std::string::npos) << p.error();
  EXPECT_TRUE(Exists(no_magic));
  const std::string short_segment = Name();
  Plant(short_segment, 0, {});
  ShmProducer q(short_segment, 1024);
  EXPECT_FALSE(q.IsValid());
  EXPECT_NE(q.error().find("being created"), std::string::npos) << q.error();
  EXPECT_TRUE(Exists(short_segment));
}

// Review fix: a producer that exited but was not reaped yet (a zombie) is dead.
TEST_F(ChannelTest, ZombieProducerIsDead) {
  const std::string name = Name();
  int created[2];
  ASSERT_EQ(pipe(created), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto* p = new ShmProducer(name, 4096);  // never destroyed: a crash, not a close
    char b = p->IsValid() ? 1 : 0;
    if (write(created[1], &b, 1) != 1) _exit(3);
    _exit(0);
  }
  close(created[1]);
  char b = 0;
  ASSERT_EQ(read(created[0], &b, 1), 1);
  ASSERT_EQ(b, 1);
  ASSERT_EQ(read(created[0], &b, 1), 0);  // EOF: the child is exiting
  close(created[0]);
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  Status s = Status::kOk;
  for (int i = 0; i < 30000 && s == Status::kOk; ++i) {  // hang guard, not a timing check
    s = c.CheckProducer();
    if (s == Status::kOk) std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(s, Status::kPeerDead) << "the unreaped child must count as dead";
  EXPECT_EQ(shmtest::WaitChild(child), 0);
}

}  // namespace

namespace {

// Each attach bumps the consumer attach count, so a producer can tell a new consumer
// from the previous one even when both have the same pid.
TEST_F(ChannelTest, AttachCountChangesOnEveryAttachEvenInOneProcess) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  const uint32_t before = p.ring()->ConsumerAttachCount();
  {
    ShmConsumer first(name);
    ASSERT_TRUE(first.IsValid()) << first.error();
  }
  const uint32_t after_first = p.ring()->ConsumerAttachCount();
  EXPECT_EQ(after_first, before + 1);
  {
    ShmConsumer second(name);
    ASSERT_TRUE(second.IsValid()) << second.error();
    EXPECT_EQ(p.ring()->ConsumerAttachCount(), after_first + 1);
    EXPECT_TRUE(p.ring()->ConsumerFlags() & layout::kConsumerAttached);
  }
  EXPECT_FALSE(p.ring()->ConsumerFlags() & layout::kConsumerAttached);
}

}  // namespace

namespace {

// A segment without a magic whose size no ring can have (a POSIX semaphore is 32
// bytes) is someone else's: never replaced, whatever its age.
// A version 1 ring at the name: consumers refuse it at once naming both versions; a
// producer replaces it only when its producer byte is free (its flags are elsewhere).
TEST_F(ChannelTest, Version1RingRefusedAndReplacedWhenStale) {
  const std::string name = Name();
  const std::vector<uint8_t> v1 = shmtest::LoadVector("v1_empty_cap64.hex");
  ASSERT_EQ(v1.size(), 192u);
  Plant(name, v1.size(), v1);
  if (HasFatalFailure()) return;
  ShmConsumer waiting(name, kGuardNs);
  EXPECT_EQ(waiting.open_status(), Status::kInvalid) << "refused at once, not waited for";
  EXPECT_NE(waiting.error().find("version is 1; this build reads version 2"), std::string::npos)
      << waiting.error();
  {
    const int fd = shm_open(OsName(name).c_str(), O_RDWR, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(liveness::Take(fd, liveness::kProducerByte), liveness::Lock::kHeld);
    ShmProducer busy(name, 1024);
    EXPECT_FALSE(busy.IsValid());
    EXPECT_NE(busy.error().find("version 1 ring in use by a live producer"), std::string::npos)
        << busy.error();
    close(fd);
  }
  ShmProducer p(name, 1024);
  ASSERT_TRUE(p.IsValid()) << p.error();
  ShmConsumer c(name);
  EXPECT_TRUE(c.IsValid()) << c.error();
}

TEST_F(ChannelTest, ProducerNeverReplacesAForeignSegmentWithoutMagic) {
  for (size_t size : {size_t{32}, size_t{4096}}) {
    SCOPED_TRACE(size);
    const std::string name = Name();
    Plant(name, size, std::vector<uint8_t>(std::min<size_t>(size, 64), 0));
    ShmProducer p(name, 1024);
    EXPECT_FALSE(p.IsValid());
    EXPECT_NE(p.error().find("not a shmring ring"), std::string::npos) << p.error();
    EXPECT_TRUE(Exists(name));
  }
  static_assert(layout::MayBeRingInCreation(0) &&
                    layout::MayBeRingInCreation(layout::kHeaderSize + 64) &&
                    !layout::MayBeRingInCreation(32) && !layout::MayBeRingInCreation(4096),
                "sizes a creator can leave behind");
}

}  // namespace

namespace {

// A consumer that stores an impossible tail makes WriteFor report kCorrupt with
// both indices in error(), instead of overwriting unread messages.
TEST_F(ChannelTest, ProducerReportsACorruptConsumerTail) {
  const std::string name = Name();
  ShmProducer p(name, 64);
  ASSERT_TRUE(p.IsValid()) << p.error();
  ASSERT_EQ(p.WriteFor("0123456789abcdef0123456789abcdef0123456789ab", 44, 0), Status::kOk);
  ASSERT_EQ(p.WriteFor("x", 1, 0), Status::kOk);  // head 56
  ASSERT_EQ(p.WriteFor("x", 1, 0), Status::kOk);  // head 64: full, nothing read
  uint8_t* base = p.ring()->base();
  const uint32_t bad = 72;  // past head
  std::memcpy(base + layout::kTailOffset, &bad, 4);
  EXPECT_EQ(p.WriteFor("y", 1, 0), Status::kCorrupt);
  EXPECT_NE(p.error().find("tail 72 is not valid for head 64"), std::string::npos) << p.error();
  EXPECT_FALSE(p.Write("y", 1));
  EXPECT_EQ(p.WriteFor("y", 1, kGuardNs), Status::kCorrupt) << "reported, not waited on";
}

}  // namespace
