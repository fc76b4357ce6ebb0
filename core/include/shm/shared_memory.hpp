// A named shared-memory segment: POSIX shm_open/mmap or Win32 file mappings.
// Knows nothing of the ring inside; the one place that maps ring names to OS
// names and decides which file at a name may be opened at all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace shm {

// Ring names are short tokens: 1..kMaxNameLength characters of [A-Za-z0-9._-],
// not starting with '.' or '-'. Returns an empty string when `name` is valid,
// else a sentence saying what is wrong. Any thread; never blocks.
constexpr size_t kMaxNameLength = 30;  // macOS PSHMNAMLEN (31) less the leading '/'
std::string ValidateName(const std::string& name);

// The OS object name for a ring name: "/cam0" on POSIX, "Local\cam0" on Windows.
// Any thread; never blocks.
std::string OsName(const std::string& name);

// Outcome of opening or creating a SharedMemory (the original API's error codes);
// SharedMemory::error_message() says what happened in words.
enum class Error : uint8_t {
  kOk = 0,
  kCreationFailed,  // create=true: the name exists, or shm_open/fchmod/ftruncate failed
  kMappingFailed,   // mmap / MapViewOfFile failed, or the segment is empty
  kOpenFailed,      // create=false: missing, not a regular file, permission, foreign owner, size
};

// The path a ring name has in the file system, for messages: "/dev/shm/cam0" on
// Linux, the OS name elsewhere. Any thread; never blocks.
std::string DisplayPath(const std::string& name);

class SharedMemory {
 public:
  // Everything the constructors accept beyond name, size and create.
  struct Options {
    // false: a creator unlinks the name when it is destroyed. Windows: no effect (a
    // mapping never outlives the last process that holds it).
    bool persist = true;
    // Permissions of a created segment (applied with fchmod, so the umask does not
    // apply). Windows: not used; the section gets the creator's default DACL.
    uint32_t mode = 0600;
    // Opening (create=false) refuses a segment owned by another user (POSIX: its
    // st_uid differs from our effective uid) unless this is true, as ssh's
    // StrictModes does: another user could truncate it under us or read our data.
    bool allow_foreign_owner = false;
  };

  // The original API. create=true: creates a new segment of `size` bytes (mode 0600;
  // fails if the name exists). create=false: opens an existing one; its size comes
  // from the OS and `size` (if non-zero) is the minimum accepted. persist=false
  // unlinks the name when a creator is destroyed. Check valid(); error() gives the
  // kind of failure, error_message() names the OS call and errno.
  // POSIX: the name is opened with O_NOFOLLOW|O_NONBLOCK and fstat'ed before it is
  // mapped: a symbolic link, FIFO, directory or anything else that is not a regular
  // file is refused at once ("... is a FIFO, not a ring"), and so is a segment owned
  // by another user (see Options::allow_foreign_owner). Any thread; blocks only in
  // the OS calls.
  SharedMemory(const char* name, std::size_t size, bool create, bool persist = true);
  SharedMemory(const std::string& name, std::size_t size, bool create, bool persist = true);
  SharedMemory(const std::string& name, std::size_t size, bool create, const Options& options);
  // Unmaps, closes the descriptor and, for a creator with persist=false, unlinks.
  ~SharedMemory();

  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  SharedMemory(SharedMemory&& other) noexcept;
  SharedMemory& operator=(SharedMemory&& other) noexcept;

  // Accessors: any thread; never block.
  void* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool valid() const noexcept { return data_ != nullptr; }
  Error error() const noexcept { return error_; }
  // What failed, naming the OS call and errno (empty when valid).
  const std::string& error_message() const { return error_message_; }
  // errno (Win32: GetLastError) of the failed OS call, 0 when none failed (also for
  // refusals that are not OS errors: not a regular file, foreign owner).
  int os_error() const noexcept { return os_error_; }
  // Whether the failure means the name may still become a segment: it does not
  // exist (ENOENT), or it exists with size 0 (a creator between shm_open and
  // ftruncate). Every other failure is final.
  bool missing() const noexcept { return missing_; }
  const std::string& name() const noexcept { return name_; }
  bool created() const noexcept { return created_; }
  // POSIX: the segment's descriptor, kept open for the mapping's lifetime (for
  // byte-range locks); -1 when not valid and on Windows.
  int fd() const noexcept { return fd_; }

