// Live receivers that fall behind: where they resume (the newest sync point still
// in the ring, else the head) and how many records `skipped` says they lost
// (sequence numbers from the producer's head and sync marks). No timed assertions.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "shm/shm_channel.hpp"
#include "vectors.hpp"

using shm::ConsumerOptions;
using shm::ProducerOptions;
using shm::ShmConsumer;
using shm::ShmProducer;
using shm::StartAt;
using shm::Status;
namespace layout = shm::layout;

namespace {

constexpr uint32_t kMsg = 200;  // bytes per message: [u64 seq][filler]; 208-byte records
constexpr uint32_t kCapacity = 4096;

uint64_t SeqOf(const uint8_t* m) {
  uint64_t seq;
  std::memcpy(&seq, m, 8);
  return seq;
}

struct Ring {
  explicit Ring(const std::string& tag, StartAt start = StartAt::kOldest)
      : name(shmtest::UniqueName(tag)), producer(name, Options()), live(name, Live(start)) {}
  static ProducerOptions Options() {
    ProducerOptions o;
    o.capacity = kCapacity;
    o.max_receivers = 2;  // a live receiver never holds the producer back
    return o;
  }
  static ConsumerOptions Live(StartAt start) {
    ConsumerOptions o;
    o.mode = layout::kModeLive;
    o.start_at = start;
    return o;
  }
  // Writes message `seq` (never waits: the live receiver does not hold us back).
  void Write(uint64_t seq, bool sync) {
    uint8_t buf[kMsg] = {};
    std::memcpy(buf, &seq, 8);
    ASSERT_EQ(producer.WriteFor(buf, kMsg, 0, sync), Status::kOk) << seq;
  }
  // The sequence number of the next message the live receiver reads (~0: none).
  uint64_t Read() {
    uint8_t buf[kMsg];
    const shm::ReadResult r = live.ReadFor(buf, kMsg, 0);
    if (r.status != Status::kOk) return ~uint64_t{0};
    EXPECT_EQ(r.len, kMsg);
    return SeqOf(buf);
  }
  std::string name;
  ShmProducer producer;
  ShmConsumer live;
};

constexpr uint64_t kPerLap = kCapacity / layout::RecordSize(kMsg);  // 19

// Encoded video: a key frame every 10 messages. A receiver lapped three times over
// resumes at the newest key frame still in the ring (not at the newest record, a
// delta it could not decode), and `skipped` counts every record before it.
TEST(FanOutSkips, LappedLiveReceiverResumesAtTheNewestSyncPoint) {
  Ring r("skip-sync");
  ASSERT_TRUE(r.producer.IsValid()) << r.producer.error();
  ASSERT_TRUE(r.live.IsValid()) << r.live.error();
  const uint64_t written = 3 * kPerLap + 4;  // 61: the newest key frame is 60
  for (uint64_t i = 0; i < written; ++i) r.Write(i, i % 10 == 0);
  EXPECT_EQ(r.Read(), 60u) << "the newest sync point, not the newest record (60)";
  EXPECT_EQ(r.live.skipped(), 60u) << "records 0..59 were never read";
  for (uint64_t i = 61; i < written; ++i) EXPECT_EQ(r.Read(), i);
  EXPECT_EQ(r.Read(), ~uint64_t{0});
}

// Whatever the phase of the producer's laps, a key frame among the newest three
// quarters of a lap is found: the producer frees what it needs plus a quarter of the
// ring, not everything nobody holds (that left the newest key frame below the floor
// right after each reload).
TEST(FanOutSkips, SyncPointInTheNewestThreeQuartersOfALapIsAlwaysFound) {
  for (uint64_t written = 2 * kPerLap; written < 6 * kPerLap; ++written) {
    Ring r("skip-phase");
    ASSERT_TRUE(r.live.IsValid()) << r.live.error();
    for (uint64_t i = 0; i < written; ++i) r.Write(i, i % 10 == 0);
    const uint64_t key = (written - 1) / 10 * 10;  // at most 9 records old
    EXPECT_EQ(r.Read(), key) << "after " << written << " records";
    EXPECT_EQ(r.live.skipped(), key);
  }
}

// No sync point left in the ring (the last key frame was reused): the receiver
// resumes at the newest record (its element then drops delta units until the next
// key frame) and counts every record before it.
TEST(FanOutSkips, NoSyncPointLeftResumesAtTheNewestRecord) {
  Ring r("skip-last");
  ASSERT_TRUE(r.live.IsValid()) << r.live.error();
  const uint64_t written = 3 * kPerLap;
  for (uint64_t i = 0; i < written; ++i) r.Write(i, i == 0);
  EXPECT_EQ(r.Read(), written - 1);
  EXPECT_EQ(r.live.skipped(), written - 1);
  r.Write(written, false);
  EXPECT_EQ(r.Read(), written);
}

// `skipped` counts records, not skip events: over several falls behind, what the
// receiver read plus what it skipped is exactly what was written.
TEST(FanOutSkips, ReceivedPlusSkippedIsWhatWasWritten) {
  Ring r("skip-count");
  ASSERT_TRUE(r.live.IsValid()) << r.live.error();
  uint64_t seq = 0, received = 0;
  for (int round = 0; round < 5; ++round) {
    const uint64_t burst = round % 2 == 0 ? 2 * kPerLap + static_cast<uint64_t>(round) : 3;
    for (uint64_t i = 0; i < burst; ++i) r.Write(seq++, true);
    uint64_t last = ~uint64_t{0};
    for (uint64_t got = r.Read(); got != ~uint64_t{0}; got = r.Read()) {
      if (last != ~uint64_t{0}) {
        EXPECT_EQ(got, last + 1) << "in order after a skip";
      }
      last = got;
      ++received;
    }
    EXPECT_EQ(received + r.live.skipped(), seq) << "round " << round;
  }
  EXPECT_GT(r.live.skipped(), kPerLap) << "the receiver did fall behind";
}

// A live receiver that starts at the oldest record (a ring without LIVE) learns the
// sequence number of its start, so its first skip counts from there too.
TEST(FanOutSkips, LiveReceiverStartingAtTheOldestCountsFromItsStart) {
  const std::string name = shmtest::UniqueName("skip-oldest");
  ShmProducer producer(name, Ring::Options());
  ASSERT_TRUE(producer.IsValid()) << producer.error();
  uint8_t buf[kMsg] = {};
  for (uint64_t i = 0; i < 5; ++i) {
    std::memcpy(buf, &i, 8);
    ASSERT_EQ(producer.WriteFor(buf, kMsg, 0), Status::kOk);
  }
  ShmConsumer live(name, Ring::Live(StartAt::kOldest));
  ASSERT_TRUE(live.IsValid()) << live.error();
  ASSERT_TRUE(live.ring()->ReadSeqKnown());
  EXPECT_EQ(live.ring()->ReadSeq(), 0u);
  for (uint64_t want = 0; want < 2; ++want) {
    ASSERT_EQ(live.ReadFor(buf, kMsg, 0).status, Status::kOk);
    EXPECT_EQ(SeqOf(buf), want);
  }
  const uint64_t written = 3 * kPerLap;
  for (uint64_t i = 5; i < written; ++i) {
    std::memcpy(buf, &i, 8);
    ASSERT_EQ(producer.WriteFor(buf, kMsg, 0), Status::kOk);
  }
  ASSERT_EQ(live.ReadFor(buf, kMsg, 0).status, Status::kOk);
  const uint64_t resumed = SeqOf(buf);
  EXPECT_EQ(resumed, written - 1) << "every message is a sync point: the newest";
  EXPECT_EQ(live.skipped(), resumed - 2) << "records 2 .. resumed-1 were lost";
}

// Garbage in the marks (a broken or hostile producer) is only ever a position to
// check: the lapped receiver reads nothing outside what was published, never a
// misaligned or unpublished index, and goes on with what comes next.
TEST(FanOutSkips, GarbageMarksNeverMoveAReceiverOutsideThePublishedRecords) {
  const uint64_t garbage[] = {
      layout::Mark(3, 7),            // misaligned
      layout::Mark(1u << 30, 9),     // far beyond the head
      layout::Mark(8, 0xFFFFFFFFu),  // long reused, absurd sequence number
      ~uint64_t{0},
  };
  for (const uint64_t g : garbage) {
    Ring r("skip-garbage");
    ASSERT_TRUE(r.live.IsValid()) << r.live.error();
    const uint64_t written = 3 * kPerLap;
    for (uint64_t i = 0; i < written; ++i) r.Write(i, true);
    uint8_t* base = r.producer.ring()->base();
    std::memcpy(base + layout::kHeadMarkOffset, &g, 8);
    std::memcpy(base + layout::kSyncMarkOffset, &g, 8);
    const uint64_t got = r.Read();
    EXPECT_TRUE(got == ~uint64_t{0} || got < written) << std::hex << g;
    EXPECT_GE(r.live.skipped(), 1u);
    r.Write(written, true);  // the producer's own marks are sound again
    uint64_t last = got;
    for (uint64_t next = r.Read(); next != ~uint64_t{0}; next = r.Read()) last = next;
    EXPECT_EQ(last, written) << std::hex << g;
  }
}

}  // namespace

