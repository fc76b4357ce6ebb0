// The producer's "count read before the store" rule (docs/DESIGN.md "Wake once per
// sleep"), driven step by step in one thread: this executable compiles
// byte_ring_buffer.cpp with SHMRING_TEST_SEAMS, so a hook runs the receiver's steps
// between the producer's head store and its wake decision. Wake counts come from
// wait::GetCounters(), never from the clock.
#include <gtest/gtest.h>

#include <functional>
#include <memory>

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

// Installs `step` at the producer's seam for the life of the object.
struct AtWakeCheck {
  explicit AtWakeCheck(std::function<void()> step) : fn(std::move(step)) {
    g_step = &fn;
    test_seams::before_wake_check = &RunStep;
  }
  ~AtWakeCheck() {
    test_seams::before_wake_check = nullptr;
    g_step = nullptr;
  }
  std::function<void()> fn;
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
TEST(WakeOrder, ASleepThatSawTheNewHeadIsWokenByTheNextPublish) {
  shmtest::RingImage img(4096);
  ASSERT_EQ(img.Init(), "");
  ByteRingBuffer p(img.base(), img.size(), true);
  ByteRingBuffer c(img.base(), img.size(), false);
  ASSERT_TRUE(p.valid() && c.valid());
  const char msg[8] = "message";
  char out[8];
  c.SleepWhileHeadIs(c.LoadHead(), 0, nullptr);  // counted sleep 1 (returns at once)
  ASSERT_NE(c.ConsumerFlags() & layout::kConsumerCountsSleeps, 0u);
  ASSERT_TRUE(p.Write(msg, sizeof msg));  // woken (no count from before this store)
  ASSERT_TRUE(p.Write(msg, sizeof msg));  // woken, sleep 1's count remembered
  ASSERT_EQ(c.Read(out, sizeof out), 8u);
  ASSERT_EQ(c.Read(out, sizeof out), 8u);
  bool stepped = false;
  {
    AtWakeCheck seam([&] {
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
