// Process identity and liveness probes, for the pids the header carries as information.
#pragma once

#include <cstdint>

namespace shm {

// Whether process `pid` exists (kill(pid, 0), and on Linux /proc/<pid>/stat so an
// unreaped zombie counts as dead; Windows: OpenProcess). pid 0 means "unknown" and
// counts as alive. Any thread; never blocks.
bool ProcessAlive(uint32_t pid);

// This process's id (getpid / GetCurrentProcessId). Any thread; never blocks.
uint32_t CurrentPid();

}  // namespace shm
