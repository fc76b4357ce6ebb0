// A receiver between opening a ring and claiming its slot while the stream moves to a
// new ring under the same name (ShmProducer::ReleaseName; shmringsink's move to a
// larger ring), driven in one thread: this executable compiles shm_channel.cpp with
// SHMRING_TEST_SEAMS, so a hook runs the producer's steps after the consumer opened
// the old segment and before it claims a slot there. The old producer sees no
// receiver and lets go of its role lock (shmringsink's drop_left_rings) before the
// claim: the receiver must still take the end of the old ring for a hand-over (and
// follow), while a stream that really ended stays ended.
#include <gtest/gtest.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ring_name_test.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"
#include "test_seams.hpp"
#include "test_util.hpp"

using namespace shm;
using shmtest::kGuardNs;

namespace {

std::function<void()>* g_step = nullptr;  // the producer's steps, run by the seam
void RunStep() {
  if (g_step != nullptr) (*g_step)();
}

// Runs `step` once, at the next consumer's claim, for the life of the object.
struct BeforeClaim {
  explicit BeforeClaim(std::function<void()> step) : fn(std::move(step)) {
    g_step = &fn;
    test_seams::before_claim = &RunStep;
  }
  ~BeforeClaim() {
    test_seams::before_claim = nullptr;
    g_step = nullptr;
  }
  std::function<void()> fn;
};

class HandoverWindow : public shmtest::RingNameTest {
 protected:
  HandoverWindow() : RingNameTest("hwin") {}
};

ReadResult ReadOne(ShmConsumer& c, std::string* out) {
  std::vector<char> buf(4096);
  const ReadResult r = c.ReadFor(buf.data(), static_cast<uint32_t>(buf.size()), kGuardNs);
  if (r) out->assign(buf.data(), r.len);
  return r;
}

// A producer of ring `name` (4096 bytes) with one message, `last`, in it.
std::unique_ptr<ShmProducer> WithOneMessage(const std::string& name, const std::string& last) {
  auto p = std::make_unique<ShmProducer>(name, 4096);
  EXPECT_TRUE(p->IsValid()) << p->error();
  EXPECT_TRUE(p->Write(last.data(), static_cast<uint32_t>(last.size())));
  return p;
}

// A consumer of `name` that claims its slot only after `step` ran (the seam).
std::unique_ptr<ShmConsumer> ClaimingAfter(const std::string& name, std::function<void()> step) {
  BeforeClaim seam(std::move(step));
  return std::make_unique<ShmConsumer>(name);
}

// A move with nobody attached: the name released, `*next` (`capacity` bytes) made
// under it, the old ring CLOSED, then `old` goes with its role lock.
void MoveWithNobodyAttached(const std::string& name, std::unique_ptr<ShmProducer>* old,
                            std::unique_ptr<ShmProducer>* next, uint32_t capacity) {
  std::string err;
  ASSERT_TRUE((*old)->ReleaseName(&err)) << err;
  *next = std::make_unique<ShmProducer>(name, capacity);
  ASSERT_TRUE((*next)->IsValid()) << (*next)->error();
  (*old)->Close();
  old->reset();
}

// `c` reads `last`, then finds the ring CLOSED and drained.
void ExpectLastThenClosed(ShmConsumer& c, const std::string& last) {
  std::string got;
  ASSERT_TRUE(ReadOne(c, &got));
  EXPECT_EQ(got, last);
  EXPECT_EQ(ReadOne(c, &got).status, Status::kClosed);
}

}  // namespace

// Opened before the move, claimed after it and after the old producer let go of its
// lock: the receiver reads what the old ring holds, then kClosed with HandedOver
// (before: false, as for a stream cut short), and the name gives the new ring.
TEST_F(HandoverWindow, AReceiverThatClaimsAfterTheMoveFollows) {
  const std::string name = Name();
  auto old = WithOneMessage(name, "last of the old");
  std::unique_ptr<ShmProducer> next;
  bool stepped = false;
  const auto c = ClaimingAfter(name, [&] {
    if (stepped) return;
    stepped = true;
    MoveWithNobodyAttached(name, &old, &next, 16384);  // the old ring and its lock go
  });
  ASSERT_TRUE(stepped);
  ASSERT_TRUE(c->IsValid()) << c->error();
  ASSERT_TRUE(next);
  EXPECT_NE(c->generation(), next->generation()) << "attached to the old ring";
  ExpectLastThenClosed(*c, "last of the old");
  EXPECT_TRUE(c->HandedOver()) << "the stream goes on in the new ring under the name";
  ShmConsumer follower(name);
  ASSERT_TRUE(follower.IsValid()) << follower.error();
  EXPECT_EQ(follower.generation(), next->generation());
}

