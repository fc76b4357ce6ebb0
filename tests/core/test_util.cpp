#include "test_util.hpp"

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <map>
#include <mutex>
#else
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <cstdlib>
#include <cstring>
#include <thread>

#include "shm/byte_ring_buffer.hpp"
#include "shm/layout.hpp"

namespace shmtest {

namespace {
size_t RoundUp(size_t v, size_t to) { return (v + to - 1) / to * to; }
#ifdef _WIN32
size_t PageSize() {
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  return si.dwPageSize;
}
// Private read-write pages, and a page made inaccessible.
void* MapPages(size_t len) {
  return VirtualAlloc(nullptr, len, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
}
bool ProtectNone(void* p, size_t len) {
  DWORD old;
  return VirtualProtect(p, len, PAGE_NOACCESS, &old) != 0;
}
void UnmapPages(void* p, size_t) { VirtualFree(p, 0, MEM_RELEASE); }
#else
size_t PageSize() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
void* MapPages(size_t len) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}
bool ProtectNone(void* p, size_t len) { return mprotect(p, len, PROT_NONE) == 0; }
void UnmapPages(void* p, size_t len) { munmap(p, len); }
#endif
}  // namespace

RingImage::RingImage(uint32_t capacity, Guard guard) : capacity_(capacity), guard_(guard) {
  size_ = uint64_t{shm::layout::kHeaderSize} + capacity;
  const size_t page = PageSize();
  if (guard_ == Guard::kBytes) {
    guarded_len_ = RoundUp(size_ + kGuardBytes, page);
    map_len_ = guarded_len_;
  } else {
    guarded_len_ = RoundUp(size_, page);
    map_len_ = guarded_len_ + page;
  }
  void* p = MapPages(map_len_);
  if (p == nullptr) abort();
  map_ = static_cast<uint8_t*>(p);
  std::memset(map_, kGuardByte, guarded_len_);
  if (guard_ == Guard::kBytes) {
    base_ = map_;
  } else {
    if (!ProtectNone(map_ + guarded_len_, page)) abort();
    base_ = map_ + guarded_len_ - size_;  // data area ends at the PROT_NONE page
  }
  std::memset(base_, 0, size_);
}

RingImage::~RingImage() { UnmapPages(map_, map_len_); }

std::string RingImage::Init(uint32_t start_index, uint32_t profile) {
  return shm::ByteRingBuffer::Initialize(base_, size_, capacity_, profile, 1, start_index);
}

uint8_t* RingImage::data() const { return base_ + shm::layout::kHeaderSize; }

bool RingImage::GuardIntact() const {
  for (const uint8_t* p = map_; p < base_; ++p) {
    if (*p != kGuardByte) return false;
  }
  for (const uint8_t* p = base_ + size_; p < map_ + guarded_len_; ++p) {
    if (*p != kGuardByte) return false;
  }
  return true;
}

uint32_t RingImage::U32(uint32_t offset) const {
  uint32_t v;
  std::memcpy(&v, base_ + offset, 4);
  return v;
}

void RingImage::SetU32(uint32_t offset, uint32_t v) { std::memcpy(base_ + offset, &v, 4); }

void RingImage::SetU16(uint32_t offset, uint16_t v) { std::memcpy(base_ + offset, &v, 2); }

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

namespace {

constexpr uint32_t kSeqBytes = 8;
constexpr uint32_t kPrefix = 12;  // u64 seq + u32 checksum

uint32_t Checksum(const uint8_t* p, uint32_t n) {
  uint64_t h = 0xCBF29CE484222325ull ^ n;
  uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001B3ull;
    h ^= h >> 29;
  }
  for (; i < n; ++i) h = (h ^ p[i]) * 0x100000001B3ull;
  return static_cast<uint32_t>(h ^ (h >> 32));
}

}  // namespace

PayloadModel::PayloadModel(uint32_t max_len, uint64_t key)
    : max_len_(max_len), key_(key), pool_(size_t{max_len} * 2 + 16) {
  uint64_t s = key;
  for (auto& b : pool_) b = static_cast<uint8_t>((s = SplitMix64(s)) >> 56);
}

