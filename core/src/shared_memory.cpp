#include "shm/shared_memory.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "wait_views.hpp"

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vector>
#endif

namespace shm {
namespace {

std::string OsError(const char* call, const std::string& what) {
#ifdef _WIN32
  return std::string(call) + "(" + what + ") failed: Win32 error " +
         std::to_string(static_cast<unsigned long>(GetLastError()));
#else
  const int e = errno;
  return std::string(call) + "(" + what + ") failed: errno " + std::to_string(e) + " (" +
         std::strerror(e) + ")";
#endif
}

#ifndef _WIN32
// Extra open flags for every open of an existing name. Linux (glibc and musl pass
// them through shm_open): never follow a planted symbolic link, never block on a
// FIFO. Other systems keep shm objects outside the file system and reject the flags.
#ifdef __linux__
constexpr int kOpenExtra = O_NOFOLLOW | O_NONBLOCK;
#else
constexpr int kOpenExtra = 0;
#endif

// "uid 1001 (alice)", or "uid 1001" when the user database has no entry.
std::string OwnerText(uid_t uid) {
  std::string text = "uid " + std::to_string(static_cast<unsigned long>(uid));
  long max = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(max > 0 ? static_cast<size_t>(max) : 16384);
  struct passwd pw;
  struct passwd* found = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    text += std::string(" (") + found->pw_name + ")";
  }
  return text;
}

// What a file that is not a regular file is, for "... is a FIFO, not a ring".
const char* FileKind(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "a special file";
}

// Whether the type of an opened segment is acceptable: Linux keeps shm objects as
// files in /dev/shm, where anyone may plant something else; only a regular file is
// a segment. Elsewhere shm objects are not files and fstat's type is not meaningful.
bool IsSegmentType(mode_t mode) {
#ifdef __linux__
  return S_ISREG(mode);
#else
  (void)mode;
  return true;
#endif
}

std::string NotARing(const std::string& name, mode_t mode) {
  return DisplayPath(name) + " is " + FileKind(mode) + ", not a ring";
}

// The message for a failed open of an existing name: permission (with the owner),
// a symbolic link or a directory said as such, else the call and errno.
std::string OpenFailure(const std::string& name, const char* call, int e) {
  const std::string path = DisplayPath(name);
#ifdef __linux__
  struct stat st;
  const bool seen = e != ENOENT && lstat(path.c_str(), &st) == 0;
  // Not a regular file says more than any errno it caused: ELOOP (a link met
  // O_NOFOLLOW), EINVAL (glibc's word for EISDIR), EACCES (protected_fifos), ...
  if (seen && !S_ISREG(st.st_mode)) return NotARing(name, st.st_mode);
  if (e == EACCES || e == EPERM) {
    std::string text = "permission denied: " + path;
    if (seen) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      text += " is owned by " + OwnerText(st.st_uid) + " with mode " + mode;
    }
    return text + " (" + call + ": errno " + std::to_string(e) + ")";
  }
#endif
  errno = e;
  return OsError(call, OsName(name));
}
#endif

bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

std::string ValidateName(const std::string& name) {
  if (name.empty()) return "ring name is empty";
  if (name.size() > kMaxNameLength) {
    return "ring name '" + name + "' is " + std::to_string(name.size()) +
           " characters long; the limit is " + std::to_string(kMaxNameLength);
  }
  if (name[0] == '.' || name[0] == '-') {
    return "ring name '" + name + "' must not start with '.' or '-'";
  }
  for (char c : name) {
    if (!NameChar(c)) {
      return "ring name '" + name + "' has a character outside [A-Za-z0-9._-]";
    }
  }
  return "";
}

std::string OsName(const std::string& name) {
#ifdef _WIN32
  return "Local\\" + name;
#else
  return "/" + name;
#endif
}

std::string DisplayPath(const std::string& name) {
#ifdef __linux__
  return "/dev/shm/" + name;
#else
  return OsName(name);
#endif
}

void SharedMemory::Fail(Error kind, std::string message, int os_error) {
  error_ = kind;
  error_message_ = std::move(message);
  os_error_ = os_error;
}

SharedMemory::SharedMemory(const char* name, std::size_t size, bool create, bool persist)
    : SharedMemory(std::string(name != nullptr ? name : ""), size, create, persist) {}

SharedMemory::SharedMemory(const std::string& name, std::size_t size, bool create, bool persist) {
  Options o;
  o.persist = persist;
  Open(name, size, create, o);
}

SharedMemory::SharedMemory(const std::string& name, std::size_t size, bool create,
                           const Options& options) {
  Open(name, size, create, options);
}

