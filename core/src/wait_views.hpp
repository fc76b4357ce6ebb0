// Windows: which mapped views hold a named ring, so a wait on a word inside one can
// use a named event that every process mapping that ring opens (internal header).
//
// WaitOnAddress/WakeByAddressAll reach only the calling process, so a sleeper in
// one process could never be woken by a store in another. SharedMemory registers
// each view of a named segment; wait::WaitOnWord/WakeWord on a word inside a
// registered view use the auto-reset event "Local\<ring name>:wake:<offset of the
// word>" instead (':' is not a ring-name character, so no ring is ever called
// that). Words outside every registered view are private memory, shared only by
// threads of this process: WaitOnAddress is exactly right for them.
// Elsewhere these do nothing.
#pragma once

#include <cstddef>
#include <string>

namespace shm {
namespace wait {

// SharedMemory, after mapping `size` bytes of segment `name` at `base`. Any thread;
// never blocks (a mutex held for a map insert).
void RegisterView(const void* base, size_t size, const std::string& name);
// SharedMemory, before unmapping the view at `base`: closes its event handles. No
// call may still sleep on a word of the view. Any thread; never blocks.
void UnregisterView(const void* base);

}  // namespace wait
}  // namespace shm
