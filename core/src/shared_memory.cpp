#include "shm/shared_memory.hpp"

#include <cerrno>
#include <cstring>
#include <utility>

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
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

std::string SharedMemory::OsErr(const char* call, const std::string& what) {
#ifdef _WIN32
  os_error_ = static_cast<int>(GetLastError());
#else
  os_error_ = errno;
#endif
  return OsError(call, what);
}

SharedMemory::SharedMemory(const std::string& name, size_t size, bool create, bool persist)
    : SharedMemory(name, size, create, persist, 0600) {}

SharedMemory::SharedMemory(const std::string& name, size_t size, bool create, bool persist,
                           uint32_t mode)
    : name_(name), created_(create), persist_(persist) {
  error_ = ValidateName(name);
  if (!error_.empty()) return;
  const std::string os = OsName(name);
  if (create && size == 0) {
    error_ = "SharedMemory: size 0 for a new segment";
    return;
  }
#ifdef _WIN32
  (void)mode;
  HANDLE h;
  if (create) {
    const uint64_t s = size;
    h = CreateFileMappingA(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE,
                           static_cast<DWORD>(s >> 32), static_cast<DWORD>(s & 0xFFFFFFFFu),
                           os.c_str());
    if (h != nullptr && GetLastError() == ERROR_ALREADY_EXISTS) {
      CloseHandle(h);
      SetLastError(ERROR_ALREADY_EXISTS);
      error_ = OsErr("CreateFileMappingA", os);
      return;
    }
    if (h == nullptr) {
      error_ = OsErr("CreateFileMappingA", os);
      return;
    }
  } else {
    h = OpenFileMappingA(FILE_MAP_ALL_ACCESS, FALSE, os.c_str());
    if (h == nullptr) {
      error_ = OsErr("OpenFileMappingA", os);
      return;
    }
  }
  void* p = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, create ? size : 0);
  if (p == nullptr) {
    error_ = OsErr("MapViewOfFile", os);
    CloseHandle(h);
    return;
  }
  size_t real = size;
  if (!create) {
    MEMORY_BASIC_INFORMATION info;
    if (VirtualQuery(p, &info, sizeof info) == 0) {
      error_ = OsErr("VirtualQuery", os);
      UnmapViewOfFile(p);
      CloseHandle(h);
      return;
    }
    real = info.RegionSize;
  }
  handle_ = h;
#else
  const int flags = create ? (O_RDWR | O_CREAT | O_EXCL) : O_RDWR;
  const int fd = shm_open(os.c_str(), flags, static_cast<mode_t>(mode));
  if (fd < 0) {
    error_ = OsErr("shm_open", os);
    return;
  }
  size_t real = size;
  if (create) {
    // shm_open applies the umask; the caller's mode is what they asked for.
    const bool chmod_ok = fchmod(fd, static_cast<mode_t>(mode)) == 0;
    if (!chmod_ok || ftruncate(fd, static_cast<off_t>(size)) != 0) {
      error_ = OsErr(chmod_ok ? "ftruncate" : "fchmod", os);
      close(fd);
      shm_unlink(os.c_str());
      return;
    }
  } else {
    struct stat st;
    if (fstat(fd, &st) != 0) {
      error_ = OsErr("fstat", os);
      close(fd);
      return;
    }
    real = static_cast<size_t>(st.st_size);
  }
  void* p = real == 0 ? MAP_FAILED : mmap(nullptr, real, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    error_ = real == 0 ? "segment " + os + " has size 0" : OsErr("mmap", os);
    close(fd);
    if (create) shm_unlink(os.c_str());
    return;
  }
  fd_ = fd;  // kept open: the role locks live on it (closed in Release)
#endif
  if (!create && size != 0 && real < size) {
    error_ = "segment " + os + " has " + std::to_string(real) + " bytes, fewer than the " +
             std::to_string(size) + " required";
    data_ = p;
    size_ = real;
    Release();  // also closes fd_
    return;
  }
  data_ = p;
  size_ = real;
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
    error_ = std::move(other.error_);
    os_error_ = other.os_error_;
    fd_ = std::exchange(other.fd_, -1);
#ifdef _WIN32
    handle_ = std::exchange(other.handle_, nullptr);
#endif
  }
  return *this;
}

void SharedMemory::Release() {
  if (data_ == nullptr) return;
  if (created_ && !persist_) destroy();
#ifdef _WIN32
  UnmapViewOfFile(data_);
  if (handle_ != nullptr) CloseHandle(static_cast<HANDLE>(handle_));
  handle_ = nullptr;
#else
  munmap(data_, size_);
  if (fd_ >= 0) close(fd_);  // drops every lock this descriptor holds
  fd_ = -1;
#endif
  data_ = nullptr;
  size_ = 0;
}

bool SharedMemory::destroy() {
#ifdef _WIN32
  // A Win32 mapping disappears with its last handle; nothing to unlink.
  return true;
#else
  std::string err;
  if (!Unlink(name_, &err)) {
    error_ = err;
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

bool SharedMemory::Stat(const std::string& name, uint64_t* size, double* age_seconds) {
  if (!ValidateName(name).empty()) return false;
#ifdef _WIN32
  *size = 0;
  *age_seconds = 0;
  return true;
#else
  const int fd = shm_open(OsName(name).c_str(), O_RDONLY, 0);
  if (fd < 0) return false;
  struct stat st;
  const int r = fstat(fd, &st);
  close(fd);
  if (r != 0) return false;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  *size = static_cast<uint64_t>(st.st_size);
  *age_seconds = static_cast<double>(now.tv_sec - st.st_ctim.tv_sec) +
                 static_cast<double>(now.tv_nsec - st.st_ctim.tv_nsec) * 1e-9;
  return true;
#endif
}

long SharedMemory::PeekHeader(const std::string& name, void* out, size_t len, std::string* error) {
  std::string bad = ValidateName(name);
  if (!bad.empty()) {
    if (error) *error = bad;
    return -1;
  }
  const std::string os = OsName(name);
#ifdef _WIN32
  HANDLE h = OpenFileMappingA(FILE_MAP_READ, FALSE, os.c_str());
  if (h == nullptr) {
    if (error) *error = OsError("OpenFileMappingA", os);
    return -1;
  }
  void* p = MapViewOfFile(h, FILE_MAP_READ, 0, 0, 0);
  if (p == nullptr) {
    if (error) *error = OsError("MapViewOfFile", os);
    CloseHandle(h);
    return -1;
  }
  MEMORY_BASIC_INFORMATION info;
  size_t n = len;
  if (VirtualQuery(p, &info, sizeof info) != 0 && info.RegionSize < n) n = info.RegionSize;
  std::memcpy(out, p, n);
  UnmapViewOfFile(p);
  CloseHandle(h);
  return static_cast<long>(n);
#else
  const int fd = shm_open(os.c_str(), O_RDONLY, 0);
  if (fd < 0) {
    if (error) *error = OsError("shm_open", os);
    return -1;
  }
  const ssize_t n = pread(fd, out, len, 0);
  if (n < 0 && error) *error = OsError("pread", os);
  close(fd);
  return static_cast<long>(n);
#endif
}

}  // namespace shm
