// Helpers for the element tests: golden vectors, unique ring names, a bus on a
// harnessed element, and producing profile-1 messages with the C++ API.
#pragma once

#include <gst/gst.h>

#include <cstdint>
#include <string>
#include <vector>

#include "shm/framing.hpp"
#include "shm/shm_channel.hpp"
#include "vectors.hpp"

namespace gsttest {

// Golden vectors and unique ring names: the core tests' helpers (tests/core/vectors.hpp).
using shmtest::LoadVector;
using shmtest::UniqueName;

// Removes ring `name` if it exists (tests clean up what they create).
void UnlinkRing(const std::string& name);

// One profile-1 message: header + body.
std::vector<uint8_t> Message(const shm::framing::Header& h, const void* body, size_t len);
std::vector<uint8_t> CapsMessage(const std::string& caps);
std::vector<uint8_t> BufferMessage(const std::vector<uint8_t>& body, uint64_t pts,
                                   uint64_t duration = shm::framing::kTimeNone, uint32_t flags = 0,
                                   uint64_t dts = shm::framing::kTimeNone,
                                   uint64_t offset = shm::framing::kOffsetNone,
                                   uint64_t offset_end = shm::framing::kOffsetNone);
std::vector<uint8_t> EosMessage();

// Writes a message, waiting for space; fails the test otherwise.
void Put(shm::ShmProducer& p, const std::vector<uint8_t>& msg);

// Waits (polling) until ring `name` has a consumer attached. Not a timed
// assertion: a hang here is caught by the test runner's timeout.
void WaitForConsumer(shm::ShmProducer& p);

// The next ERROR message on `bus`, waiting forever; nullptr never returned.
GstMessage* WaitForError(GstBus* bus);

// Error text and debug string of an ERROR message, joined.
std::string ErrorText(GstMessage* msg);

// A body of `n` bytes whose content depends on `salt`.
std::vector<uint8_t> Pattern(size_t n, uint8_t salt);

}  // namespace gsttest