void SharedMemory::Open(const std::string& name, std::size_t size, bool create,
                        const Options& options) {
  name_ = name;
  created_ = create;
  persist_ = options.persist;
  const Error refused = create ? Error::kCreationFailed : Error::kOpenFailed;
  std::string bad = ValidateName(name);
  if (!bad.empty()) return Fail(refused, bad, 0);
  const std::string os = OsName(name);
  if (create && size == 0) return Fail(refused, "SharedMemory: size 0 for a new segment", 0);
#ifdef _WIN32
  (void)options;
  HANDLE h;
  if (create) {
    const uint64_t s = size;
    h = CreateFileMappingA(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE,
                           static_cast<DWORD>(s >> 32), static_cast<DWORD>(s & 0xFFFFFFFFu),
                           os.c_str());
    if (h != nullptr && GetLastError() == ERROR_ALREADY_EXISTS) {
      CloseHandle(h);
      SetLastError(ERROR_ALREADY_EXISTS);
      return Fail(refused, OsError("CreateFileMappingA", os), ERROR_ALREADY_EXISTS);
    }
    if (h == nullptr) {
      const int e = static_cast<int>(GetLastError());
      return Fail(refused, OsError("CreateFileMappingA", os), e);
    }
  } else {
    h = OpenFileMappingA(FILE_MAP_ALL_ACCESS, FALSE, os.c_str());
    if (h == nullptr) {
      const int e = static_cast<int>(GetLastError());
      missing_ = e == ERROR_FILE_NOT_FOUND;
      return Fail(refused, OsError("OpenFileMappingA", os), e);
    }
  }
  void* p = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, create ? size : 0);
  if (p == nullptr) {
    const int e = static_cast<int>(GetLastError());
    std::string msg = OsError("MapViewOfFile", os);
    CloseHandle(h);
    return Fail(Error::kMappingFailed, msg, e);
  }
  std::size_t real = size;
  if (!create) {
    MEMORY_BASIC_INFORMATION info;
    if (VirtualQuery(p, &info, sizeof info) == 0) {
      const int e = static_cast<int>(GetLastError());
      std::string msg = OsError("VirtualQuery", os);
      UnmapViewOfFile(p);
      CloseHandle(h);
      return Fail(Error::kMappingFailed, msg, e);
    }
    // The view spans the whole section, rounded up to whole pages: the creator's
    // size rounded up to 4096. The ring checks its header's capacity against it.
    real = info.RegionSize;
  }
  handle_ = h;
  // Wake-ups for words of this ring go through named events (wait_views.hpp).
  wait::RegisterView(p, real, name);
#else
  const int flags = create ? (O_RDWR | O_CREAT | O_EXCL) : (O_RDWR | kOpenExtra);
  const mode_t mode = static_cast<mode_t>(options.mode);
  const int fd = shm_open(os.c_str(), flags, mode);
  if (fd < 0) {
    const int e = errno;
    missing_ = !create && e == ENOENT;
    // EEXIST is the one answer a creator expects; anything else is explained.
    return Fail(refused, e == EEXIST ? OsError("shm_open", os) : OpenFailure(name, "shm_open", e),
                e);
  }
  std::size_t real = size;
  if (create) {
    // shm_open applies the umask; the caller's mode is what they asked for.
    const bool chmod_ok = fchmod(fd, mode) == 0;
    if (!chmod_ok || ftruncate(fd, static_cast<off_t>(size)) != 0) {
      const int e = errno;
      std::string msg = OsError(chmod_ok ? "ftruncate" : "fchmod", os);
      close(fd);
      shm_unlink(os.c_str());
      return Fail(refused, msg, e);
    }
  } else {
    struct stat st;
    if (fstat(fd, &st) != 0) {
      const int e = errno;
      std::string msg = OsError("fstat", os);
      close(fd);
      return Fail(refused, msg, e);
    }
    if (!IsSegmentType(st.st_mode)) {
      close(fd);
      return Fail(refused, NotARing(name, st.st_mode), 0);
    }
    if (st.st_uid != geteuid() && !options.allow_foreign_owner) {
      close(fd);
      return Fail(refused,
                  DisplayPath(name) + " is owned by " + OwnerText(st.st_uid) +
                      ", not by this process's " + OwnerText(geteuid()) +
                      "; refused (allow a foreign owner explicitly to use it)",
                  0);
    }
    real = static_cast<std::size_t>(st.st_size);
    if (real == 0) {
      close(fd);
      missing_ = true;  // a creator between shm_open and ftruncate
      return Fail(refused, "segment " + DisplayPath(name) + " has size 0", 0);
    }
  }
  void* p = mmap(nullptr, real, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const int e = errno;
    std::string msg = OsError("mmap", os);
    close(fd);
    if (create) shm_unlink(os.c_str());
    return Fail(Error::kMappingFailed, msg, e);
  }
  fd_ = fd;  // kept open for the mapping's lifetime (byte-range locks live on it)
