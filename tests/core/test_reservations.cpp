// Several reservations in flight on the producer (ReserveNext / Publish / Abandon /
// Unkeep) and PAD records: records are published in the order they were reserved,
// a reservation given up becomes a PAD record every reader skips, kept bytes are
// not reused, and end of stream publishes what was finished.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "blocking_call.hpp"
#include "cache_size.hpp"
#include "ring_name_test.hpp"
#include "shm/byte_ring_buffer.hpp"
#include "shm/layout.hpp"
#include "shm/shm_channel.hpp"
#include "test_util.hpp"
#include "tuning.hpp"
#include "vectors.hpp"

#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace {

using shm::ByteRingBuffer;
using shm::MessageView;
using shm::Reservation;
using shm::Status;
using shmtest::RingImage;

struct Ring {
  explicit Ring(uint32_t capacity) : img(capacity) {
    EXPECT_EQ(img.Init(), "");
    p = std::make_unique<ByteRingBuffer>(img.base(), img.size(), true);
    c = std::make_unique<ByteRingBuffer>(img.base(), img.size(), false);
  }
  // The next message as a string ("<empty>" when there is none).
  std::string Next() {
    std::vector<uint8_t> out(img.capacity());
    const shm::ReadResult r = c->TryRead(out.data(), img.capacity());
    if (r.status == Status::kEmpty) return "<empty>";
    if (r.status != Status::kOk) return std::string("<") + shm::StatusName(r.status) + ">";
    return std::string(reinterpret_cast<char*>(out.data()), r.len);
  }
  // Reserves `text` (ReserveNext, with `fill`, or its default) and writes it there.
  Reservation Reserve(const std::string& text) {
    Reservation r;
    EXPECT_EQ(p->ReserveNext(static_cast<uint32_t>(text.size()), &r), Status::kOk);
    if (r.payload != nullptr) std::memcpy(r.payload, text.data(), text.size());
    return r;
  }
  Reservation Reserve(const std::string& text, shm::FillHint fill) {
    Reservation r;
    EXPECT_EQ(p->ReserveNext(static_cast<uint32_t>(text.size()), &r, fill), Status::kOk);
    if (r.payload != nullptr) std::memcpy(r.payload, text.data(), text.size());
    return r;
  }
  // Reserves `text` and publishes all of it at once (`keep` as Publish's).
  Reservation Send(const std::string& text, bool keep = false) {
    const Reservation r = Reserve(text);
    p->Publish(r, static_cast<uint32_t>(text.size()), keep);
    return r;
  }
  Reservation Send(const std::string& text, shm::FillHint fill) {
    const Reservation r = Reserve(text, fill);
    p->Publish(r, static_cast<uint32_t>(text.size()));
    return r;
  }
  RingImage img;
  std::unique_ptr<ByteRingBuffer> p;
  std::unique_ptr<ByteRingBuffer> c;
};

// The cache size producers constructed in this scope see (RestartLapEarly: three
// places for large records while three fit in the share of it their fill leaves
// them, two above).
struct CacheBytes {
  explicit CacheBytes(uint64_t bytes) { shm::SetLargestCacheBytesForTest(bytes); }
  ~CacheBytes() { shm::SetLargestCacheBytesForTest(0); }
  CacheBytes(const CacheBytes&) = delete;
  CacheBytes& operator=(const CacheBytes&) = delete;
};

// The large-record cases: a 1 MiB ring and records of 200000 bytes (at least
// tuning::kEarlyWrapMinRecord: large), filled with `fill`.
constexpr uint32_t kLargeRingCap = 1u << 20;
constexpr uint32_t kLargeLen = 200000;
std::string Large(char fill) { return std::string(kLargeLen, fill); }
// The ring bytes of such a record (len word, payload, padding).
constexpr uint32_t kLargeRecord = static_cast<uint32_t>(shm::layout::RecordSize(kLargeLen));

// Cache sizes for those records, from RestartLapEarly's rule (three places while
// record < cache / share / 3, the share of the reservation's fill, tuning.hpp):
// - the largest where they take two places with either fill;
constexpr uint64_t kTwoPlacesEitherFill =
    uint64_t{3} * shm::tuning::kThreePlacesCacheShareInPlace * kLargeRecord;
// - the smallest and the largest where painted in place they take three and copied
//   in two (the limits differ: the test below fails when a fill is not heeded).
constexpr uint64_t kSplitLowest =
    uint64_t{3} * shm::tuning::kThreePlacesCacheShareInPlace * (kLargeRecord + 1);
constexpr uint64_t kSplitHighest =
    uint64_t{3} * shm::tuning::kThreePlacesCacheShareCopied * kLargeRecord;
