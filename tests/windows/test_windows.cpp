// The Win32 paths of the core, run under Wine (scripts/test-windows.sh) or on
// Windows: named paging-file mappings and their lifetime, size discovery for
// openers, cross-process wake-ups through named events, Interrupter waking a
// sleeper, producer liveness by OpenProcess, and a ShmProducer/ShmConsumer pair in
// two processes running at the same time. Timeouts are hang guards only.
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <gtest/gtest.h>
#include <windows.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "shm/byte_ring_buffer.hpp"
#include "shm/layout.hpp"
#include "shm/process.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"
#include "shm/wait.hpp"
#include "test_util.hpp"
#include "vectors.hpp"

namespace {

using namespace shm;
using namespace std::chrono_literals;

constexpr uint32_t kCapacity = 16 * 1024;
constexpr int64_t kGuardNs = 30'000'000'000;

const uint32_t* Word(const SharedMemory& m, uint32_t offset) {
  return reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(m.data()) + offset);
}

TEST(WindowsSharedMemory, NamedMappingIsSharedAndOpenersLearnItsSize) {
  const std::string name = shmtest::UniqueName("win-map");
  EXPECT_EQ(OsName(name), "Local\\" + name);
  SharedMemory created(name, 5000, true, false);
  ASSERT_TRUE(created.valid()) << created.error_message();
  std::memcpy(created.data(), "ring", 4);
  SharedMemory opened(name, 0, false);
  ASSERT_TRUE(opened.valid()) << opened.error_message();
  // VirtualQuery of the view: the section's size rounded up to whole pages.
  EXPECT_GE(opened.size(), 5000u);
  EXPECT_EQ(opened.size() % 4096, 0u);
  EXPECT_EQ(std::memcmp(opened.data(), "ring", 4), 0);
  uint64_t seen = 0;
  double age = -1;
  ASSERT_TRUE(SharedMemory::Stat(name, &seen, &age));
  EXPECT_EQ(seen, opened.size());
  char head[4] = {};
  std::string err;
  EXPECT_EQ(SharedMemory::PeekHeader(name, head, sizeof head, &err), 4) << err;
  EXPECT_EQ(std::memcmp(head, "ring", 4), 0);
  SharedMemory too_small(name, 1 << 20, false);  // a minimum size the segment lacks
  EXPECT_FALSE(too_small.valid());
  EXPECT_EQ(too_small.error(), Error::kOpenFailed);
}

TEST(WindowsSharedMemory, MissingNameIsMissingAndTakenNameRefused) {
  const std::string name = shmtest::UniqueName("win-miss");
  SharedMemory none(name, 0, false);
  EXPECT_FALSE(none.valid());
  EXPECT_TRUE(none.missing()) << none.error_message();
  EXPECT_EQ(none.os_error(), ERROR_FILE_NOT_FOUND);
  SharedMemory first(name, 4096, true, false);
  ASSERT_TRUE(first.valid()) << first.error_message();
  SharedMemory second(name, 4096, true, false);
  EXPECT_FALSE(second.valid());
  EXPECT_EQ(second.error(), Error::kCreationFailed);
  EXPECT_EQ(second.os_error(), ERROR_ALREADY_EXISTS);
  EXPECT_NE(second.error_message().find("CreateFileMappingA"), std::string::npos);
}

// Lifetime: a mapping lives while any process holds a handle to it; destroy()
// removes nothing (there is no name to unlink), and the name is free again only
// when the last handle closes.
TEST(WindowsSharedMemory, MappingLivesWhileAHandleIsOpen) {
  const std::string name = shmtest::UniqueName("win-life");
  {
    SharedMemory opened_later(name, 0, false);
    EXPECT_TRUE(opened_later.missing());
  }
  auto creator = std::make_unique<SharedMemory>(name, 4096, true, false);
  ASSERT_TRUE(creator->valid()) << creator->error_message();
  std::memcpy(creator->data(), "kept", 4);
  SharedMemory holder(name, 0, false);
  ASSERT_TRUE(holder.valid()) << holder.error_message();
  EXPECT_TRUE(creator->TryDestroy());
  creator.reset();  // persist=false creator gone: on POSIX the name would be unlinked
  SharedMemory again(name, 0, false);
  ASSERT_TRUE(again.valid()) << "the holder keeps the mapping: " << again.error_message();
  EXPECT_EQ(std::memcmp(again.data(), "kept", 4), 0);
  SharedMemory recreate(name, 4096, true, false);
  EXPECT_FALSE(recreate.valid()) << "a name still held cannot be created anew";
}

