// A named shared-memory segment: POSIX shm_open/mmap or Win32 file mappings.
// Knows nothing of rings; the one place that maps ring names to OS names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace shm {

// Ring names are short tokens: 1..kMaxNameLength characters of [A-Za-z0-9._-],
// not starting with '.' or '-'. Returns an empty string when `name` is valid,
// else a sentence saying what is wrong. Any thread; never blocks.
constexpr size_t kMaxNameLength = 30;  // macOS PSHMNAMLEN (31) less the leading '/'
std::string ValidateName(const std::string& name);

// The OS object name for a ring name: "/cam0" on POSIX, "Local\cam0" on Windows.
std::string OsName(const std::string& name);

class SharedMemory {
 public:
  // create=true: creates a new segment of `size` bytes (mode 0600; fails if the name
  // exists). create=false: opens an existing one; its size comes from the OS and
  // `size` (if non-zero) is the minimum accepted. persist=false unlinks the name when a
  // creator is destroyed. Check valid(); error() names the OS call and errno.
  // Blocks only in the OS calls.
  SharedMemory(const std::string& name, size_t size, bool create, bool persist = true);
  SharedMemory(const std::string& name, size_t size, bool create, bool persist, uint32_t mode);
  ~SharedMemory();

  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  SharedMemory(SharedMemory&& other) noexcept;
  SharedMemory& operator=(SharedMemory&& other) noexcept;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  bool valid() const { return data_ != nullptr; }
  const std::string& error() const { return error_; }
  // errno (Win32: GetLastError) of the failed OS call, 0 when none failed.
  int os_error() const { return os_error_; }
  const std::string& name() const { return name_; }
  bool created() const { return created_; }
  // POSIX: the segment's descriptor, kept open for the mapping's lifetime (its
  // byte-range locks are the ring's role locks; see liveness.hpp). -1 when not
  // valid, and always -1 on Windows. Any thread; never blocks.
  int fd() const { return fd_; }

  // Removes the name (the mapping stays usable until destruction). Returns false and
  // sets error() when the OS refuses. Creator side; never blocks.
  bool destroy();

  // Removes the segment called `name`, whoever made it. Returns false (and an error
  // text in *error) when it does not exist or the OS refuses.
  static bool Unlink(const std::string& name, std::string* error);

  // Size of segment `name` and seconds since it was created or resized (POSIX st_size,
  // st_ctime). False when it cannot be looked at. Windows: size unknown (0) and age 0
  // (a mapping lives only while a process holds it).
  static bool Stat(const std::string& name, uint64_t* size, double* age_seconds);

  // Reads up to `len` bytes at offset 0 of segment `name` without mapping it
  // (used to check a generation or a header cheaply). Returns the bytes read, or -1
  // with errno (Win32: GetLastError) left as the failed call set it.
  static long PeekHeader(const std::string& name, void* out, size_t len, std::string* error);

 private:
  void Release();
  std::string OsErr(const char* call, const std::string& what);

  std::string name_;
  void* data_ = nullptr;
  size_t size_ = 0;
  bool created_ = false;
  bool persist_ = true;
  std::string error_;
  int os_error_ = 0;
  int fd_ = -1;
#ifdef _WIN32
  void* handle_ = nullptr;
#endif
};

}  // namespace shm