static_assert(kSplitLowest <= kSplitHighest, "a record size where the fills differ");
// The places of three and of two (ring offsets).
const std::set<uint32_t> kThreePlaces = {0, kLargeRecord, 2 * kLargeRecord};
const std::set<uint32_t> kTwoPlaces = {0, kLargeRecord};

// Where large records go on a ring of kLargeRingCap bytes when the receiver reads
// each record as the next one is sent (a 1080p receiver is still on the frame before
// when the next comes): the ring offsets of `n` records of Large(), each sent by
// `send` (which returns the record's ring index), then the one before it read by
// `read` (false: nothing to read, which fails the test).
std::set<uint32_t> PlacesUsed(int n, const std::function<uint32_t(const std::string&)>& send,
                              const std::function<bool()>& read) {
  std::set<uint32_t> places;
  for (int i = 0; i < n; ++i) {
    places.insert(send(Large(static_cast<char>('a' + i))) & (kLargeRingCap - 1));
    if (i > 0) {
      EXPECT_TRUE(read()) << "record " << i - 1;
    }
  }
  return places;
}
// The ring index of the newest record a producer published (its last mark).
uint32_t NewestStart(const ByteRingBuffer& p) { return static_cast<uint32_t>(p.LastMark()); }

// What the kernel writes in a cache's size file, and what is refused.
TEST(CacheSize, ParsesTheKernelsSizeText) {
  EXPECT_EQ(shm::ParseCacheSize("32768K\n"), 32u << 20);
  EXPECT_EQ(shm::ParseCacheSize("1024K"), 1u << 20);
  EXPECT_EQ(shm::ParseCacheSize("2M\n"), 2u << 20);
  EXPECT_EQ(shm::ParseCacheSize("1G"), 1ull << 30);
  EXPECT_EQ(shm::ParseCacheSize("512\n"), 512u);
  EXPECT_EQ(shm::ParseCacheSize(""), 0u);
  EXPECT_EQ(shm::ParseCacheSize("K"), 0u);
  EXPECT_EQ(shm::ParseCacheSize("32768X"), 0u);
  EXPECT_EQ(shm::ParseCacheSize("99999999999999999999G"), 0u);
  EXPECT_GT(shm::LargestCacheBytes(), 0u);
}

// Named rings on fresh names (the ends kept until the test ends).
class Reservations : public shmtest::RingNameTest {
 protected:
  Reservations() : RingNameTest("resv") {}
};

TEST_F(Reservations, PublishedInReservationOrder) {
  Ring r(256);
  const Reservation a = r.Reserve("aaaa"), b = r.Reserve("bbbbbbbb"), c = r.Reserve("cc");
  EXPECT_EQ(r.p->InFlight(), 3u);
  r.p->Publish(c, 2);
  EXPECT_EQ(r.p->LoadHead(), 0u);  // c waits for a and b
  EXPECT_EQ(r.Next(), "<empty>");
  r.p->Publish(a, 4);
  EXPECT_EQ(r.p->LoadHead(), a.end);
  EXPECT_EQ(r.Next(), "aaaa");
  EXPECT_EQ(r.Next(), "<empty>");
  r.p->Publish(b, 8);
  EXPECT_EQ(r.p->LoadHead(), c.end);
  EXPECT_EQ(r.Next(), "bbbbbbbb");
  EXPECT_EQ(r.Next(), "cc");
  EXPECT_EQ(r.p->InFlight(), 0u);
  EXPECT_TRUE(r.img.GuardIntact());
}

TEST_F(Reservations, AbandonedReservationIsSkipped) {
  Ring r(256);
  const Reservation a = r.Reserve("dropped!"), b = r.Reserve("kept");
  r.p->Publish(b, 4);
  r.p->Abandon(a);
  EXPECT_EQ(r.p->LoadHead(), b.end);
  // The len word of a's record is now a PAD record of its size.
  uint32_t len = 0;
  std::memcpy(&len, r.img.data() + (a.start & 255), 4);
  EXPECT_EQ(len, shm::layout::kPadFlag | 12u);  // record 16 less the len word
  EXPECT_TRUE(r.c->HasData());
  EXPECT_EQ(r.Next(), "kept");
  EXPECT_EQ(r.Next(), "<empty>");
  EXPECT_EQ(r.c->LoadTail(), b.end);
}