// The same window at a real end: the producer ended its stream and went away (no
// new ring) before the claim, or a new ring of the same process came only after a
// ring that was still open at the claim had lost its producer: the end of the old
// ring is the end of the stream.
TEST_F(HandoverWindow, AStreamThatEndedBeforeTheClaimStaysEnded) {
  const std::string name = Name();
  auto p = WithOneMessage(name, "the last");
  // p.reset(): unlinks the name, CLOSED, lock dropped
  const auto c = ClaimingAfter(name, [&] { p.reset(); });
  ASSERT_TRUE(c->IsValid()) << c->error();
  ExpectLastThenClosed(*c, "the last");
  EXPECT_FALSE(c->HandedOver()) << "no ring under the name";

  // Attached while the ring was open; its producer then ended and went away, and
  // the same process made a new ring under the name: not a hand-over.
  const std::string name2 = Name();
  auto q = std::make_unique<ShmProducer>(name2, 4096);
  ASSERT_TRUE(q->IsValid()) << q->error();
  ShmConsumer c2(name2);
  ASSERT_TRUE(c2.IsValid()) << c2.error();
  q.reset();
  ShmProducer q2(name2, 4096);
  ASSERT_TRUE(q2.IsValid()) << q2.error();
  std::string got;
  EXPECT_EQ(ReadOne(c2, &got).status, Status::kClosed);
  EXPECT_FALSE(c2.HandedOver()) << "its producer let go of its lock after we attached";
}

// The window with another process's ring under the name: the old producer released
// the name, CLOSED its ring and went away before the claim; the ring now under the
// name was created by another process. An unrelated stream: not a hand-over.
TEST_F(HandoverWindow, AnotherProcesssRingIsNotFollowed) {
  const std::string name = Name();
  shmtest::CuedChild other([&](const std::function<void(bool)>& made) {
    ShmProducer ring(name, 4096);
    made(ring.IsValid());
  });
  auto old = WithOneMessage(name, "cut short");
  bool made = false;
  const auto c = ClaimingAfter(name, [&] {
    std::string err;
    ASSERT_TRUE(old->ReleaseName(&err)) << err;
    made = other.Cue();  // another process takes the name
    old.reset();
  });
  EXPECT_TRUE(made);
  ASSERT_TRUE(c->IsValid()) << c->error();
  ExpectLastThenClosed(*c, "cut short");
  EXPECT_FALSE(c->HandedOver()) << "the name holds another process's ring";
  EXPECT_EQ(other.Release(), 0);
}

// A real end, then a restart in the same process under the same name: the ring was
// CLOSED at the claim, but no successor was under the name then (the producer ended
// and went away before the claim; its restart's ring came after the claim). Not a
// hand-over (before: followed, the restart's stream taken for the old one's rest).
TEST_F(HandoverWindow, ARestartAfterTheClaimIsNotFollowed) {
  const std::string name = Name();
  auto p = WithOneMessage(name, "the last");
  // p.reset(): unlinks the name, CLOSED, lock dropped
  const auto c = ClaimingAfter(name, [&] { p.reset(); });
  ASSERT_TRUE(c->IsValid()) << c->error();
  ShmProducer restarted(name, 4096);  // the app restarts its sender
  ASSERT_TRUE(restarted.IsValid()) << restarted.error();
  ExpectLastThenClosed(*c, "the last");
  EXPECT_FALSE(c->HandedOver()) << "a restart after a real end is another stream";
}

// The same after Close() (CLOSED, the name kept): a receiver opens the ring that
// still holds data, the producer goes away, the process makes a new ring under the
// name. The name held the old ring itself at the claim: not a hand-over.
TEST_F(HandoverWindow, ARestartAfterAClosedRingWasOpenedIsNotFollowed) {
  const std::string name = Name();
  auto p = WithOneMessage(name, "the last");
  p->Close();
  ShmConsumer c(name);
  ASSERT_TRUE(c.IsValid()) << c.error();
  p.reset();
  ShmProducer restarted(name, 4096);
  ASSERT_TRUE(restarted.IsValid()) << restarted.error();
  ExpectLastThenClosed(c, "the last");
  EXPECT_FALSE(c.HandedOver()) << "a restart after a real end is another stream";
}

// The trade-off (PROTOCOL.md section 5): a late claimer (CLOSED at its claim, the old
// producer gone) remembers the successor under the name then; when the stream moves
// again before it drained the old ring, the name holds a third ring, not the one it
// remembered, and its stream ends as cut short.
TEST_F(HandoverWindow, ASecondMoveBeforeALateClaimerDrainedEndsItsStream) {
  const std::string name = Name();
  auto old = WithOneMessage(name, "last of the old");
  std::unique_ptr<ShmProducer> next;
  const auto c = ClaimingAfter(name, [&] { MoveWithNobodyAttached(name, &old, &next, 16384); });
  ASSERT_TRUE(c->IsValid()) << c->error();
  ASSERT_TRUE(next);
  std::string err;
  ASSERT_TRUE(next->ReleaseName(&err)) << err;  // the second move
  ShmProducer third(name, 65536);
  ASSERT_TRUE(third.IsValid()) << third.error();
  next->Close();
  ExpectLastThenClosed(*c, "last of the old");
  EXPECT_FALSE(c->HandedOver()) << "the name holds a ring it did not see at its claim";
}