  // The original API: removes the name (the mapping stays usable until
  // destruction); on failure error_message() says why. Windows: nothing to do and
  // true: a mapping has no name to remove and disappears with the last handle of
  // any process (docs/DESIGN.md "Windows"). Any thread; never blocks.
  void destroy();
  // The same, returning false (error_message() set) when the OS refuses.
  bool TryDestroy();

  // Removes the segment called `name`, whoever made it. Returns false (and an error
  // text in *error) when it does not exist or the OS refuses. Any thread; never blocks.
  static bool Unlink(const std::string& name, std::string* error);

  // What UnlinkIfStill did.
  enum class Unlinked {
    kYes,    // the name was removed
    kNo,     // left alone: gone already, naming another file, or `still` said no
    kBusy,   // another process is removing (or deciding about) the same file
    kError,  // a system call failed; *error names it and errno
  };
  // Removes name `name` only while it names the file of descriptor `fd` (-1: the
  // file the name names when called, opened here) and `still(fd)` agrees, holding
  // an exclusive flock() on that file meanwhile. Every producer takes that flock
  // before it removes a ring's name (when it replaces a stale ring, and at its
  // end), so between one process's check and its unlink nobody else can remove
  // the file and put a new ring under the name: the check holds for what is
  // unlinked. (flock and the OFD byte locks of liveness.hpp do not interact.)
  // wait=false: kBusy when another process holds the flock; true: waits for it
  // (holders never wait while they hold it). Any thread; blocks only with wait.
  // Windows: kYes without doing anything (a mapping has no name to remove; it
  // goes with its last handle): the name may still be taken.
  static Unlinked UnlinkIfStill(const std::string& name, int fd, bool wait,
                                const std::function<bool(int fd)>& still, std::string* error);
  // For tests only: called by UnlinkIfStill between its checks and the unlink,
  // with the flock held (nullptr: nothing). Not thread-safe to change while in use.
  static void (*before_unlink_for_tests)(const std::string& name);

  // What a ring name holds, looked at without mapping it, without following a
  // symbolic link and without blocking (POSIX: O_RDONLY|O_NOFOLLOW|O_NONBLOCK, then
  // fstat before any read).
  struct SegmentInfo {
    enum class Kind : uint8_t {
      kMissing,  // no such name (ENOENT)
      kSegment,  // a regular file we could open: size, age, owner, header filled in
      kForeign,  // something that is not a regular file (FIFO, directory, symlink, ...)
      kDenied,   // exists but we may not read it (EACCES): owner filled in
      kError,    // any other failure
    };
    Kind kind = Kind::kMissing;
    uint64_t size = 0;
    double age_seconds = 0;  // since st_ctime (creation or last resize)
    uint32_t owner_uid = 0;
    bool owned_by_us = true;  // owner_uid is our effective uid (always true on Windows)
    std::string owner;        // "uid 1001 (alice)"; filled when not owned by us
    long header_bytes = 0;    // bytes copied to the caller's header buffer
    int os_error = 0;
    std::string error;  // for every kind but kSegment: what, naming the path and errno
  };
  // Fills `header` with up to `header_len` bytes from offset 0 (kSegment only).
  // Windows: size from VirtualQuery (rounded up to whole pages), age 0, owner
  // unknown (the section's DACL is not read). Any thread; never blocks.
  static SegmentInfo Inspect(const std::string& name, void* header, size_t header_len);

  // Size of segment `name` and seconds since it was created or resized (POSIX st_size,
  // st_ctime). False when it is not a readable regular file (see Inspect). Windows:
  // the page-rounded size and age 0 (a mapping lives only while a process holds it).
  // Any thread; never blocks.
  static bool Stat(const std::string& name, uint64_t* size, double* age_seconds);

  // Reads up to `len` bytes at offset 0 of segment `name` without mapping it (a
  // cheap look at a generation or a header). Returns the bytes read, or -1 with the
  // reason in *error (anything that is not a readable regular file is refused, see
  // Inspect). Any thread; never blocks.
  static long PeekHeader(const std::string& name, void* out, size_t len, std::string* error);

 private:
  void Open(const std::string& name, std::size_t size, bool create, const Options& options);
  void Fail(Error kind, std::string message, int os_error);
  void Release();

  std::string name_;
  void* data_ = nullptr;
  std::size_t size_ = 0;
  bool created_ = false;
  bool persist_ = true;
  bool missing_ = false;
  Error error_ = Error::kOk;
  std::string error_message_;
  int os_error_ = 0;
  int fd_ = -1;
#ifdef _WIN32
  void* handle_ = nullptr;
#endif
};

}  // namespace shm