// A live receiver read lap 0 to its end (2096 of 4096 bytes) and stalls there. The
// next record does not fit: the producer writes a WRAP marker at 2096 and the record
// at 4096, moving its reuse floor past the marker (what it needs plus a quarter of
// the ring) but not past 4096, then fills lap 1 with small records without moving the
// floor again. Nothing the receiver still needs was reused: it is not lapped, goes
// on at 4096 and loses nothing.
TEST(FanOutSkips, ReceiverIdleOnAWrapMarkerIsNotLappedWhileTheNextLapIsIntact) {
  Ring r("skip-wrap");
  ASSERT_TRUE(r.producer.IsValid()) << r.producer.error();
  ASSERT_TRUE(r.live.IsValid()) << r.live.error();
  constexpr uint32_t kBig = 2092;  // a 2096-byte record: two do not fit in one lap
  static_assert(layout::RecordSize(kBig) == 2096 && layout::RecordSize(8) == 16, "sizes");
  uint8_t buf[kBig] = {};
  const auto write = [&](uint64_t seq, uint32_t len) {
    std::memcpy(buf, &seq, 8);
    ASSERT_EQ(r.producer.WriteFor(buf, len, 0), Status::kOk) << seq;
  };
  const auto read = [&]() -> uint64_t {
    uint8_t in[kBig];
    const shm::ReadResult got = r.live.ReadFor(in, kBig, 0);
    return got.status == Status::kOk ? SeqOf(in) : ~uint64_t{0};
  };
  ASSERT_NO_FATAL_FAILURE(write(0, kBig));
  EXPECT_EQ(read(), 0u);
  EXPECT_EQ(read(), ~uint64_t{0}) << "idle at 2096, holding nothing";
  ASSERT_NO_FATAL_FAILURE(write(1, kBig));  // WRAP marker at 2096, record at 4096
  uint32_t floor;
  std::memcpy(&floor, r.producer.ring()->base() + layout::kFloorOffset, 4);
  ASSERT_GT(floor, 2096u) << "the marker may be reused";
  ASSERT_LE(floor, kCapacity) << "lap 1 may not";
  uint64_t seq = 2;
  for (; r.producer.ring()->ProducerHead() + 16 <= floor + kCapacity; ++seq) {
    ASSERT_NO_FATAL_FAILURE(write(seq, 8));  // room without moving the floor
  }
  uint32_t floor_after;
  std::memcpy(&floor_after, r.producer.ring()->base() + layout::kFloorOffset, 4);
  ASSERT_EQ(floor_after, floor);
  for (uint64_t want = 1; want < seq; ++want) ASSERT_EQ(read(), want);
  EXPECT_EQ(r.live.skipped(), 0u);
}
