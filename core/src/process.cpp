#include "shm/process.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>
#endif

namespace shm {

uint32_t CurrentPid() {
#ifdef _WIN32
  return static_cast<uint32_t>(GetCurrentProcessId());
#else
  return static_cast<uint32_t>(getpid());
#endif
}

bool ProcessAlive(uint32_t pid) {
  if (pid == 0) return true;  // unknown: never declare it dead
#ifdef _WIN32
  HANDLE h = OpenProcess(SYNCHRONIZE, FALSE, pid);
  if (h == nullptr) return GetLastError() == ERROR_ACCESS_DENIED;
  const bool alive = WaitForSingleObject(h, 0) == WAIT_TIMEOUT;
  CloseHandle(h);
  return alive;
#else
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
#ifdef __linux__
  // An exited but unreaped child still answers kill(); its state in /proc is 'Z'.
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
  if (FILE* f = std::fopen(path, "r")) {
    char buf[512];
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    const char* paren = std::strrchr(buf, ')');  // the command name may hold spaces
    if (paren != nullptr && paren[1] == ' ' && paren[2] == 'Z') return false;
  }
#endif
  return true;
#endif
}

}  // namespace shm