// The newest open reservation is taken back without a record: the next one gets
// its place and readers see nothing of it. An older one, or a finished one, is not.
TEST_F(Reservations, RetractTakesBackOnlyTheNewestOpenReservation) {
  Ring r(256);
  const Reservation a = r.Reserve("first"), b = r.Reserve("second");
  EXPECT_FALSE(r.p->Retract(a)) << "b was reserved after it";
  EXPECT_TRUE(r.p->Retract(b));
  EXPECT_FALSE(r.p->Retract(b)) << "already taken back";
  const Reservation c = r.Reserve("third");
  EXPECT_EQ(c.start, b.start) << "b's place is the next reservation's";
  r.p->Publish(a, 5);
  EXPECT_FALSE(r.p->Retract(a)) << "published";
  r.p->Publish(c, 5);
  EXPECT_EQ(r.Next(), "first");
  EXPECT_EQ(r.Next(), "third");
  EXPECT_EQ(r.Next(), "<empty>");
  EXPECT_EQ(r.c->LoadTail(), c.end);
}

TEST_F(Reservations, TrailingPadsAreFreedSoTheProducerGoesOn) {
  Ring r(64);
  const Reservation a = r.Reserve(std::string(20, 'x'));  // 24 bytes
  r.p->Abandon(a);
  const Reservation b = r.Reserve(std::string(20, 'y'));
  r.p->Abandon(b);
  // Nothing but PAD records: a reader finds nothing and frees them.
  EXPECT_FALSE(r.c->HasData());
  EXPECT_EQ(r.c->LoadTail(), b.end);
  EXPECT_EQ(r.Next(), "<empty>");
  EXPECT_EQ(r.p->WriteableBytes(), 64u);
}

TEST_F(Reservations, PublishedShorterLeavesAPadForTheRest) {
  Ring r(256);
  const Reservation a = r.Reserve(std::string(40, 'a'));  // record 48
  const Reservation b = r.Reserve("next");
  r.p->Publish(a, 4);  // record 8, then a PAD of 40 bytes
  r.p->Publish(b, 4);
  uint32_t len = 0;
  std::memcpy(&len, r.img.data() + 8, 4);
  EXPECT_EQ(len, shm::layout::kPadFlag | 36u);
  EXPECT_EQ(r.Next(), "aaaa");
  EXPECT_EQ(r.Next(), "next");
  EXPECT_EQ(r.Next(), "<empty>");
}

TEST_F(Reservations, WrapMarkerWaitsBehindAnOpenReservation) {
  Ring r(64);
  // 32 bytes used and read, so the next lap starts at 32.
  ASSERT_TRUE(r.p->Write(std::string(28, 'z').data(), 28));
  EXPECT_EQ(r.Next(), std::string(28, 'z'));
  const Reservation a = r.Reserve(std::string(20, 'a'));  // record 24 at 32..56
  const Reservation b = r.Reserve(std::string(12, 'b'));  // 16 > 8 left: marker, then 0..16
  EXPECT_EQ(b.start, 64u);
  EXPECT_EQ(r.p->LoadHead(), 32u);  // the marker is not published before a
  r.p->Publish(b, 12);
  EXPECT_EQ(r.p->LoadHead(), 32u);
  r.p->Publish(a, 20);
  EXPECT_EQ(r.p->LoadHead(), 80u);
  EXPECT_EQ(r.Next(), std::string(20, 'a'));
  EXPECT_EQ(r.Next(), std::string(12, 'b'));
  EXPECT_EQ(r.Next(), "<empty>");
  EXPECT_TRUE(r.img.GuardIntact());
}

TEST_F(Reservations, ReserveCommitAfterAnOpenReservationKeepsOrder) {
  Ring r(256);
  const Reservation a = r.Reserve("first");
  uint8_t* payload = nullptr;
  ASSERT_EQ(r.p->Reserve(6, &payload), Status::kOk);
  std::memcpy(payload, "second", 6);
  r.p->Commit(6);
  EXPECT_EQ(r.Next(), "<empty>");  // behind the open reservation
  EXPECT_FALSE(r.p->InOrder(a));   // something reserved after a was published
  r.p->Publish(a, 5);
  EXPECT_EQ(r.Next(), "first");
  EXPECT_EQ(r.Next(), "second");
}

TEST_F(Reservations, InOrderWhileNothingLaterWasPublished) {
  Ring r(256);
  const Reservation a = r.Reserve("a"), b = r.Reserve("b");
  EXPECT_TRUE(r.p->InOrder(a));
  EXPECT_TRUE(r.p->InOrder(b));
  r.p->Publish(a, 1);
  EXPECT_TRUE(r.p->InOrder(b));
  const Reservation c = r.Reserve("c");
  r.p->Publish(c, 1);
  EXPECT_FALSE(r.p->InOrder(b));
}

