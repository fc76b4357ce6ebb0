// Written as a user of the original design would (its section 5 API only): a
// producer process and a consumer process over a named ring, running at the same
// time, first through ShmProducer/ShmConsumer, then through SharedMemory with a
// ByteRingBuffer view in each process. Every byte of every message is checked.
// Exit code 0 = pass. (fork, waitpid and alarm are the test's scaffolding; on
// Windows the child is this program run again with a role argument, by CreateProcess.)
#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "shm/byte_ring_buffer.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"

namespace {

constexpr uint32_t kMessages = 20000;
constexpr uint32_t kMaxLen = 500;

uint32_t LengthOf(uint32_t i) { return 1 + (i * 53) % kMaxLen; }
uint8_t ByteOf(uint32_t i, uint32_t k) { return static_cast<uint8_t>(i * 17 + k * 29 + 1); }

std::string UniqueName(const char* what) {
  std::random_device rd;
#ifdef _WIN32
  const unsigned long pid = GetCurrentProcessId();
#else
  const unsigned long pid = static_cast<unsigned long>(getpid());
#endif
  return std::string("compat-") + what + "-" + std::to_string(pid) + "-" +
         std::to_string(rd() % 1000000);
}

template <typename Writer>
void ProduceAll(Writer&& write) {
  std::vector<uint8_t> msg(kMaxLen);
  for (uint32_t i = 0; i < kMessages; ++i) {
    const uint32_t len = LengthOf(i);
    for (uint32_t k = 0; k < len; ++k) msg[k] = ByteOf(i, k);
    while (!write(msg.data(), len)) std::this_thread::yield();
  }
}

// Returns 0 when every message arrives intact and in order.
template <typename Reader>
int ConsumeAll(Reader&& read) {
  uint8_t buf[kMaxLen];
  uint32_t n;
  for (uint32_t i = 0; i < kMessages; ++i) {
    while ((n = read(buf, sizeof buf)) == 0) std::this_thread::yield();
    if (n != LengthOf(i)) {
      std::fprintf(stderr, "message %u: length %u, expected %u\n", i, n, LengthOf(i));
      return 1;
    }
    for (uint32_t k = 0; k < n; ++k) {
      if (buf[k] != ByteOf(i, k)) {
        std::fprintf(stderr, "message %u: byte %u differs\n", i, k);
        return 1;
      }
    }
  }
  return 0;
}

// The child processes' parts.
int ChannelConsumer(const std::string& name) {
  shm::ShmConsumer consumer(name.c_str());
  if (!consumer.IsValid()) {
    std::fprintf(stderr, "consumer: %s\n", consumer.error().c_str());
    return 1;
  }
  return ConsumeAll([&](void* out, uint32_t max) { return consumer.Read(out, max); });
}

const std::size_t kViewsSize = shm::kHeaderSize + 8192;

int ViewsConsumer(const std::string& name) {
  shm::SharedMemory mapped(name.c_str(), kViewsSize, false);
  if (!mapped.valid()) {
    std::fprintf(stderr, "open: %s\n", mapped.error_message().c_str());
    return 1;
  }
  shm::ByteRingBuffer consumer(mapped.data(), mapped.size(), false);
  return ConsumeAll([&](void* out, uint32_t max) { return consumer.Read(out, max); });
}

#ifdef _WIN32
using Child = HANDLE;
// This program again with `role name`, running at the same time as the caller.
Child Start(const char* role, const std::string& name) {
  char exe[MAX_PATH];
  const DWORD n = GetModuleFileNameA(nullptr, exe, sizeof exe);
  if (n == 0 || n >= sizeof exe) return nullptr;
  std::string cmd = std::string("\"") + exe + "\" " + role + " " + name;
  STARTUPINFOA si;
  std::memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  PROCESS_INFORMATION pi;
  if (!CreateProcessA(exe, &cmd[0], nullptr, nullptr, FALSE, 0, nullptr, nullptr, &si, &pi)) {
    return nullptr;
  }
  CloseHandle(pi.hThread);
  return pi.hProcess;
}
int Wait(Child child) {
  if (child == nullptr) return 1;
  DWORD code = 1;
  if (WaitForSingleObject(child, 120000) != WAIT_OBJECT_0) TerminateProcess(child, 124);
  WaitForSingleObject(child, INFINITE);
  GetExitCodeProcess(child, &code);
  CloseHandle(child);
  return static_cast<int>(code);
}
#else
using Child = pid_t;
Child Start(const char* role, const std::string& name) {
  const pid_t child = fork();
  if (child == 0) {
    alarm(120);
    _exit(std::string(role) == "channel-consumer" ? ChannelConsumer(name) : ViewsConsumer(name));
  }
  return child;
}
int Wait(Child child) {
  if (child < 0) return 1;
  int status = 0;
  if (waitpid(child, &status, 0) != child) return 1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
#endif

// ShmProducer in this process, ShmConsumer in a child.
int Channel() {
  const std::string name = UniqueName("chan");
  shm::ShmProducer producer(name.c_str(), 4096);
  if (!producer.IsValid()) {
    std::fprintf(stderr, "producer: %s\n", producer.error().c_str());
    return 1;
  }
  const Child child = Start("channel-consumer", name);
  ProduceAll([&](const void* data, uint32_t len) { return producer.Write(data, len); });
  return Wait(child);
}

// SharedMemory + a ByteRingBuffer producer view here, SharedMemory + a consumer
// view in a child; the producer view initializes the zeroed segment.
int Views() {
  const std::string name = UniqueName("views");
  shm::SharedMemory memory(name.c_str(), kViewsSize, true, false);
  if (!memory.valid() || memory.error() != shm::Error::kOk) {
    std::fprintf(stderr, "create: %s\n", memory.error_message().c_str());
    return 1;
  }
  shm::ByteRingBuffer producer(memory.data(), memory.size(), true);
  const Child child = Start("views-consumer", name);
  ProduceAll([&](const void* data, uint32_t len) { return producer.Write(data, len); });
  const int rc = Wait(child);
  memory.destroy();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3) {  // a child's role (Windows re-run)
    const std::string role = argv[1];
    if (role == "channel-consumer") return ChannelConsumer(argv[2]);
    if (role == "views-consumer") return ViewsConsumer(argv[2]);
    return 2;
  }
#ifndef _WIN32
  alarm(240);  // a hang fails the test instead of stalling the suite
#endif
  if (Channel() != 0) return 1;
  std::printf("%u messages from a ShmProducer process to a ShmConsumer process\n", kMessages);
  if (Views() != 0) return 1;
  std::printf("%u messages between ByteRingBuffer views in two processes\n", kMessages);
  return 0;
}
