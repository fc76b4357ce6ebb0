// Fan-out: one producer, several receivers of one ring (ProducerOptions::max_receivers),
// each claiming a slot; lossless and live receivers; dead receivers reaped; the
// stream-information side area. No timed assertions: a wrong result hangs or fails.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "blocking_call.hpp"
#include "ring_name_test.hpp"
#include "shm/shm_channel.hpp"
#include "vectors.hpp"

using shm::ConsumerOptions;
using shm::kForever;
using shm::MessageView;
using shm::ProducerOptions;
using shm::ShmConsumer;
using shm::ShmProducer;
using shm::Status;
namespace layout = shm::layout;

namespace {

constexpr uint32_t kMsg = 200;  // bytes per message: [u64 seq][filler = seq & 0xff]

void Fill(uint64_t seq, uint8_t* out) {
  std::memcpy(out, &seq, 8);
  std::memset(out + 8, static_cast<int>(seq & 0xff), kMsg - 8);
}

// The sequence number of a message, or ~0 when its bytes are not a whole message.
uint64_t SeqOf(const uint8_t* m, uint32_t len) {
  if (len != kMsg) return ~uint64_t{0};
  uint64_t seq;
  std::memcpy(&seq, m, 8);
  for (uint32_t i = 8; i < kMsg; ++i) {
    if (m[i] != static_cast<uint8_t>(seq & 0xff)) return ~uint64_t{0};
  }
  return seq;
}

ProducerOptions Fan(uint32_t n, uint32_t capacity = 4096) {
  ProducerOptions o;
  o.capacity = capacity;
  o.max_receivers = n;
  return o;
}

ConsumerOptions Mode(uint32_t mode) {
  ConsumerOptions o;
  o.mode = mode;
  return o;
}

// Writes messages [from, to), each waiting up to `timeout_ns` for room.
void WriteSeqs(ShmProducer& p, uint64_t from, uint64_t to, int64_t timeout_ns = kForever) {
  uint8_t msg[kMsg];
  for (uint64_t seq = from; seq < to; ++seq) {
    Fill(seq, msg);
    ASSERT_EQ(p.WriteFor(msg, kMsg, timeout_ns), Status::kOk) << seq;
  }
}

// The fan-out tests' fixture: fresh ring names, ends kept until the test ends.
class FanOut : public shmtest::RingNameTest {
 protected:
  FanOut() : RingNameTest("fan") {}
};
class FanOutReservations : public FanOut {};

// Reads until end of stream; every message must be the next in sequence.
void ReadAll(ShmConsumer* c, uint64_t count, std::string* failure) {
  uint8_t buf[kMsg];
  for (uint64_t want = 0; want < count; ++want) {
    const shm::ReadResult r = c->ReadFor(buf, kMsg, kForever);
    if (r.status != Status::kOk) {
      *failure = "read " + std::to_string(want) + ": status " + shm::StatusName(r.status);
      return;
    }
    if (SeqOf(buf, r.len) != want) {
      *failure =
          "message " + std::to_string(want) + " came as " + std::to_string(SeqOf(buf, r.len));
      return;
    }
  }
  const shm::ReadResult end = c->ReadFor(buf, kMsg, kForever);
  if (end.status != Status::kClosed) *failure = "no end of stream after the last message";
}

TEST_F(FanOut, SlotsAreClaimedLowestFirstAndLimited) {
  ShmProducer& p = Producer(Fan(3));
  ASSERT_TRUE(AllOpen());
  const std::string& name = p.name();
  EXPECT_EQ(p.max_receivers(), 3u);
  auto a = std::make_unique<ShmConsumer>(name);
  ShmConsumer b(name);
  ShmConsumer c(name);
  ASSERT_TRUE(a->IsValid() && b.IsValid() && c.IsValid()) << a->error() << b.error() << c.error();
  EXPECT_EQ(a->slot(), 0u);
  EXPECT_EQ(b.slot(), 1u);
  EXPECT_EQ(c.slot(), 2u);
  ShmConsumer d(name);
  EXPECT_FALSE(d.IsValid());
  EXPECT_NE(d.error().find("already has 3 receivers"), std::string::npos) << d.error();
  for (uint32_t k = 0; k < 3; ++k) EXPECT_TRUE(p.ReceiverAttached(k)) << k;
  a.reset();  // slot 0 is free again: the next receiver takes it
  EXPECT_FALSE(p.ReceiverAttached(0));
  ShmConsumer e(name);
  ASSERT_TRUE(e.IsValid()) << e.error();
  EXPECT_EQ(e.slot(), 0u);
}

TEST_F(FanOut, SecondReceiverOfADefaultRingIsRefusedAsBefore) {
  ShmProducer& p = Producer(4096u);
  ASSERT_TRUE(AllOpen());
  EXPECT_EQ(p.max_receivers(), 1u);
  Consumer();
  ASSERT_TRUE(AllOpen());
  ShmConsumer b(p.name());
  EXPECT_FALSE(b.IsValid());
  EXPECT_NE(b.error().find("already has a consumer (pid " + std::to_string(getpid()) +
                           "); a ring has one consumer"),
            std::string::npos)
      << b.error();
}

TEST_F(FanOut, EveryLosslessReceiverGetsEveryMessageWrittenOnce) {
  ShmProducer& p = Producer(Fan(4));
  constexpr uint64_t kCount = 3000;  // ~150 laps of the 4 KiB ring
  std::vector<ShmConsumer*> rx;
  for (int i = 0; i < 4; ++i) rx.push_back(&Consumer());
  ASSERT_TRUE(AllOpen());
  std::vector<std::string> failures(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back(ReadAll, rx[i], kCount, &failures[i]);
  ASSERT_NO_FATAL_FAILURE(WriteSeqs(p, 0, kCount));
  p.Close();
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(failures[i], "") << "receiver " << i;
}

// A live receiver that does not read never holds the producer back: the producer
// writes many laps with a lossless receiver keeping up; the live one then skips to
// the newest record, counts the skip, and what it reads is whole.
TEST_F(FanOut, LiveReceiverSkipsWhileLosslessLosesNothing) {
  ShmProducer& p = Producer(Fan(2));
  ShmConsumer& lossless = Consumer(Mode(layout::kModeLossless));
  ShmConsumer& live = Consumer(Mode(layout::kModeLive));
  ASSERT_TRUE(AllOpen());
  EXPECT_EQ(live.mode(), layout::kModeLive);
  constexpr uint64_t kCount = 2000;
  std::string failure;
  std::thread reader(ReadAll, &lossless, kCount, &failure);
  ASSERT_NO_FATAL_FAILURE(WriteSeqs(p, 0, kCount));
  p.Close();
  reader.join();
  EXPECT_EQ(failure, "");
  uint8_t buf[kMsg];
  const shm::ReadResult r = live.ReadFor(buf, kMsg, 0);
  ASSERT_EQ(r.status, Status::kOk);
  const uint64_t seq = SeqOf(buf, r.len);
  EXPECT_GT(live.skipped(), 0u);
  EXPECT_EQ(seq, kCount - 1) << "a live receiver that fell behind skips to the newest record";
  EXPECT_EQ(p.ring()->SlotSkipped(live.slot()), live.skipped());
  EXPECT_EQ(live.ReadFor(buf, kMsg, kForever).status, Status::kClosed);
}

// A live receiver reading (zero-copy, holding each record briefly) while the producer
// laps it: every message it sees is whole and in order, some are skipped, and the
// lossless receiver gets everything. Under ThreadSanitizer this is the pin/floor race.
TEST_F(FanOut, LiveReceiverReadingConcurrentlyNeverSeesATornMessage) {
  ShmProducer& p = Producer(Fan(2, 2048));
  ShmConsumer& lossless = Consumer(Mode(layout::kModeLossless));
  ShmConsumer& live = Consumer(Mode(layout::kModeLive));
  ASSERT_TRUE(AllOpen());
  constexpr uint64_t kCount = 20000;
  std::string failure, live_failure;
  std::thread reader(ReadAll, &lossless, kCount, &failure);
  std::thread watcher([&] {
    uint64_t last = 0;
    bool first = true;
    for (;;) {
      MessageView v;
      const Status s = live.AcquireFor(&v, kForever);
      if (s == Status::kClosed) return;
      if (s != Status::kOk) {
        live_failure = std::string("status ") + shm::StatusName(s);
        return;
      }
      const uint64_t seq = SeqOf(v.data, v.len);
      if (seq == ~uint64_t{0} || (!first && seq <= last)) {
        live_failure = "torn or out-of-order message after " + std::to_string(last);
        return;
      }
      first = false;
      last = seq;
      live.Release(v);
    }
  });
  ASSERT_NO_FATAL_FAILURE(WriteSeqs(p, 0, kCount));
  p.Close();
  reader.join();
  watcher.join();
  EXPECT_EQ(failure, "");
  EXPECT_EQ(live_failure, "");
}

// A record a live receiver holds is never reused: with it held, the producer stops
// at the held record (kFull without waiting), and the record's bytes stay intact.
TEST_F(FanOut, HeldRecordOfALiveReceiverIsNeverReused) {
  ShmProducer& p = Producer(Fan(2, 1024));
  ShmConsumer& live = Consumer(Mode(layout::kModeLive));
  ASSERT_TRUE(AllOpen());
  uint8_t msg[kMsg];
  Fill(7, msg);
  ASSERT_EQ(p.WriteFor(msg, kMsg, 0), Status::kOk);
  MessageView v;
  ASSERT_EQ(live.AcquireFor(&v, 0), Status::kOk);
  ASSERT_EQ(SeqOf(v.data, v.len), 7u);
  uint64_t written = 0;
  for (uint64_t seq = 8;; ++seq) {
    Fill(seq, msg);
    const Status s = p.WriteFor(msg, kMsg, 0);
    if (s == Status::kFull) break;
    ASSERT_EQ(s, Status::kOk);
    ASSERT_LT(++written, 100u) << "the producer ran over a held record";
  }
  EXPECT_EQ(SeqOf(v.data, v.len), 7u);  // intact while held
  live.Release(v);
  Fill(1000, msg);
  EXPECT_EQ(p.WriteFor(msg, kMsg, 0), Status::kOk);  // released: room again
}

// The reaper reads a slot's flags (attach count) BEFORE it probes the role byte and
// hands them to MarkSlotDead: a receiver that claims the slot between the probe ("free")
// and the mark has bumped the count past them and is counted. (MarkSlotDead re-reading
// the count after the probe buried such a receiver: the producer ran over its records;
// tests/python/test_fanout.py forces the same window through the reaper itself.)
TEST_F(FanOut, ReceiverClaimingASlotWhileItIsReapedIsCounted) {
  ShmProducer& p = Producer(Fan(2, 1024));
  ShmConsumer& a = Consumer();
  ASSERT_TRUE(AllOpen());
  // What a receiver killed in slot 1 leaves: ATTACHED set, role byte free.
  auto* flags1 =
      reinterpret_cast<uint32_t*>(p.ring()->base() + layout::SlotOffset(1) + layout::kSlotFlags);
  *flags1 = layout::kConsumerAttached | layout::kConsumerAttachCountOne;
  const uint32_t seen = p.ring()->SlotFlags(1);  // the reaper's look
  ASSERT_FALSE(p.ReceiverAttached(1));           // its probe: free
  ShmConsumer& b = Consumer();                   // claims slot 1 right after the probe
  ASSERT_TRUE(AllOpen());
  ASSERT_EQ(b.slot(), 1u);
  p.ring()->MarkSlotDead(1, seen);  // the reaper's mark
  uint8_t msg[kMsg], buf[kMsg];
  uint64_t written = 0;
  for (;; ++written) {  // a reads everything, b nothing: b's records must stop the producer
    Fill(written, msg);
    const Status s = p.WriteFor(msg, kMsg, 0);
    if (s == Status::kFull) break;
    ASSERT_EQ(s, Status::kOk);
    const shm::ReadResult r = a.ReadFor(buf, kMsg, 0);
    ASSERT_EQ(r.status, Status::kOk);
    ASSERT_EQ(SeqOf(buf, r.len), written);
    ASSERT_LT(written, 100u) << "the producer ran over the new receiver's records";
  }
  const shm::ReadResult r = b.ReadFor(buf, kMsg, 0);
  ASSERT_EQ(r.status, Status::kOk);
  EXPECT_EQ(SeqOf(buf, r.len), 0u);
}

// A receiver clears a dead receiver's ATTACHED flag as soon as it claims the slot,
// before any other word of it: "claimed, ATTACHED clear" is a receiver attaching
// (PROTOCOL.md section 7), never the dead one (the sink announces a receiver only
// once its flag is set). Seen through an attach refused after its claim (a mode
// no ring knows): the flag stays clear, the attach count is kept.
TEST_F(FanOut, ClaimClearsADeadReceiversAttachedFlagFirst) {
  ShmProducer& p = Producer(Fan(2, 1024));
  ASSERT_TRUE(AllOpen());
  auto* flags0 =
      reinterpret_cast<uint32_t*>(p.ring()->base() + layout::SlotOffset(0) + layout::kSlotFlags);
  *flags0 = layout::kConsumerAttached | 5 * layout::kConsumerAttachCountOne;  // a dead one's
  ASSERT_FALSE(p.ReceiverAttached(0));
  shm::ConsumerOptions bad;
  bad.mode = 7;  // refused after the claim: the ring's constructor checks it
  ShmConsumer refused(p.name(), bad);
  ASSERT_FALSE(refused.IsValid());
  EXPECT_EQ(p.ring()->SlotFlags(0), 5 * layout::kConsumerAttachCountOne)
      << "the claim left the dead receiver's ATTACHED flag set";
  EXPECT_FALSE(p.ReceiverAttached(0)) << "the refused attach gave its claim back";
  ShmConsumer c(p.name());  // a real attach: the flag again, the count bumped once
  ASSERT_TRUE(c.IsValid()) << c.error();
  EXPECT_EQ(p.ring()->SlotFlags(0) & ~(layout::kConsumerAttachCountOne - 1),
            6 * layout::kConsumerAttachCountOne);
  EXPECT_NE(p.ring()->SlotFlags(0) & layout::kConsumerAttached, 0u);
}

// Writes (a reading everything) until the producer's floor is above `past` and its
// head more than a capacity beyond it; `*seq` counts the messages.
void Lap(ShmProducer* p, ShmConsumer* a, uint32_t past, uint64_t* seq) {
  const uint8_t* base = p->ring()->base();
  uint8_t msg[kMsg], buf[kMsg];
  for (int i = 0; i < 100; ++i) {
    uint32_t floor, head;
    std::memcpy(&floor, base + layout::kFloorOffset, 4);
    std::memcpy(&head, base + layout::kHeadOffset, 4);
    if (static_cast<int32_t>(floor - past) > 0 && head - past > p->ring()->capacity()) return;
    Fill(*seq, msg);
    ASSERT_EQ(p->WriteFor(msg, kMsg, 0), Status::kOk);
    const shm::ReadResult r = a->ReadFor(buf, kMsg, 0);
    ASSERT_EQ(r.status, Status::kOk);
    ASSERT_EQ(SeqOf(buf, r.len), *seq);
    ++*seq;
  }
  FAIL() << "the producer did not lap " << past;
}

// A lossless receiver stores its start (the oldest tail it saw), sets ATTACHED, then
// checks the floor. If the producer lapped that start meanwhile, it sees an attached
// lossless slot more than a capacity behind its head: that receiver is about to see the
// floor and move, so the producer writes on (it failed with "the consumer is corrupt").
TEST_F(FanOut, LosslessStartTheProducerAlreadyLappedIsNotCorrupt) {
  ShmProducer& p = Producer(Fan(2, 1024));
  ShmConsumer& a = Consumer();
  ASSERT_TRUE(AllOpen());
  const uint32_t start = p.ring()->LoadHead();  // what the attaching receiver read
  uint64_t seq = 0;
  ASSERT_NO_FATAL_FAILURE(Lap(&p, &a, start, &seq));
  // The attaching receiver's words at the instant before its floor check.
  uint8_t* slot1 = p.ring()->base() + layout::SlotOffset(1);
  *reinterpret_cast<uint32_t*>(slot1 + layout::kSlotMode) = layout::kModeLossless;
  *reinterpret_cast<uint32_t*>(slot1 + layout::kSlotTail) = start;
  *reinterpret_cast<uint32_t*>(slot1 + layout::kSlotFlags) =
      layout::kConsumerAttached | layout::kConsumerAttachCountOne;
  uint8_t msg[kMsg], buf[kMsg];
  for (uint64_t n = 1000; n < 1010; ++n) {  // slow paths included: each scans the slots
    Fill(n, msg);
    ASSERT_EQ(p.WriteFor(msg, kMsg, 0), Status::kOk) << p.error();
    const shm::ReadResult r = a.ReadFor(buf, kMsg, 0);
    ASSERT_EQ(r.status, Status::kOk);
    ASSERT_EQ(SeqOf(buf, r.len), n);
  }
}

// A receiver killed with SIGKILL while holding a record does not wedge the producer
// or the other receiver: its role byte is free, the producer reaps the slot.
TEST_F(FanOut, KilledReceiverIsReapedAndOthersContinue) {
  ShmProducer& p = Producer(Fan(3));
  ASSERT_TRUE(AllOpen());
  const std::string& name = p.name();
  const pid_t child = shmtest::ForkHolding([&]() -> int {
    ShmConsumer c(name);
    if (!c.IsValid()) return 2;
    shmtest::HoldUntilKilled();  // attached, lossless, reading nothing
  });
  ASSERT_GT(child, 0);
  ShmConsumer& other = Consumer();
  ASSERT_TRUE(AllOpen());
  EXPECT_EQ(other.slot(), 1u);
  EXPECT_TRUE(p.ReceiverAttached(0));
  constexpr uint64_t kCount = 1000;  // ~50 laps: the dead receiver's slot must be reaped
  std::string failure;
  std::thread reader(ReadAll, &other, kCount, &failure);
  ASSERT_NO_FATAL_FAILURE(WriteSeqs(p, 0, 10));
  // Before the ring is full: the producer then waits for the dead slot.
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_NO_FATAL_FAILURE(WriteSeqs(p, 10, kCount));
  p.Close();
  reader.join();
  EXPECT_EQ(failure, "");
  EXPECT_FALSE(p.ReceiverAttached(0));
  // Its slot is free for the next receiver (lowest first).
  ShmConsumer next(name);
  ASSERT_TRUE(next.IsValid()) << next.error();
  EXPECT_EQ(next.slot(), 0u);
}

// Receivers join and leave in a loop while one lossless receiver reads everything.
TEST_F(FanOut, ReceiversJoinAndLeaveInALoop) {
  ShmProducer& p = Producer(Fan(4));
  ShmConsumer& steady = Consumer();
  ASSERT_TRUE(AllOpen());
  const std::string& name = p.name();
  constexpr uint64_t kCount = 2000;
  std::string failure;
  std::thread reader(ReadAll, &steady, kCount, &failure);
  std::atomic<bool> done{false};
  std::string churn_failure;
  std::thread churn([&] {
    uint8_t buf[kMsg];
    for (int cycle = 0; cycle < 100; ++cycle) {
      ShmConsumer c(name, Mode(cycle % 2 ? layout::kModeLive : layout::kModeLossless));
      if (!c.IsValid()) {
        churn_failure = "cycle " + std::to_string(cycle) + ": " + c.error();
        return;
      }
      for (int i = 0; i < 3; ++i) {
        const shm::ReadResult r = c.ReadFor(buf, kMsg, 0);
        if (r.status == Status::kOk && SeqOf(buf, r.len) == ~uint64_t{0}) {
          churn_failure = "cycle " + std::to_string(cycle) + ": a torn message";
          return;
        }
      }
    }
    done = true;
  });
  ASSERT_NO_FATAL_FAILURE(WriteSeqs(p, 0, kCount));
  churn.join();
  p.Close();
  reader.join();
  EXPECT_EQ(failure, "");
  EXPECT_EQ(churn_failure, "");
  EXPECT_TRUE(done.load());
}

TEST_F(FanOut, StreamInfoReachesLateReceivers) {
  ShmProducer& p = Producer(Fan(2));
  ASSERT_TRUE(AllOpen());
  std::string info;
  uint32_t index = 0;
  ShmConsumer& early = Consumer();
  EXPECT_FALSE(early.StreamInfo(&info, &index));
  EXPECT_TRUE(p.SetStreamInfo("video/x-raw, width=(int)1920", 96));
  EXPECT_FALSE(p.SetStreamInfo(std::string(layout::kInfoMax + 1, 'x'), 0));
  ShmConsumer& late = Consumer();
  ASSERT_TRUE(late.StreamInfo(&info, &index));
  EXPECT_EQ(info, "video/x-raw, width=(int)1920");
  EXPECT_EQ(index, 96u);
}

TEST_F(FanOut, MaxReceiversOutOfRangeIsRefused) {
  for (uint32_t bad : {0u, 17u}) {
    ShmProducer p(Name(), Fan(bad));
    EXPECT_FALSE(p.IsValid());
    EXPECT_NE(p.error().find("max_receivers " + std::to_string(bad)), std::string::npos)
        << p.error();
  }
}

}  // namespace

namespace {

// A floor above the head (only a hostile or corrupt producer writes one) must not make
// an attach or a live read loop forever (found by fuzz_segment).
TEST_F(FanOut, FloorAboveTheHeadDoesNotHangAttachOrRead) {
  ShmProducer& p = Producer(Fan(2));
  ASSERT_TRUE(AllOpen());
  uint8_t msg[kMsg];
  Fill(1, msg);
  ASSERT_EQ(p.WriteFor(msg, kMsg, 0), Status::kOk);
  auto* floor = reinterpret_cast<uint32_t*>(p.ring()->base() + layout::kFloorOffset);
  *floor = 1u << 20;  // far above the head
  Consumer();
  ShmConsumer& live = Consumer(Mode(layout::kModeLive));
  ASSERT_TRUE(AllOpen());
  uint8_t buf[kMsg];
  const shm::ReadResult r = live.ReadFor(buf, kMsg, 0);
  EXPECT_TRUE(r.status == Status::kOk || r.status == Status::kEmpty) << shm::StatusName(r.status);
}

// Several reservations in flight on a fan-out ring: finished out of order (one given
// up as a PAD record), published in ring order to every lossless receiver, and
// last_start names the newest record the head move published.
TEST_F(FanOutReservations, OutOfOrderRecordsReachEveryReceiverAndLastStartIsTheNewest) {
  ShmProducer& p = Producer(Fan(2));
  ShmConsumer& a = Consumer();
  ShmConsumer& b = Consumer();
  ASSERT_TRUE(AllOpen());
  shm::Reservation r[3];
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_EQ(p.ReserveNext(kMsg, &r[i], 0, nullptr), Status::kOk) << i;
    Fill(i, r[i].payload);
  }
  const auto* last_start =
      reinterpret_cast<const uint32_t*>(p.ring()->base() + layout::kLastStartOffset);
  p.Publish(r[2], kMsg);
  p.Abandon(r[1]);
  EXPECT_EQ(p.ring()->LoadHead(), r[0].start) << "nothing before the unfinished first record";
  p.Publish(r[0], kMsg);
  EXPECT_EQ(p.ring()->LoadHead(), r[2].end);
  EXPECT_EQ(*last_start, r[2].start);
  for (ShmConsumer* c : {&a, &b}) {
    uint8_t buf[kMsg];
    shm::ReadResult got = c->ReadFor(buf, kMsg, 0);
    ASSERT_EQ(got.status, Status::kOk);
    EXPECT_EQ(SeqOf(buf, got.len), 0u);
    got = c->ReadFor(buf, kMsg, 0);
    ASSERT_EQ(got.status, Status::kOk);
    EXPECT_EQ(SeqOf(buf, got.len), 2u) << "the PAD record is skipped";
    EXPECT_EQ(c->ReadFor(buf, kMsg, 0).status, Status::kEmpty);
  }
}

// The producer's free space is the lower of the slowest lossless receiver's limit and
// the oldest kept reservation.
TEST_F(FanOutReservations, FreeSpaceIsLimitedByTheSlowestReceiverAndTheOldestKept) {
  ShmProducer& p = Producer(Fan(2));
  ShmConsumer& fast = Consumer();
  ShmConsumer& slow = Consumer();
  ASSERT_TRUE(AllOpen());
  const uint32_t cap = p.ring()->capacity();
  const uint32_t rec = static_cast<uint32_t>(layout::RecordSize(kMsg));
  uint8_t buf[kMsg];
  shm::Reservation kept;
  ASSERT_EQ(p.ReserveNext(kMsg, &kept, 0, nullptr), Status::kOk);
  Fill(0, kept.payload);
  p.Publish(kept, kMsg, /*keep=*/true);
  for (ShmConsumer* c : {&fast, &slow}) ASSERT_EQ(c->ReadFor(buf, kMsg, 0).status, Status::kOk);
  EXPECT_EQ(p.ring()->WriteableBytes(), cap - rec) << "released by both, still kept";
  Fill(1, buf);
  ASSERT_EQ(p.WriteFor(buf, kMsg, 0), Status::kOk);
  ASSERT_EQ(fast.ReadFor(buf, kMsg, 0).status, Status::kOk);
  EXPECT_EQ(p.ring()->WriteableBytes(), cap - 2 * rec) << "the kept record is the older limit";
  p.Unkeep(kept);
  EXPECT_EQ(p.ring()->WriteableBytes(), cap - rec) << "the slow receiver is the limit now";
  ASSERT_EQ(slow.ReadFor(buf, kMsg, 0).status, Status::kOk);
  EXPECT_EQ(p.ring()->WriteableBytes(), cap);
}

// ReserveNext waiting for room on a fan-out ring returns when the slowest lossless
// receiver releases (the faster one alone frees nothing). A wrong wake hangs.
TEST_F(FanOutReservations, ReserveNextWaitsForTheSlowestReceiver) {
  ShmProducer& p = Producer(Fan(2));
  ASSERT_TRUE(AllOpen());
  p.SetConcurrent(true);
  ShmConsumer& fast = Consumer();
  ShmConsumer& slow = Consumer();
  ASSERT_TRUE(AllOpen());
  uint8_t buf[kMsg];
  uint64_t written = 0;
  for (;; ++written) {
    shm::Reservation r;
    const Status s = p.ReserveNext(kMsg, &r, 0, nullptr);
    if (s == Status::kFull) break;
    ASSERT_EQ(s, Status::kOk);
    Fill(written, r.payload);
    p.Publish(r, kMsg);
  }
  ASSERT_GT(written, 2u);
  for (uint64_t i = 0; i < written; ++i) ASSERT_EQ(fast.ReadFor(buf, kMsg, 0).status, Status::kOk);
  shm::Reservation r;
  ASSERT_EQ(p.ReserveNext(kMsg, &r, 0, nullptr), Status::kFull) << "the slow receiver holds it";
  shmtest::BlockingCall waiter([&] {
    shm::Reservation w;
    const Status s = p.ReserveNext(kMsg, &w, kForever, nullptr);
    if (s == Status::kOk) {
      Fill(written, w.payload);
      p.Publish(w, kMsg);
    }
    return s;
  });
  for (uint64_t i = 0; i < written; ++i) {
    const shm::ReadResult got = slow.ReadFor(buf, kMsg, kForever);
    ASSERT_EQ(got.status, Status::kOk);
    EXPECT_EQ(SeqOf(buf, got.len), i);
  }
  EXPECT_EQ(waiter.Join(), Status::kOk);
  const shm::ReadResult got = slow.ReadFor(buf, kMsg, kForever);
  ASSERT_EQ(got.status, Status::kOk);
  EXPECT_EQ(SeqOf(buf, got.len), written);
}

// A live receiver that fell behind with no sync point left jumps to the newest record
// (the last mark); when that names a PAD record (the newest thing published was a
// reservation given up) it skips it silently.
TEST_F(FanOutReservations, LiveReceiverJumpingToAPadRecordSkipsIt) {
  ShmProducer& p = Producer(Fan(2));
  ShmConsumer& live = Consumer(Mode(layout::kModeLive));
  ASSERT_TRUE(AllOpen());
  uint8_t buf[kMsg];
  const uint32_t laps = 3 * p.ring()->capacity() / static_cast<uint32_t>(layout::RecordSize(kMsg));
  for (uint64_t i = 0; i < laps; ++i) {
    Fill(i, buf);
    // No sync points: the lapped receiver resumes at the newest record (last mark).
    ASSERT_EQ(p.WriteFor(buf, kMsg, 0, /*sync=*/false), Status::kOk)
        << "a live receiver never holds us back";
  }
  shm::Reservation pad;
  ASSERT_EQ(p.ReserveNext(kMsg, &pad, 0, nullptr), Status::kOk);
  p.Abandon(pad);
  const auto* last_start =
      reinterpret_cast<const uint32_t*>(p.ring()->base() + layout::kLastStartOffset);
  ASSERT_EQ(*last_start, pad.start) << "the newest record published is the PAD record";
  EXPECT_EQ(live.ReadFor(buf, kMsg, 0).status, Status::kEmpty) << "skipped, never delivered";
  EXPECT_EQ(live.skipped(), laps) << "every message was lost; the PAD record is none";
  Fill(laps, buf);
  ASSERT_EQ(p.WriteFor(buf, kMsg, 0), Status::kOk);
  const shm::ReadResult got = live.ReadFor(buf, kMsg, 0);
  ASSERT_EQ(got.status, Status::kOk);
  EXPECT_EQ(SeqOf(buf, got.len), laps);
}

}  // namespace
