// Liveness by OFD byte-range locks (liveness.hpp): the role bytes themselves, a
// producer in a pid namespace killed with SIGKILL (its header pid, 1, is a live
// process out here), a header pid that points at a live unrelated process (pid
// reuse), and the consumer role claimed and given back with the lock.
// Timeouts are hang guards only.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ring_name_test.hpp"
#include "shm/layout.hpp"
#include "shm/liveness.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"
#include "test_util.hpp"
#include "vectors.hpp"

namespace {

using namespace shm;

using shmtest::kGuardNs;

class LivenessTest : public shmtest::RingNameTest {
 protected:
  LivenessTest() : RingNameTest("live") {}
};

std::string Text(const MessageView& v) {
  return std::string(reinterpret_cast<const char*>(v.data), v.len);
}

TEST_F(LivenessTest, RoleBytesAreSeenFromAnotherDescriptionOnly) {
  const std::string name = Name();
  SharedMemory a(name, 4096, true);
  SharedMemory b(name, 0, false);
  ASSERT_TRUE(a.valid() && b.valid()) << a.error_message() << b.error_message();
  ASSERT_GE(a.fd(), 0);
  EXPECT_EQ(liveness::Probe(b.fd(), liveness::kProducerByte), liveness::Lock::kFree);
  ASSERT_EQ(liveness::Take(a.fd(), liveness::kProducerByte), liveness::Lock::kHeld);
  EXPECT_EQ(liveness::Probe(b.fd(), liveness::kProducerByte), liveness::Lock::kHeld);
  EXPECT_EQ(liveness::Probe(a.fd(), liveness::kProducerByte), liveness::Lock::kFree)
      << "a description never conflicts with itself";
  EXPECT_EQ(liveness::ProbeName(name, liveness::kProducerByte), liveness::Lock::kHeld);
  EXPECT_EQ(liveness::Probe(b.fd(), liveness::kConsumerByte), liveness::Lock::kFree)
      << "one byte per role";
  EXPECT_EQ(liveness::Take(b.fd(), liveness::kProducerByte), liveness::Lock::kFree)
      << "taken: someone else holds it";
  liveness::Drop(a.fd(), liveness::kProducerByte);
  EXPECT_EQ(liveness::Probe(b.fd(), liveness::kProducerByte), liveness::Lock::kFree);
  EXPECT_EQ(liveness::Probe(-1, 0), liveness::Lock::kUnsupported);
}

TEST_F(LivenessTest, ProducerHoldsItsByteUntilItIsGone) {
  const std::string name = Name();
  auto p = std::make_unique<ShmProducer>(name, 4096);
  ASSERT_TRUE(p->IsValid()) << p->error();
  EXPECT_EQ(liveness::ProbeName(name, liveness::kProducerByte), liveness::Lock::kHeld);
  p->Close();  // end of stream: still its ring until it is destroyed
  EXPECT_EQ(liveness::ProbeName(name, liveness::kProducerByte), liveness::Lock::kHeld);
  SharedMemory keep(name, 0, false);  // a descriptor that outlives the name
  ASSERT_TRUE(keep.valid());
  p.reset();
  EXPECT_EQ(liveness::Probe(keep.fd(), liveness::kProducerByte), liveness::Lock::kFree);
}

TEST_F(LivenessTest, ConsumerRoleIsTheConsumerByte) {
  const std::string name = Name();
  ShmProducer p(name, 4096);
  ASSERT_TRUE(p.IsValid());
  EXPECT_FALSE(p.ConsumerAttached());
  auto c = std::make_unique<ShmConsumer>(name);
  ASSERT_TRUE(c->IsValid()) << c->error();
  EXPECT_EQ(liveness::ProbeName(name, liveness::kConsumerByte), liveness::Lock::kHeld);
  EXPECT_TRUE(p.ConsumerAttached());
  c->Detach();
  EXPECT_EQ(liveness::ProbeName(name, liveness::kConsumerByte), liveness::Lock::kFree);
  EXPECT_FALSE(p.ConsumerAttached());
  // The ATTACHED flag is information only: set by hand, it does not make a consumer.
  c.reset();
  p.ring()->base()[layout::kConsumerFlagsOffset] |= layout::kConsumerAttached;
  EXPECT_FALSE(p.ConsumerAttached());
}

// The header's pid names a live process that is not the producer (pid reuse):
// the free lock byte says the producer is dead, and a new producer takes the name.
TEST_F(LivenessTest, HeaderPidOfALiveUnrelatedProcessIsNotLiveness) {
  const std::string name = Name();
  const pid_t child = shmtest::ForkChild([&]() -> int {
    ShmProducer p(name, 4096);
    if (!p.IsValid()) _exit(2);
    p.Write("last words", 10);
    _exit(0);  // dies without closing
  });
  ASSERT_EQ(shmtest::WaitChild(child), 0);
  {
    SharedMemory mem(name, 0, false);
    ASSERT_TRUE(mem.valid()) << mem.error_message();
    const uint32_t live = static_cast<uint32_t>(getpid());  // surely alive
    std::memcpy(static_cast<uint8_t*>(mem.data()) + layout::kProducerPidOffset, &live, 4);
  }
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(c.producer_pid(), static_cast<uint32_t>(getpid()));
  EXPECT_EQ(c.CheckProducer(), Status::kPeerDead);
  MessageView v;
  ASSERT_EQ(c.AcquireFor(&v, kGuardNs), Status::kOk);
  EXPECT_EQ(Text(v), "last words");
  c.Release(v);
  EXPECT_EQ(c.AcquireFor(&v, kGuardNs), Status::kPeerDead);
  ShmProducer successor(name, 4096);
  EXPECT_TRUE(successor.IsValid()) << successor.error();
}

// A producer in its own pid namespace records pid 1. Killed with SIGKILL, it is
// reported dead (pid 1 is alive out here), and a restarted producer takes the name.
TEST_F(LivenessTest, ProducerInAPidNamespaceKilledIsDead) {
  const std::string name = Name();
  int report[2];  // middle -> test: 0 and the producer's pid out here, or an errno
  int ready[2];   // producer -> test: 0 once it has written, -1 if it failed
  ASSERT_EQ(pipe(report), 0);
  ASSERT_EQ(pipe(ready), 0);
  const pid_t middle = fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    close(report[0]);
    close(ready[0]);
    int msg[2] = {0, 0};
    if (unshare(CLONE_NEWPID) != 0) {
      msg[0] = errno;
      (void)!write(report[1], msg, sizeof msg);
      _exit(0);
    }
    const pid_t producer = fork();  // pid 1 of the new namespace
    if (producer == 0) {
      ShmProducer p(name, 4096);
      int ok = (p.IsValid() && p.Write("from ns", 7) && CurrentPid() == 1) ? 0 : -1;
      (void)!write(ready[1], &ok, sizeof ok);
      for (;;) pause();
    }
    msg[0] = producer < 0 ? errno : 0;
    msg[1] = producer;
    (void)!write(report[1], msg, sizeof msg);
    int status = 0;
    if (producer > 0) waitpid(producer, &status, 0);
    _exit(0);
  }
  close(report[1]);
  close(ready[1]);
  int msg[2] = {-1, -1};
  ASSERT_EQ(read(report[0], msg, sizeof msg), static_cast<ssize_t>(sizeof msg));
  close(report[0]);
  if (msg[0] != 0) {
    close(ready[0]);
    shmtest::WaitChild(middle);
    GTEST_SKIP() << "unshare(CLONE_NEWPID) not permitted here (" << std::strerror(msg[0])
                 << "): run as root to test a producer in a pid namespace";
  }
  const pid_t producer = msg[1];
  ASSERT_GT(producer, 1);
  int ok = -1;
  const bool got_ok = read(ready[0], &ok, sizeof ok) == static_cast<ssize_t>(sizeof ok);
  close(ready[0]);
  if (!got_ok || ok != 0) {
    kill(producer, SIGKILL);
    shmtest::WaitChild(middle);
    FAIL() << "the producer in the namespace failed";
  }
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(c.producer_pid(), 1u) << "what the producer sees as its pid";
  EXPECT_EQ(c.CheckProducer(), Status::kOk);
  ASSERT_EQ(kill(producer, SIGKILL), 0);
  EXPECT_EQ(shmtest::WaitChild(middle), 0);
  MessageView v;
  ASSERT_EQ(c.AcquireFor(&v, kGuardNs), Status::kOk);
  EXPECT_EQ(Text(v), "from ns");
  c.Release(v);
  EXPECT_EQ(c.AcquireFor(&v, kGuardNs), Status::kPeerDead);
  ShmProducer restarted(name, 4096);
  EXPECT_TRUE(restarted.IsValid()) << restarted.error();
}

}  // namespace
