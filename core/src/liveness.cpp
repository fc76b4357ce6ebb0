#include "shm/liveness.hpp"

#include <cerrno>
#include <cstring>

#include "shm/shared_memory.hpp"

#if defined(__linux__)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace shm {
namespace liveness {

#if defined(__linux__) && defined(F_OFD_SETLK) && defined(F_OFD_GETLK)

namespace {

struct flock ByteLock(short type, int64_t byte) {
  struct flock fl;
  std::memset(&fl, 0, sizeof fl);  // l_pid must be 0 for OFD locks
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(byte);
  fl.l_len = 1;
  return fl;
}

Lock Fail(const char* call, int64_t byte, std::string* error) {
  const int e = errno;
  if (error != nullptr) {
    *error = std::string("fcntl(") + call + ", byte " + std::to_string(byte) + ") failed: errno " +
             std::to_string(e) + " (" + std::strerror(e) + ")";
  }
  return e == EINVAL ? Lock::kUnsupported : Lock::kError;  // EINVAL: kernel < 3.15
}

}  // namespace

Lock Take(int fd, int64_t byte, std::string* error) {
  if (fd < 0) return Lock::kUnsupported;
  struct flock fl = ByteLock(F_WRLCK, byte);
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return Lock::kHeld;
  if (errno == EAGAIN || errno == EACCES) return Lock::kFree;
  return Fail("F_OFD_SETLK", byte, error);
}

void Drop(int fd, int64_t byte) {
  if (fd < 0) return;
  struct flock fl = ByteLock(F_UNLCK, byte);
  (void)fcntl(fd, F_OFD_SETLK, &fl);
}

Lock Probe(int fd, int64_t byte, std::string* error) {
  if (fd < 0) return Lock::kUnsupported;
  struct flock fl = ByteLock(F_WRLCK, byte);
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return Fail("F_OFD_GETLK", byte, error);
  return fl.l_type == F_UNLCK ? Lock::kFree : Lock::kHeld;
}

Lock ProbeName(const std::string& name, int64_t byte, std::string* error) {
  const std::string bad = ValidateName(name);
  if (!bad.empty()) {
    if (error != nullptr) *error = bad;
    return Lock::kError;
  }
  // Non-blocking and without following links: whatever is at the name is only probed.
  const int fd = shm_open(OsName(name).c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW, 0);
  if (fd < 0) {
    if (error != nullptr) {
      const int e = errno;
      *error = "shm_open(" + OsName(name) + ") failed: errno " + std::to_string(e) + " (" +
               std::strerror(e) + ")";
    }
    return Lock::kError;
  }
  const Lock r = Probe(fd, byte, error);
  close(fd);
  return r;
}

#else  // no OFD locks: callers use the pids
// Windows: a paging-file section has no file to lock (LockFileEx needs a file
// handle), so every call says kUnsupported and the callers ask ProcessAlive about
// the header's pids: OpenProcess + WaitForSingleObject (process.cpp; docs/DESIGN.md
// "Windows" says why not a named mutex). macOS/BSD: kill(pid, 0).

Lock Take(int, int64_t, std::string*) { return Lock::kUnsupported; }
void Drop(int, int64_t) {}
Lock Probe(int, int64_t, std::string*) { return Lock::kUnsupported; }
Lock ProbeName(const std::string&, int64_t, std::string*) { return Lock::kUnsupported; }

#endif

}  // namespace liveness
}  // namespace shm