TEST_F(Reservations, KeptBytesAreNotReused) {
  Ring r(256);
  const Reservation a = r.Reserve(std::string(100, 'k'));  // record 104
  r.p->Publish(a, 100, /*keep=*/true);
  EXPECT_EQ(r.Next(), std::string(100, 'k'));
  EXPECT_EQ(r.c->LoadTail(), a.end);  // the consumer is done with it
  EXPECT_EQ(r.p->WriteableBytes(), 256u - 104u);
  Reservation big;
  EXPECT_EQ(r.p->ReserveNext(200, &big), Status::kFull);
  EXPECT_TRUE(r.p->FullOfKept(200));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(a.payload), 100), std::string(100, 'k'));
  r.p->Unkeep(a);
  EXPECT_FALSE(r.p->FullOfKept(200));
  // The first try published a WRAP marker at 104 (the lap's rest was free); the
  // consumer skips it, then the record fits at the start of the next lap.
  EXPECT_EQ(r.Next(), "<empty>");
  EXPECT_EQ(r.p->ReserveNext(200, &big), Status::kOk);
  r.p->Abandon(big);
  EXPECT_EQ(r.Next(), "<empty>");
}

// A large record (>= tuning::kEarlyWrapMinRecord), two records into the lap, goes
// at offset 0 of the next lap when the receiver is done with the front record's
// worth of the ring and nothing of the producer's is kept there: the sender reuses
// the same cache-warm places instead of walking the whole ring. The receiver skips
// the WRAP marker and gets every message in order.
TEST_F(Reservations, LargeRecordRestartsAtTheFrontOnceTheReceiverKeptUp) {
  const CacheBytes cache(kTwoPlacesEitherFill);  // two places, painted or copied
  Ring r(kLargeRingCap);
  const Reservation a = r.Send(Large('a'));
  EXPECT_EQ(r.Next(), Large('a'));
  const Reservation b = r.Send(Large('b'));  // one record in front: not enough
  EXPECT_EQ(b.start, a.end);
  EXPECT_EQ(r.Next(), Large('b'));
  const Reservation c = r.Send(Large('c'));  // two read: the front again
  EXPECT_EQ(c.start, kLargeRingCap);
  const Reservation d = r.Send(Large('d'));  // c unread: room after it all the same
  EXPECT_EQ(d.start, c.end);
  EXPECT_EQ(r.Next(), Large('c'));
  EXPECT_EQ(r.Next(), Large('d'));
  EXPECT_EQ(r.Next(), "<empty>");
}

// Records too large for three to fit in half the cache: the front needs room for
// the record only, not for the one after it as well: a receiver still reading the
// previous record (what a 1080p receiver is doing when the next frame comes) does
// not send the record to a third place. With three 6 MB places, the sender's
// copies no longer fit a 32 MiB L3 beside the source's buffers (DESIGN.md "Where a
// large record goes"). The record after it waits in the second place until the
// receiver is done there.
TEST_F(Reservations, LargeRecordRestartsWhileTheReceiverReadsTheOneBefore) {
  const CacheBytes cache(kTwoPlacesEitherFill);  // two places, painted or copied
  Ring r(kLargeRingCap);
  const Reservation a = r.Send(Large('a'));
  const Reservation b = r.Send(Large('b'));
  EXPECT_EQ(b.start, a.end);
  EXPECT_EQ(r.Next(), Large('a'));  // b not read yet
  const Reservation c = r.Send(Large('c'));
  EXPECT_EQ(c.start, kLargeRingCap);  // the front, not b.end
  Reservation d;
  EXPECT_EQ(r.p->ReserveNext(static_cast<uint32_t>(Large('d').size()), &d), Status::kFull);
  EXPECT_EQ(r.Next(), Large('b'));
  d = r.Send(Large('d'));  // the second place, free again
  EXPECT_EQ(d.start, c.end);
  EXPECT_EQ(d.start - kLargeRingCap, b.start);
  EXPECT_EQ(r.Next(), Large('c'));
  EXPECT_EQ(r.Next(), Large('d'));
  EXPECT_EQ(r.Next(), "<empty>");
}

