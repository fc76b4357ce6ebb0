// The producer's "count read before the store" rule (docs/DESIGN.md "Wake once per
// sleep"), driven step by step in one thread: this executable compiles
// byte_ring_buffer.cpp with SHMRING_TEST_SEAMS, so a hook runs the receiver's steps
// between the producer's head store and its wake decision. Wake counts come from
// wait::GetCounters(), never from the clock.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "shm/byte_ring_buffer.hpp"
#include "shm/layout.hpp"
#include "shm/wait.hpp"
#include "test_seams.hpp"
#include "test_util.hpp"

using namespace shm;

namespace {

std::function<void()>* g_step = nullptr;  // the receiver's steps, run by the seam
void RunStep() {
  if (g_step != nullptr) (*g_step)();
}

// Installs `step` at seam `*hook` for the life of the object.
struct AtSeam {
  AtSeam(void (**hook)(), std::function<void()> step) : hook(hook), fn(std::move(step)) {
    g_step = &fn;
    *hook = &RunStep;
  }
  ~AtSeam() {
    *hook = nullptr;
    g_step = nullptr;
  }
  void (**hook)();
  std::function<void()> fn;
};

// A 4096-byte ring (< 64 KiB: the consumer stores its tail at every release), its
// producer end `p` and consumer end `c`, and the 8-byte message the tests send.
class WakeOrder : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(init_error, "");
    ASSERT_TRUE(p.valid() && c.valid());
  }
  shmtest::RingImage img{4096};
  const std::string init_error = img.Init();  // before the ends below are made
  ByteRingBuffer p{img.base(), img.size(), true};
  ByteRingBuffer c{img.base(), img.size(), false};
  const char msg[8] = "message";
  char out[8] = {};
};

}  // namespace

// The receiver sleeps (counted), is woken by two publishes and reads them. At the third
// publish it runs between the head store and the wake decision: it reads the new
// message, looks again (empty), bumps its count and goes to sleep on the NEW head. The
// wake of that publish may land before its futex wait and not end that sleep; the
// fourth publish must wake it. A producer that loads the count after its head store
// takes the new sleep's count for the one it woke and skips the fourth wake: the
// receiver sleeps on with a message in the ring (it lost a wake once, 60 s under the
// ASan run). Loaded before the store, the count is the old sleep's and the new one is
// woken.
TEST_F(WakeOrder, ASleepThatSawTheNewHeadIsWokenByTheNextPublish) {
  c.SleepWhileHeadIs(c.LoadHead(), 0, nullptr);  // counted sleep 1 (returns at once)
  ASSERT_NE(c.ConsumerFlags() & layout::kConsumerCountsSleeps, 0u);
  ASSERT_TRUE(p.Write(msg, sizeof msg));  // woken (no count from before this store)
  ASSERT_TRUE(p.Write(msg, sizeof msg));  // woken, sleep 1's count remembered
  ASSERT_EQ(c.Read(out, sizeof out), 8u);
  ASSERT_EQ(c.Read(out, sizeof out), 8u);
  bool stepped = false;
  {
    AtSeam seam(&test_seams::before_wake_check, [&] {
      if (stepped) return;
      stepped = true;
      // The receiver, after the producer's head store: message 3 is there.
      EXPECT_EQ(c.Read(out, sizeof out), 8u);
      EXPECT_EQ(c.Read(out, sizeof out), 0u);        // nothing more
      c.SleepWhileHeadIs(c.LoadHead(), 0, nullptr);  // counted sleep 2, on the new head
    });
    ASSERT_TRUE(p.Write(msg, sizeof msg));  // message 3
  }
  ASSERT_TRUE(stepped) << "the seam did not run: is this built with SHMRING_TEST_SEAMS?";
  wait::ResetCounters();
  ASSERT_TRUE(p.Write(msg, sizeof msg));  // message 4
  EXPECT_EQ(wait::GetCounters().wakes, 1u)
      << "message 4 did not wake a sleep that began after message 3's store";
  c.EndSleep();
}

// The mirror: the producer sleeps for space (counted) and is woken by two releases.
// At the third, it runs between the consumer's tail store and its wake decision: it
// sees the new tail and goes to sleep again on it (a new count). The fourth release
// must wake that sleep; a consumer that loads the producer's count after its tail
// store takes the new sleep's count for the one it woke and skips the wake.
TEST_F(WakeOrder, AProducerSleepThatSawTheNewTailIsWokenByTheNextRelease) {
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(p.Write(msg, sizeof msg));
  p.BeginSpaceWait();
  p.SleepForSpace(0, c.LoadTail() + 8, 0, nullptr);  // counted sleep 1 (returns at once)
  ASSERT_NE(p.ProducerFlags() & layout::kProducerCountsSleeps, 0u);
  ASSERT_EQ(c.Read(out, sizeof out), 8u);  // wakes it (no count from before this store)
  ASSERT_EQ(c.Read(out, sizeof out), 8u);  // wakes it, sleep 1's count remembered
  bool stepped = false;
  {
    AtSeam seam(&test_seams::after_tail_store, [&] {
      if (stepped) return;
      stepped = true;
      // The producer, after the consumer's tail store: it sleeps again on the new tail.
      p.SleepForSpace(0, c.LoadTail(), 0, nullptr);  // counted sleep 2
    });
    ASSERT_EQ(c.Read(out, sizeof out), 8u);  // release 3
  }
  ASSERT_TRUE(stepped) << "the seam did not run: is this built with SHMRING_TEST_SEAMS?";
  wait::ResetCounters();
  ASSERT_EQ(c.Read(out, sizeof out), 8u);  // release 4
  EXPECT_EQ(wait::GetCounters().wakes, 1u)
      << "release 4 did not wake a sleep for space that began after release 3's tail store";
  p.EndSpaceWait();
}