TEST(WindowsSharedMemory, NameGoneWithTheLastHandle) {
  const std::string name = shmtest::UniqueName("win-gone");
  { SharedMemory creator(name, 4096, true, true); }  // persist=true changes nothing here
  SharedMemory opened(name, 0, false);
  EXPECT_FALSE(opened.valid());
  EXPECT_TRUE(opened.missing()) << opened.error_message();
}

// ---- waits -----------------------------------------------------------------------

// Without a wake, a wait on a word of a named ring sleeps for its whole timeout
// (it does not return early as the back-off poll did); the short timeout is the
// value under test, not a hang guard.
TEST(WindowsWait, SleepsTheWholeTimeoutWhenNobodyWakes) {
  const std::string name = shmtest::UniqueName("win-nowake");
  SharedMemory m(name, 4096, true, false);
  ASSERT_TRUE(m.valid()) << m.error_message();
  const uint32_t* w = Word(m, layout::kHeadOffset);
  EXPECT_EQ(wait::WaitOnWord(w, 0, 300'000'000), wait::Result::kTimeout);
}

// The waker is another process: the child maps the ring by name and sleeps on the
// head word with no timeout; the word never changes, so only the named event can
// end its sleep.
TEST(WindowsWait, WakeFromAnotherProcess) {
  const std::string name = shmtest::UniqueName("win-xwake");
  SharedMemory m(name, 4096, true, false);
  ASSERT_TRUE(m.valid()) << m.error_message();
  auto* ready = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(m.data()) + 64);
  const pid_t child =
      shmtest::SpawnSelf("ChildRole.DISABLED_Sleeper", {"SHMRING_TEST_RING=" + name});
  ASSERT_GT(child, 0);
  // The child sets the ready word just before it sleeps; wake until it has left.
  ASSERT_TRUE(shmtest::WaitUntil([&] { return __atomic_load_n(ready, __ATOMIC_ACQUIRE) == 1; }));
  bool done = false;
  for (int i = 0; i < 3000 && !done; ++i) {  // the child may not be asleep yet: repeat
    wait::WakeWord(Word(m, layout::kHeadOffset));
    done = __atomic_load_n(ready, __ATOMIC_ACQUIRE) == 2;
    if (!done) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(done) << "the child never woke";
  EXPECT_EQ(shmtest::WaitChild(child), 0);
}

TEST(ChildRole, DISABLED_Sleeper) {
  const std::string name = shmtest::Env("SHMRING_TEST_RING");
  if (name.empty()) GTEST_SKIP() << "only run by WindowsWait.WakeFromAnotherProcess";
  SharedMemory m(name, 0, false);
  ASSERT_TRUE(m.valid()) << m.error_message();
  auto* ready = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(m.data()) + 64);
  __atomic_store_n(ready, 1, __ATOMIC_RELEASE);
  EXPECT_EQ(wait::WaitOnWord(Word(m, layout::kHeadOffset), 0, kForever), wait::Result::kWoken);
  __atomic_store_n(ready, 2, __ATOMIC_RELEASE);
}

// Interrupter ends a consumer's sleep on a named ring (named event) and on a ring
// in private memory (WaitOnAddress); the sleeper reports kInterrupted.
TEST(WindowsWait, InterrupterWakesASleeper) {
  const std::string name = shmtest::UniqueName("win-intr");
  const uint64_t size = layout::kHeaderSize + kCapacity;
  SharedMemory m(name, size, true, false);
  ASSERT_TRUE(m.valid()) << m.error_message();
  ASSERT_EQ(ByteRingBuffer::Initialize(m.data(), size, kCapacity, 0, 3), "");
  std::vector<uint8_t> priv(size);
  ASSERT_EQ(ByteRingBuffer::Initialize(priv.data(), size, kCapacity, 0, 4), "");
  for (void* base : {m.data(), static_cast<void*>(priv.data())}) {
    ByteRingBuffer cons(base, size, false);
    ASSERT_TRUE(cons.valid()) << cons.error();
    Interrupter intr;
    std::atomic<int> got{-1};
    std::thread t([&] { got = static_cast<int>(cons.WaitReadable(kForever, &intr)); });
    // Interrupt() returns once the sleeper is awake (or before it slept).
    std::this_thread::sleep_for(50ms);  // let it reach its sleep (either order is correct)
    intr.Interrupt();
    t.join();
    EXPECT_EQ(got.load(), static_cast<int>(Status::kInterrupted));
  }
}

// ---- liveness --------------------------------------------------------------------

TEST(WindowsLiveness, OpenProcessTellsALiveProcessFromAnExitedOne) {
  EXPECT_TRUE(ProcessAlive(CurrentPid()));
  const pid_t child = shmtest::SpawnSelf("ChildRole.DISABLED_ExitAtOnce", {});
  ASSERT_GT(child, 0);
  EXPECT_EQ(shmtest::WaitChild(child), 0);
  EXPECT_FALSE(ProcessAlive(static_cast<uint32_t>(child)));
}