#endif
  data_ = p;
  size_ = real;
  if (!create && size != 0 && real < size) {
    Release();
    return Fail(refused,
                "segment " + DisplayPath(name) + " has " + std::to_string(real) +
                    " bytes, fewer than the " + std::to_string(size) + " required",
                0);
  }
}

SharedMemory::~SharedMemory() { Release(); }

SharedMemory::SharedMemory(SharedMemory&& other) noexcept { *this = std::move(other); }

SharedMemory& SharedMemory::operator=(SharedMemory&& other) noexcept {
  if (this != &other) {
    Release();
    name_ = std::move(other.name_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    created_ = other.created_;
    persist_ = other.persist_;
    missing_ = other.missing_;
    error_ = other.error_;
    error_message_ = std::move(other.error_message_);
    os_error_ = other.os_error_;
    fd_ = std::exchange(other.fd_, -1);
#ifdef _WIN32
    handle_ = std::exchange(other.handle_, nullptr);
#endif
  }
  return *this;
}

void SharedMemory::Release() {
  if (data_ != nullptr) {
    if (created_ && !persist_) destroy();
#ifdef _WIN32
    wait::UnregisterView(data_);
    UnmapViewOfFile(data_);
    if (handle_ != nullptr) CloseHandle(static_cast<HANDLE>(handle_));
    handle_ = nullptr;
#else
    munmap(data_, size_);
#endif
  }
#ifndef _WIN32
  if (fd_ >= 0) close(fd_);  // after the unlink: a lock on it is held until the name is gone
#endif
  fd_ = -1;
  data_ = nullptr;
  size_ = 0;
}

void SharedMemory::destroy() { (void)TryDestroy(); }

bool SharedMemory::TryDestroy() {
#ifdef _WIN32
  // A Win32 mapping disappears with its last handle; nothing to unlink.
  return true;
#else
  std::string err;
  if (!Unlink(name_, &err)) {
    error_message_ = err;
    return false;
  }
  return true;
#endif
}

bool SharedMemory::Unlink(const std::string& name, std::string* error) {
  std::string bad = ValidateName(name);
  if (!bad.empty()) {
    if (error) *error = bad;
    return false;
  }
#ifdef _WIN32
  (void)error;
  return true;
#else
  const std::string os = OsName(name);
  if (shm_unlink(os.c_str()) != 0) {
    if (error) *error = OsError("shm_unlink", os);
    return false;
  }
  return true;
#endif
}

void (*SharedMemory::before_unlink_for_tests)(const std::string& name) = nullptr;

#ifdef _WIN32
SharedMemory::Unlinked SharedMemory::UnlinkIfStill(const std::string&, int, bool,
                                                   const std::function<bool(int)>&, std::string*) {
  return Unlinked::kYes;  // a Win32 mapping disappears with its last handle
}
#else
SharedMemory::Unlinked SharedMemory::UnlinkIfStill(const std::string& name, int fd, bool wait,
                                                   const std::function<bool(int)>& still,
                                                   std::string* error) {
  const std::string bad = ValidateName(name);
  if (!bad.empty()) {
    if (error) *error = bad;
    return Unlinked::kError;
  }
  const std::string os = OsName(name);
  auto fail = [&](const char* call) {
    if (error) *error = OsError(call, os);
    return Unlinked::kError;
  };
  const bool own = fd >= 0;
  if (!own) {
    fd = shm_open(os.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW, 0);
    if (fd < 0) return errno == ENOENT ? Unlinked::kNo : fail("shm_open");
  }
  Unlinked result = Unlinked::kNo;
  int rc;
  do {
    rc = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    result = errno == EWOULDBLOCK ? Unlinked::kBusy : fail("flock");
  } else {
    // The name must still name the file we hold: compare what it names now.
    const int now = shm_open(os.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW, 0);
    if (now < 0) {
      result = errno == ENOENT ? Unlinked::kNo : fail("shm_open");
    } else {
      struct stat held {
      }, named{};
      const bool same = fstat(fd, &held) == 0 && fstat(now, &named) == 0 &&
                        held.st_dev == named.st_dev && held.st_ino == named.st_ino;
      close(now);
      if (same && still(fd)) {
        if (before_unlink_for_tests != nullptr) before_unlink_for_tests(name);
        if (shm_unlink(os.c_str()) == 0) {
          result = Unlinked::kYes;
        } else if (errno != ENOENT) {
          result = fail("shm_unlink");
        }
      }
    }
    flock(fd, LOCK_UN);
  }
  if (!own) close(fd);
  return result;
}
#endif

SharedMemory::SegmentInfo SharedMemory::Inspect(const std::string& name, void* header,
                                                size_t header_len) {
  SegmentInfo info;
  std::string bad = ValidateName(name);
  if (!bad.empty()) {
    info.kind = SegmentInfo::Kind::kError;
    info.error = bad;
    return info;
  }
  const std::string os = OsName(name);
#ifdef _WIN32
  HANDLE h = OpenFileMappingA(FILE_MAP_READ, FALSE, os.c_str());
  if (h == nullptr) {
    const DWORD e = GetLastError();
    info.os_error = static_cast<int>(e);
    info.kind = e == ERROR_FILE_NOT_FOUND  ? SegmentInfo::Kind::kMissing
                : e == ERROR_ACCESS_DENIED ? SegmentInfo::Kind::kDenied
                                           : SegmentInfo::Kind::kError;
    info.error = OsError("OpenFileMappingA", os);
    return info;
  }
  void* p = MapViewOfFile(h, FILE_MAP_READ, 0, 0, 0);
  if (p == nullptr) {
    info.os_error = static_cast<int>(GetLastError());
    info.kind = SegmentInfo::Kind::kError;
    info.error = OsError("MapViewOfFile", os);
    CloseHandle(h);
    return info;
  }
  MEMORY_BASIC_INFORMATION mbi;
  size_t n = header_len;
  if (VirtualQuery(p, &mbi, sizeof mbi) != 0) {
    info.size = mbi.RegionSize;  // the section's size rounded up to whole pages
    if (mbi.RegionSize < n) n = mbi.RegionSize;
  }
  if (n != 0) std::memcpy(header, p, n);
  UnmapViewOfFile(p);
  CloseHandle(h);
  info.kind = SegmentInfo::Kind::kSegment;
  info.header_bytes = static_cast<long>(n);
  return info;
#else
  const int fd = shm_open(os.c_str(), O_RDONLY | kOpenExtra, 0);
  if (fd < 0) {
    const int e = errno;
    info.os_error = e;
    info.error = OpenFailure(name, "shm_open", e);
    if (e == ENOENT) {
      info.kind = SegmentInfo::Kind::kMissing;
    } else if (e == EACCES || e == EPERM) {
      info.kind = SegmentInfo::Kind::kDenied;
    } else if (e == ELOOP) {
      info.kind = SegmentInfo::Kind::kForeign;  // O_NOFOLLOW met a symbolic link
    } else {
      info.kind = SegmentInfo::Kind::kError;
    }
#ifdef __linux__
    struct stat st;
    if (info.kind != SegmentInfo::Kind::kMissing && lstat(DisplayPath(name).c_str(), &st) == 0) {
      info.owner_uid = static_cast<uint32_t>(st.st_uid);
      info.owned_by_us = st.st_uid == geteuid();
      info.owner = OwnerText(st.st_uid);
    }
#endif
    return info;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    info.os_error = errno;
    info.kind = SegmentInfo::Kind::kError;
    info.error = OsError("fstat", os);
    close(fd);
    return info;
  }
  info.owner_uid = static_cast<uint32_t>(st.st_uid);
  info.owned_by_us = st.st_uid == geteuid();
  // The user database is read only when the answer matters (liveness looks at our
  // own segments run every 200 ms).
  if (!info.owned_by_us) info.owner = OwnerText(st.st_uid);
  if (!IsSegmentType(st.st_mode)) {  // checked before any read: a FIFO never blocks us
    info.kind = SegmentInfo::Kind::kForeign;
    info.error = NotARing(name, st.st_mode);
    close(fd);
    return info;
  }
  info.kind = SegmentInfo::Kind::kSegment;
  info.size = static_cast<uint64_t>(st.st_size);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  info.age_seconds = static_cast<double>(now.tv_sec - st.st_ctim.tv_sec) +
                     static_cast<double>(now.tv_nsec - st.st_ctim.tv_nsec) * 1e-9;
  if (header_len != 0) {
    const ssize_t n = pread(fd, header, header_len, 0);
    if (n < 0) {
      info.os_error = errno;
      info.kind = SegmentInfo::Kind::kError;
      info.error = OsError("pread", os);
    } else {
      info.header_bytes = static_cast<long>(n);
    }
  }
  close(fd);
  return info;
#endif
}

bool SharedMemory::Stat(const std::string& name, uint64_t* size, double* age_seconds) {
  const SegmentInfo info = Inspect(name, nullptr, 0);
  if (info.kind != SegmentInfo::Kind::kSegment) return false;
  *size = info.size;
  *age_seconds = info.age_seconds;
  return true;
}

long SharedMemory::PeekHeader(const std::string& name, void* out, size_t len, std::string* error) {
  const SegmentInfo info = Inspect(name, out, len);
  if (info.kind != SegmentInfo::Kind::kSegment) {
    if (error) *error = info.error;
    return -1;
  }
  return info.header_bytes;
}

}  // namespace shm