// Records small enough for three to fit in half the cache cycle through three
// places: the third goes after the second even when the front is free (the sender
// does not wait for a receiver still on the record before, which at 640x480 BGR
// frames cost more than the cache saves), and the fourth goes to the front as soon
// as the front has room for it alone, while the receiver still holds the two
// records before (a zero-copy receiver whose sink keeps its last frame): asking
// for room for two sent it to a fourth place (DESIGN.md "Where a large record
// goes"). The fifth then goes to the second place.
TEST_F(Reservations, LargeRecordsThatShareTheCacheCycleThroughThreePlaces) {
  const CacheBytes cache(64u << 20);  // three places, painted or copied
  Ring r(kLargeRingCap);
  r.Send(Large('a'));
  EXPECT_EQ(r.Next(), Large('a'));
  const Reservation b = r.Send(Large('b'));
  const Reservation c = r.Send(Large('c'));  // the front is free: a third place all the same
  EXPECT_EQ(c.start, b.end);
  const Reservation d = r.Send(Large('d'));  // b and c unread: the front, not a fourth place
  EXPECT_EQ(d.start, kLargeRingCap);
  EXPECT_EQ(r.Next(), Large('b'));
  const Reservation e = r.Send(Large('e'));  // the second place, without waiting
  EXPECT_EQ(e.start, d.end);
  EXPECT_EQ(e.start - kLargeRingCap, b.start);
  EXPECT_EQ(r.Next(), Large('c'));
  EXPECT_EQ(r.Next(), Large('d'));
  EXPECT_EQ(r.Next(), Large('e'));
  EXPECT_EQ(r.Next(), "<empty>");
}

// How the caller fills a large record decides how many places such records cycle
// through: painted in place (the sink's buffer pool: nothing else competes for the
// cache) three while three records fit in the whole cache, copied in (the sink's
// render copy: the source's buffers share the cache) three only while they fit in a
// fifth of it. At both ends of the cache sizes where the two limits differ, the same
// records take three places reserved in place and two copied in.
// Copied records too large for three places go back to the front as soon as the
// receiver is done with everything there (a first fit): a receiver that lets each
// record go before the next is sent gets them all in one place. Painted in place,
// the same records keep cycling through their places (three at this cache size),
// and copied ones still take two while the receiver reads the one before
// (LargeRecordsPaintedInPlaceCycleThroughThreePlacesCopiedOnesThroughTwo).
TEST_F(Reservations, CopiedLargeRecordsGoBackToTheFrontOnceTheReceiverIsDone) {
  const CacheBytes cache(kSplitHighest);  // copied: over the three-place limit
  for (const shm::FillHint fill : {shm::FillHint::kCopied, shm::FillHint::kInPlace}) {
    const bool copied = fill == shm::FillHint::kCopied;
    SCOPED_TRACE(copied ? "copied" : "in place");
    Ring r(kLargeRingCap);
    std::set<uint32_t> places;
    for (int i = 0; i < 9; ++i) {
      const std::string m = Large(static_cast<char>('a' + i));
      places.insert(r.Send(m, fill).start & (kLargeRingCap - 1));
      EXPECT_EQ(r.Next(), m);  // read and let go before the next is sent
    }
    EXPECT_EQ(r.Next(), "<empty>");
    EXPECT_EQ(places, copied ? std::set<uint32_t>{0} : kThreePlaces);
  }
}

TEST_F(Reservations, LargeRecordsPaintedInPlaceCycleThroughThreePlacesCopiedOnesThroughTwo) {
  for (const uint64_t bytes : {kSplitLowest, kSplitHighest}) {
    SCOPED_TRACE("cache of " + std::to_string(bytes) + " bytes");
    const CacheBytes cache(bytes);
    for (const shm::FillHint fill : {shm::FillHint::kInPlace, shm::FillHint::kCopied}) {
      const bool in_place = fill == shm::FillHint::kInPlace;
      SCOPED_TRACE(in_place ? "in place" : "copied");
      Ring r(kLargeRingCap);
      const auto places = PlacesUsed(
          9, [&](const std::string& m) { return r.Send(m, fill).start; },
          [&] { return r.Next() != "<empty>"; });
      EXPECT_EQ(places, in_place ? kThreePlaces : kTwoPlaces);
    }
  }
}

// The ring's calls say how they fill: Reserve and ReserveNext default to in place
// (zero-copy: the caller writes into the reservation), TryWrite and Write copy in.
TEST_F(Reservations, RingReservationsFillInPlaceAndWritesCopy) {
  for (const uint64_t bytes : {kSplitLowest, kSplitHighest}) {
    SCOPED_TRACE("cache of " + std::to_string(bytes) + " bytes");
    const CacheBytes cache(bytes);
    const auto read = [](Ring& r) { return [&r] { return r.Next() != "<empty>"; }; };
    Ring reserved(kLargeRingCap);
    EXPECT_EQ(PlacesUsed(
                  9,
                  [&](const std::string& m) {
                    uint8_t* payload = nullptr;
                    EXPECT_EQ(reserved.p->Reserve(kLargeLen, &payload), Status::kOk);
                    if (payload == nullptr) return ~0u;
                    std::memcpy(payload, m.data(), m.size());
                    reserved.p->Commit(kLargeLen);
                    return NewestStart(*reserved.p);
                  },
                  read(reserved)),
              kThreePlaces)
        << "Reserve";
    Ring next(kLargeRingCap);
    EXPECT_EQ(PlacesUsed(
                  9, [&](const std::string& m) { return next.Send(m).start; }, read(next)),
              kThreePlaces)
        << "ReserveNext";
    Ring written(kLargeRingCap);
    EXPECT_EQ(PlacesUsed(
                  9,
                  [&](const std::string& m) {
                    EXPECT_EQ(written.p->TryWrite(m.data(), kLargeLen), Status::kOk);
                    return NewestStart(*written.p);
                  },
                  read(written)),
              kTwoPlaces)
        << "TryWrite";
    Ring legacy(kLargeRingCap);
    EXPECT_EQ(PlacesUsed(
                  9,
                  [&](const std::string& m) {
                    EXPECT_TRUE(legacy.p->Write(m.data(), kLargeLen));
                    return NewestStart(*legacy.p);
                  },
                  read(legacy)),
              kTwoPlaces)
        << "Write";
  }
}