TEST(ChildRole, DISABLED_ExitAtOnce) {}

// A consumer in this process learns that the producer process died (killed with
// TerminateProcess, no CLOSED): it drains what was published, then kPeerDead.
TEST(WindowsLiveness, ConsumerSeesAKilledProducerAsDead) {
  const std::string name = shmtest::UniqueName("win-dead");
  const pid_t child =
      shmtest::SpawnSelf("ChildRole.DISABLED_ProducerThatStays", {"SHMRING_TEST_RING=" + name});
  ASSERT_GT(child, 0);
  ShmConsumer c(name, kGuardNs);  // waits for the child's ring to appear
  ASSERT_TRUE(c.IsValid()) << c.error();
  char buf[16];
  for (int i = 0; i < 5; ++i) {
    const ReadResult r = c.ReadFor(buf, sizeof buf, kGuardNs);
    ASSERT_EQ(r.status, Status::kOk) << "message " << i;
    EXPECT_EQ(r.len, 1u);
    EXPECT_EQ(buf[0], static_cast<char>('a' + i));
  }
  EXPECT_EQ(c.CheckProducer(), Status::kOk);
  HANDLE h = OpenProcess(PROCESS_TERMINATE, FALSE, static_cast<DWORD>(child));
  ASSERT_NE(h, nullptr);
  ASSERT_TRUE(TerminateProcess(h, 9));
  CloseHandle(h);
  EXPECT_EQ(shmtest::WaitChild(child), 9);
  EXPECT_EQ(c.ReadFor(buf, sizeof buf, kGuardNs).status, Status::kPeerDead);
  EXPECT_EQ(c.CheckProducer(), Status::kPeerDead);
}

TEST(ChildRole, DISABLED_ProducerThatStays) {
  const std::string name = shmtest::Env("SHMRING_TEST_RING");
  if (name.empty()) GTEST_SKIP() << "only run by WindowsLiveness.*";
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid()) << p.error();
  for (int i = 0; i < 5; ++i) {
    const char m = static_cast<char>('a' + i);
    ASSERT_TRUE(p.Write(&m, 1));
  }
  Sleep(INFINITE);  // until the parent terminates this process
}

// ---- a channel across two processes --------------------------------------------------

constexpr uint32_t kMessages = 20000;
uint32_t LengthOf(uint32_t i) { return 1 + (i * 53) % 1500; }
uint8_t ByteOf(uint32_t i, uint32_t k) { return static_cast<uint8_t>(i * 17 + k * 29 + 1); }

// The producer here (blocking writes), the consumer in a child process (blocking
// reads), both at the same time: every byte is checked in the child.
TEST(WindowsChannel, ProducerAndConsumerInTwoProcesses) {
  const std::string name = shmtest::UniqueName("win-chan");
  ShmProducer producer(name, 8192);
  ASSERT_TRUE(producer.IsValid()) << producer.error();
  const pid_t child =
      shmtest::SpawnSelf("ChildRole.DISABLED_Consumer", {"SHMRING_TEST_RING=" + name});
  ASSERT_GT(child, 0);
  std::vector<uint8_t> msg(1500);
  for (uint32_t i = 0; i < kMessages; ++i) {
    const uint32_t len = LengthOf(i);
    for (uint32_t k = 0; k < len; ++k) msg[k] = ByteOf(i, k);
    ASSERT_EQ(producer.WriteFor(msg.data(), len, kGuardNs), Status::kOk) << "message " << i;
  }
  producer.Close();
  EXPECT_EQ(shmtest::WaitChild(child), 0);
}

TEST(ChildRole, DISABLED_Consumer) {
  const std::string name = shmtest::Env("SHMRING_TEST_RING");
  if (name.empty()) GTEST_SKIP() << "only run by WindowsChannel.*";
  ShmConsumer consumer(name, kGuardNs);
  ASSERT_TRUE(consumer.IsValid()) << consumer.error();
  std::vector<uint8_t> buf(1500);
  for (uint32_t i = 0; i < kMessages; ++i) {
    const ReadResult r = consumer.ReadFor(buf.data(), static_cast<uint32_t>(buf.size()), kGuardNs);
    ASSERT_EQ(r.status, Status::kOk) << "message " << i;
    ASSERT_EQ(r.len, LengthOf(i)) << "message " << i;
    for (uint32_t k = 0; k < r.len; ++k) ASSERT_EQ(buf[k], ByteOf(i, k)) << "message " << i;
  }
  EXPECT_EQ(consumer.ReadFor(buf.data(), static_cast<uint32_t>(buf.size()), kGuardNs).status,
            Status::kClosed);
}

}  // namespace
