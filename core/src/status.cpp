#include "shm/status.hpp"

namespace shm {

const char* StatusName(Status s) {
  switch (s) {
    case Status::kOk:
      return "ok";
    case Status::kEmpty:
      return "empty";
    case Status::kFull:
      return "full";
    case Status::kClosed:
      return "closed";
    case Status::kTooLarge:
      return "too large";
    case Status::kBufferTooSmall:
      return "buffer too small";
    case Status::kCorrupt:
      return "corrupt";
    case Status::kTimeout:
      return "timeout";
    case Status::kInterrupted:
      return "interrupted";
    case Status::kPeerDead:
      return "producer dead";
    case Status::kReplaced:
      return "replaced";
    case Status::kInvalid:
      return "invalid";
  }
  return "unknown";
}

}  // namespace shm