// Kept bytes at the front (a zero-copy buffer still referenced after it was sent)
// keep a large record at the head; once unkept, the front is used again. Small
// records always go at the head.
TEST_F(Reservations, LargeRecordDoesNotRestartOverKeptBytesNorDoSmallOnes) {
  const CacheBytes cache(1u << 20);  // the same with either number of places
  Ring r(kLargeRingCap);
  const std::string big = Large('k');
  const Reservation a = r.Send(big, /*keep=*/true);
  EXPECT_EQ(r.Next(), big);
  const Reservation b = r.Send(big);
  EXPECT_EQ(r.Next(), big);
  const Reservation c = r.Send(big);  // both read, but a is kept: not over it
  EXPECT_EQ(c.start, b.end);
  EXPECT_EQ(r.Next(), big);
  r.p->Unkeep(a);
  const Reservation d = r.Send(big);
  EXPECT_EQ(d.start, kLargeRingCap);
  EXPECT_EQ(r.Next(), big);
  const std::string small(1000, 's');
  const Reservation e = r.Send(small);  // below the threshold: at the head
  EXPECT_EQ(e.start, d.end);
  EXPECT_EQ(r.Next(), small);
  EXPECT_EQ(r.Next(), "<empty>");
}

TEST_F(Reservations, FullOfTheConsumerIsNotFullOfKept) {
  Ring r(64);
  ASSERT_TRUE(r.p->Write(std::string(52, 'f').data(), 52));  // 56 of 64 unread
  Reservation x;
  EXPECT_EQ(r.p->ReserveNext(20, &x), Status::kFull);
  EXPECT_FALSE(r.p->FullOfKept(20));
}

TEST_F(Reservations, AcquiredRecordsWithPadsBetween) {
  Ring r(256);
  const Reservation a = r.Reserve("one"), pad = r.Reserve("gone"), b = r.Reserve("two");
  r.p->Publish(a, 3);
  r.p->Abandon(pad);
  r.p->Publish(b, 3);
  MessageView v1, v2, v3;
  ASSERT_EQ(r.c->Acquire(&v1), Status::kOk);
  ASSERT_EQ(r.c->Acquire(&v2), Status::kOk);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(v1.data), v1.len), "one");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(v2.data), v2.len), "two");
  EXPECT_EQ(r.c->Acquire(&v3), Status::kEmpty);
  r.c->ReleaseTo(v2.end);
  EXPECT_EQ(r.c->LoadTail(), b.end);
}

#ifdef __linux__
// Resident pages of [addr, addr + len) (mincore: for shared memory, whether the page
// exists in the page cache).
size_t ResidentPages(void* addr, size_t len) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> v((len + page - 1) / page);
  EXPECT_EQ(mincore(addr, len, v.data()), 0) << errno;
  size_t n = 0;
  for (unsigned char b : v) n += b & 1;
  return n;
}

// A new ring is faulted in once at creation: every page is present before the
// first write (and, without the option, most are not).
TEST(Prefault, NewRingIsResident) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (const bool prefault : {true, false}) {
    SCOPED_TRACE(prefault);
    const std::string name = shmtest::UniqueName("prefault");
    shm::ProducerOptions o;
    o.capacity = 4u << 20;
    o.prefault = prefault;
    shm::ShmProducer p(name, o);
    ASSERT_TRUE(p.IsValid()) << p.error();
    const size_t len = shm::layout::kHeaderSize + p.capacity();
    const size_t resident = ResidentPages(p.ring()->base(), len);
    if (prefault) {
      EXPECT_EQ(resident, len / page);
    } else {
      EXPECT_LT(resident, len / page / 2);
    }
  }
}