uint32_t PayloadModel::SizeFor(uint64_t seq) const {
  const uint64_t r = SplitMix64(key_ ^ (seq * 0xD1B54A32D192ED03ull));
  const uint64_t bucket = r & 63;
  uint64_t limit;
  if (bucket == 0) {
    limit = max_len_;  // large: forces WRAP markers and full-ring waits
  } else if (bucket <= 8) {
    limit = max_len_ < 1024 ? max_len_ : 1024;
  } else {
    limit = max_len_ < 64 ? max_len_ : 64;
  }
  return static_cast<uint32_t>((r >> 8) % (limit + 1));
}

const uint8_t* PayloadModel::Pool(uint64_t seq) const {
  return pool_.data() + SplitMix64(seq) % (max_len_ + 1);
}

void PayloadModel::Fill(uint64_t seq, uint8_t* out, uint32_t len) const {
  const uint8_t* src = Pool(seq);
  if (len < kPrefix) {
    std::memcpy(out, src, len);
    return;
  }
  std::memcpy(out, &seq, kSeqBytes);
  std::memcpy(out + kPrefix, src, len - kPrefix);
  const uint32_t sum = Checksum(out + kPrefix, len - kPrefix);
  std::memcpy(out + kSeqBytes, &sum, 4);
}

std::string PayloadModel::Check(uint64_t seq, const uint8_t* msg, uint32_t len) const {
  const uint32_t want = SizeFor(seq);
  if (len != want) {
    return "message " + std::to_string(seq) + " has length " + std::to_string(len) + ", expected " +
           std::to_string(want);
  }
  const uint8_t* src = Pool(seq);
  if (len < kPrefix) {
    if (len != 0 && std::memcmp(msg, src, len) != 0) {
      return "message " + std::to_string(seq) + " (short) has wrong bytes";
    }
    return "";
  }
  uint64_t got_seq;
  uint32_t got_sum;
  std::memcpy(&got_seq, msg, kSeqBytes);
  std::memcpy(&got_sum, msg + kSeqBytes, 4);
  if (got_seq != seq) {
    return "expected message " + std::to_string(seq) + ", got sequence number " +
           std::to_string(got_seq);
  }
  if (got_sum != Checksum(msg + kPrefix, len - kPrefix) ||
      std::memcmp(msg + kPrefix, src, len - kPrefix) != 0) {
    return "message " + std::to_string(seq) + " fails its checksum";
  }
  return "";
}

bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds guard) {
  const auto deadline = std::chrono::steady_clock::now() + guard;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

#ifdef _WIN32
namespace {
std::mutex children_mu;
std::map<pid_t, HANDLE> children;  // SpawnSelf's process handles, for WaitChild
}  // namespace

pid_t SpawnSelf(const std::string& filter, const std::vector<std::string>& env) {
  char exe[MAX_PATH];
  const DWORD n = GetModuleFileNameA(nullptr, exe, sizeof exe);
  if (n == 0 || n >= sizeof exe) return -1;
  std::string cmd = std::string("\"") + exe + "\" --gtest_filter=" + filter +
                    " --gtest_also_run_disabled_tests";  // child roles are DISABLED_
  // The child inherits this environment block: add the pairs for the creation only.
  std::lock_guard<std::mutex> lock(children_mu);
  std::vector<std::pair<std::string, std::string>> saved;
  for (const std::string& kv : env) {
    const size_t eq = kv.find('=');
    const std::string key = kv.substr(0, eq);
    saved.emplace_back(key, Env(key.c_str()));
    SetEnvironmentVariableA(key.c_str(), kv.substr(eq + 1).c_str());
  }
  STARTUPINFOA si;
  std::memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  PROCESS_INFORMATION pi;
  const BOOL ok =
      CreateProcessA(exe, &cmd[0], nullptr, nullptr, FALSE, 0, nullptr, nullptr, &si, &pi);
  for (const auto& kv : saved) {
    SetEnvironmentVariableA(kv.first.c_str(), kv.second.empty() ? nullptr : kv.second.c_str());
  }
  if (!ok) return -1;
  CloseHandle(pi.hThread);
  const pid_t pid = static_cast<pid_t>(pi.dwProcessId);
  children[pid] = pi.hProcess;
  return pid;
}

int WaitChild(pid_t pid, std::chrono::milliseconds guard) {
  HANDLE h = nullptr;
  {
    std::lock_guard<std::mutex> lock(children_mu);
    auto it = children.find(pid);
    if (it == children.end()) return -1;
    h = it->second;
    children.erase(it);
  }
  int rc = -1;
  if (WaitForSingleObject(h, static_cast<DWORD>(guard.count())) == WAIT_OBJECT_0) {
    DWORD code = 0;
    if (GetExitCodeProcess(h, &code)) rc = static_cast<int>(code);
  } else {
    TerminateProcess(h, 137);
    WaitForSingleObject(h, INFINITE);
  }
  CloseHandle(h);
  return rc;
}
#else
pid_t ForkChild(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    int rc = 99;
    rc = body();
    _exit(rc);
  }
  return pid;
}

