// Outcome of every ring operation that can do something other than succeed.
// Both types are [[nodiscard]]: a call whose Status or ReadResult is ignored does
// not compile without a warning (cast to void to ignore one on purpose).
#pragma once

#include <cstdint>

namespace shm {

enum class [[nodiscard]] Status : uint8_t{
    kOk = 0,
    kEmpty,           // consumer: nothing to read right now
    kFull,            // producer: not enough free space right now
    kClosed,          // consumer: producer set CLOSED and the ring is drained
    kTooLarge,        // producer: payload > capacity - 4, can never fit
    kBufferTooSmall,  // consumer: caller buffer too small; message stays, its size is reported
    kCorrupt,         // consumer: invalid record (bad len, past head, crossing the end);
                      // producer: the consumer's tail is not a valid index for head
    kTimeout,         // a blocking call's timeout expired
    kInterrupted,     // a blocking call was interrupted from the same process
    kPeerDead,        // consumer: the producer process died without closing
    kReplaced,        // consumer: the name now refers to a re-created segment
    kInvalid,         // the object is not valid (see error())
};

// Stable lower-case name of a status ("ok", "empty", ...). Any thread; never blocks.
[[nodiscard]] const char* StatusName(Status s);

// A message length with its status (the length is meaningful for kOk and
// kBufferTooSmall). Converts to true only for kOk.
struct [[nodiscard]] ReadResult {
  Status status = Status::kEmpty;
  uint32_t len = 0;
  explicit operator bool() const { return status == Status::kOk; }
};

// Timeouts are in nanoseconds: 0 = do not wait, kForever = no limit.
constexpr int64_t kForever = -1;

}  // namespace shm