// The VmFlags line of /proc/self/smaps for the mapping that starts at `addr` ("" if
// there is none).
std::string VmFlagsOf(const void* addr) {
  std::ifstream smaps("/proc/self/smaps");
  char start[32];
  std::snprintf(start, sizeof start, "%lx-",
                static_cast<unsigned long>(reinterpret_cast<uintptr_t>(addr)));
  std::string line;
  bool in = false;
  while (std::getline(smaps, line)) {
    if (line.rfind(start, 0) == 0) in = true;
    if (in && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

// Huge pages are asked for (MADV_HUGEPAGE: the mapping's "hg" flag) for prefaulted
// rings of 2 MiB and more, which are walked end to end, and not for smaller ones
// or without the option. Whether the tmpfs then backs them with huge pages is the
// system's choice (shmem_enabled); the request is ours.
TEST(Prefault, LargeRingsAskForHugePages) {
  if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0) {
    GTEST_SKIP() << "this kernel has no transparent huge pages";
  }
  struct Case {
    uint32_t capacity;
    bool prefault;
    bool huge;
  };
  for (const Case& k :
       {Case{4u << 20, true, true}, Case{1u << 20, true, false}, Case{4u << 20, false, false}}) {
    SCOPED_TRACE(testing::Message() << k.capacity << (k.prefault ? " prefault" : ""));
    shm::ProducerOptions o;
    o.capacity = k.capacity;
    o.prefault = k.prefault;
    shm::ShmProducer p(shmtest::UniqueName("hugepages"), o);
    ASSERT_TRUE(p.IsValid()) << p.error();
    const std::string flags = VmFlagsOf(p.ring()->base());
    ASSERT_NE(flags, "") << "no mapping at the ring's base in /proc/self/smaps";
    EXPECT_EQ(flags.find(" hg") != std::string::npos, k.huge) << flags;
  }
}
#endif

#ifndef _WIN32
// ShmConsumer (the engine every element uses) skips PAD records too.
TEST_F(Reservations, ShmConsumerSkipsPads) {
  shm::ShmProducer& p = Producer(4096);
  shm::ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  p.SetConcurrent(true);
  Reservation a, b;
  ASSERT_EQ(p.ReserveNext(100, &a, 0), Status::kOk);
  ASSERT_EQ(p.ReserveNext(5, &b, 0), Status::kOk);
  std::memcpy(b.payload, "after", 5);
  p.Publish(b, 5);
  p.Abandon(a);
  MessageView v;
  ASSERT_EQ(c.AcquireFor(&v, 0), Status::kOk);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(v.data), v.len), "after");
  c.Release(v);
  ASSERT_EQ(c.PeekFor(&v, 0), Status::kEmpty);
}

// ShmProducer's calls say how they fill: Reserve and ReserveNext default to in
// place (the zero-copy calls; the sink's buffer pool), with kCopied as the sink's
// render copy passes; WriteFor copies in. Concurrent or not.
TEST_F(Reservations, ProducerReservationsFillInPlaceUnlessToldAndWritesCopy) {
  using Send = std::function<uint32_t(shm::ShmProducer&, const std::string&)>;
  const auto reserve = [](shm::FillHint* fill) -> Send {
    return [fill](shm::ShmProducer& p, const std::string& m) {
      uint8_t* payload = nullptr;
      const Status s = fill != nullptr ? p.Reserve(kLargeLen, &payload, 0, *fill)
                                       : p.Reserve(kLargeLen, &payload, 0);
      EXPECT_EQ(s, Status::kOk);
      if (payload == nullptr) return ~0u;
      std::memcpy(payload, m.data(), m.size());
      p.Commit(kLargeLen);
      return NewestStart(*p.ring());
    };
  };
  const auto reserve_next = [](shm::FillHint* fill) -> Send {
    return [fill](shm::ShmProducer& p, const std::string& m) {
      Reservation r;
      const Status s = fill != nullptr ? p.ReserveNext(kLargeLen, &r, 0, nullptr, *fill)
                                       : p.ReserveNext(kLargeLen, &r, 0);
      EXPECT_EQ(s, Status::kOk);
      if (r.payload == nullptr) return ~0u;
      std::memcpy(r.payload, m.data(), m.size());
      p.Publish(r, kLargeLen);
      return r.start;
    };
  };
  const Send write = [](shm::ShmProducer& p, const std::string& m) {
    EXPECT_EQ(p.WriteFor(m.data(), kLargeLen, 0), Status::kOk);
    return NewestStart(*p.ring());
  };
  shm::FillHint in_place = shm::FillHint::kInPlace, copied = shm::FillHint::kCopied;
  struct Case {
    const char* what;
    Send send;
    bool concurrent;
    const std::set<uint32_t>& places;
  };
  const Case cases[] = {
      {"Reserve", reserve(nullptr), false, kThreePlaces},
      {"Reserve in place", reserve(&in_place), false, kThreePlaces},
      {"Reserve copied", reserve(&copied), false, kTwoPlaces},
      {"concurrent Reserve", reserve(nullptr), true, kThreePlaces},
      {"concurrent Reserve copied", reserve(&copied), true, kTwoPlaces},
      {"ReserveNext", reserve_next(nullptr), false, kThreePlaces},
      {"ReserveNext copied", reserve_next(&copied), false, kTwoPlaces},
      {"WriteFor", write, false, kTwoPlaces},
  };
  for (const uint64_t bytes : {kSplitLowest, kSplitHighest}) {
    const CacheBytes cache(bytes);
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(c.what) + ", cache of " + std::to_string(bytes) + " bytes");
      shm::ShmProducer& p = Producer(kLargeRingCap);
      shm::ShmConsumer& consumer = Consumer();
      ASSERT_TRUE(AllOpen());
      p.SetConcurrent(c.concurrent);
      std::vector<uint8_t> out(kLargeLen);
      EXPECT_EQ(PlacesUsed(
                    9, [&](const std::string& m) { return c.send(p, m); },
                    [&] { return consumer.TryRead(out.data(), kLargeLen).status == Status::kOk; }),
                c.places);
    }
  }
}