namespace {
int g_holding_fd = -1;  // in a ForkHolding child: the write end of its ready pipe
}  // namespace

pid_t ForkHolding(const std::function<int()>& body) {
  int ready[2];
  if (pipe(ready) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    close(ready[0]);
    g_holding_fd = ready[1];
    _exit(body());
  }
  close(ready[1]);
  char b = 0;
  const bool held = pid > 0 && read(ready[0], &b, 1) == 1;
  close(ready[0]);
  if (pid > 0 && !held) waitpid(pid, nullptr, 0);
  return held ? pid : -1;
}

void HoldUntilKilled() {
  const char b = 1;
  if (write(g_holding_fd, &b, 1) != 1) _exit(3);
  for (;;) pause();
}

CuedChild::CuedChild(const std::function<void(const std::function<void(bool)>&)>& make) {
  int go[2], made[2], done[2];
  if (pipe(go) != 0 || pipe(made) != 0 || pipe(done) != 0) return;
  pid_ = fork();
  if (pid_ == 0) {
    close(go[1]);
    close(made[0]);
    close(done[1]);
    char b = 0;
    if (read(go[0], &b, 1) != 1) _exit(2);
    make([&](bool ok) {
      const char r = ok ? 1 : 0;
      if (write(made[1], &r, 1) != 1) _exit(3);
      while (read(done[0], &b, 1) > 0) {
      }  // until the parent releases the child
    });
    _exit(0);
  }
  close(go[0]);
  close(made[1]);
  close(done[0]);
  go_ = go[1];
  made_ = made[0];
  done_ = done[1];
}

CuedChild::~CuedChild() {
  if (pid_ > 0 && done_ >= 0) Release();
  if (made_ >= 0) close(made_);
}

bool CuedChild::Cue() {
  char b = 1;
  if (pid_ <= 0 || write(go_, &b, 1) != 1) return false;
  b = 0;
  return read(made_, &b, 1) == 1 && b == 1;
}

int CuedChild::Release() {
  if (pid_ <= 0 || done_ < 0) return -1;
  close(done_);  // a child that made its thing returns from `made`
  close(go_);    // one never cued reads the end and exits 2
  done_ = go_ = -1;
  return WaitChild(pid_);
}

pid_t SpawnSelf(const std::string& filter, const std::vector<std::string>& env) {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return -1;
  exe[n] = '\0';
  const std::string filter_arg = "--gtest_filter=" + filter;
  const pid_t pid = fork();
  if (pid == 0) {
    for (const std::string& kv : env) putenv(const_cast<char*>(kv.c_str()));
    char also_disabled[] = "--gtest_also_run_disabled_tests";  // child roles are DISABLED_
    char* argv[] = {exe, const_cast<char*>(filter_arg.c_str()), also_disabled, nullptr};
    execv(exe, argv);
    _exit(127);
  }
  return pid;
}

int WaitChild(pid_t pid, std::chrono::milliseconds guard) {
  if (pid <= 0) return -1;
  const auto deadline = std::chrono::steady_clock::now() + guard;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

#endif

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace shmtest
