// Liveness and role locks: OFD byte-range locks on a segment's file (Linux).
//
// The producer holds a write lock on byte 0 of its segment from before it stores
// the magic until it is done with the ring; a consumer claims the consumer role
// with a write lock on byte 1 (receiver slot k of a later fan-out: byte 1 + k; no
// other byte is used). The kernel drops an open-file-description lock when the
// description's last descriptor closes or its process dies, whatever the pid
// namespace, so "byte 0 is free and CLOSED is not set" means the producer is
// gone, without comparing pids. Pids in the header stay information for people.
//
// OFD locks conflict between open file descriptions, even within one process,
// and never with the description that holds them: probe through a descriptor
// other than the holder's (each SharedMemory opens its own).
//
// Elsewhere (no F_OFD_SETLK) every call says kUnsupported and callers fall back
// to the pids: kill(pid, 0) on macOS/BSD, OpenProcess on Windows.
#pragma once

#include <cstdint>
#include <string>

namespace shm {
namespace liveness {

// Byte of the segment the producer locks for as long as it owns the ring.
constexpr int64_t kProducerByte = 0;
// Byte the (single) consumer locks while attached.
constexpr int64_t kConsumerByte = 1;

enum class Lock {
  kHeld,         // Take: now ours. Probe: another open file description holds it.
  kFree,         // Take: someone else holds it. Probe: nobody (else) holds it.
  kUnsupported,  // no OFD locks here (or fd < 0): fall back to the pids
  kError,        // the system call failed otherwise; *error names it and errno
};

// Takes a non-blocking OFD write lock on `byte` of `fd` (open read-write): kHeld
// when taken (held until Drop or until the description closes), kFree when
// another description holds it (EAGAIN/EACCES). Any thread; never blocks.
Lock Take(int fd, int64_t byte, std::string* error = nullptr);
// Drops our lock on `byte` of `fd` (no-op when we hold none). Any thread; never blocks.
void Drop(int fd, int64_t byte);
// Whether another open file description holds `byte` of the file of `fd` (any
// open mode): F_OFD_GETLK with F_WRLCK. Any thread; never blocks (one fcntl).
Lock Probe(int fd, int64_t byte, std::string* error = nullptr);
// Probe through a fresh read-only descriptor of segment `name` (for a name this
// process has not mapped). kError when it cannot be opened. Never blocks.
Lock ProbeName(const std::string& name, int64_t byte, std::string* error = nullptr);

}  // namespace liveness
}  // namespace shm