// End of stream abandons the reservations still open, so what was finished before
// (here: a message reserved after one that never will be) reaches the consumer.
TEST_F(Reservations, CloseAbandonsOpenReservations) {
  shm::ShmProducer& p = Producer(4096);
  shm::ShmConsumer& c = Consumer();
  ASSERT_TRUE(AllOpen());
  p.SetConcurrent(true);
  Reservation open;
  ASSERT_EQ(p.ReserveNext(64, &open, 0), Status::kOk);
  ASSERT_EQ(p.WriteFor("last", 4, 0), Status::kOk);
  std::vector<uint8_t> out(64);
  EXPECT_EQ(c.ReadFor(out.data(), 64, 0).status, Status::kEmpty);
  p.Close();
  p.Publish(open, 64);  // too late: ignored
  const shm::ReadResult r = c.ReadFor(out.data(), 64, 0);
  ASSERT_EQ(r.status, Status::kOk);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(out.data()), r.len), "last");
  EXPECT_EQ(c.ReadFor(out.data(), 64, shm::kForever).status, Status::kClosed);
}

// A blocked ReserveNext returns kInterrupted when its interrupter fires, and the
// lock is not held while it sleeps (another thread publishes meanwhile).
TEST_F(Reservations, BlockedReserveNextIsInterruptible) {
  shm::ShmProducer& p = Producer(64);
  Consumer();  // attached, never reading
  ASSERT_TRUE(AllOpen());
  p.SetConcurrent(true);
  Reservation a;
  ASSERT_EQ(p.ReserveNext(52, &a, 0), Status::kOk);  // 56 of 64
  shm::Interrupter intr;
  shmtest::BlockingCall t([&] {
    Reservation b;
    return p.ReserveNext(52, &b, shm::kForever, &intr);
  });
  p.Publish(a, 52);  // not blocked by the sleeping thread
  // The consumer never reads: the waiter stays asleep until interrupted.
  intr.Interrupt();
  EXPECT_EQ(t.Join(), Status::kInterrupted);
  EXPECT_EQ(p.ReserveNext(52, &a, 0), Status::kFull);
}

// Retire ends the ring (the name is gone, CLOSED set, the producer byte free) but
// keeps the mapping for zero-copy buffers that outlive the sender.
TEST_F(Reservations, RetireKeepsTheMapping) {
  const std::string name = Name();
  auto p = std::make_unique<shm::ShmProducer>(name, 4096);
  ASSERT_TRUE(p->IsValid()) << p->error();
  Reservation a;
  ASSERT_EQ(p->ReserveNext(8, &a, 0), Status::kOk);
  std::memcpy(a.payload, "survives", 8);
  p->Publish(a, 8, /*keep=*/true);
  p->Retire();
  EXPECT_TRUE(p->ring()->ProducerClosed());
  shm::ShmConsumer late(name);
  EXPECT_FALSE(late.IsValid());  // the name is gone
  // A new producer may take the name at once.
  shm::ShmProducer next(name, 4096);
  EXPECT_TRUE(next.IsValid()) << next.error();
  EXPECT_EQ(std::string(reinterpret_cast<char*>(a.payload), 8), "survives");
  p.reset();
}
#else
TEST_F(Reservations, NamedRings) {
  SHMTEST_NOT_ON_WINDOWS("named-ring cases use POSIX segments and OFD locks");
}
#endif

}  // namespace
