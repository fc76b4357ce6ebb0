// Helpers for the element tests: golden vectors, unique ring names, a bus on a
// harnessed element, producing profile-1 messages with the C++ API, shmringsink
// under GstHarness (with the buffer pool it offers upstream), reading what a sink
// wrote, and watching a debug category for a line.
#pragma once

#include <gst/check/gstharness.h>
#include <gst/gst.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
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

// The element named `name` in a harness made by gst_harness_new_parse (the
// harness's bin keeps it alive: no reference is returned).
GstElement* Element(GstHarness* h, const char* name = "sink");

// shmringsink (named "sink") on ring `name` under GstHarness; `extra` adds
// properties ("capacity=65536 linger=0"); upstream (the harness) answers the
// latency query with `live`.
GstHarness* NewSinkHarness(const std::string& name, const std::string& extra = "",
                           bool live = false);

// Every message a fresh consumer of ring `name` reads now, without waiting (the
// sink must still exist). Fails the test when the ring cannot be opened.
std::vector<std::vector<uint8_t>> ReadAllMessages(const std::string& name);

// A shmringsink under GstHarness (NewSinkHarness(name, extra)) whose upstream has
// set caps `caps` and taken the buffer pool the sink offers for them in the
// allocation query, activated. `pool` is nullptr when none was offered; size and
// max are its parameters. On destruction the pool is deactivated and dropped and
// the harness torn down (unless TeardownHarness() did that already).
class PooledSink {
 public:
  PooledSink(const std::string& name, const std::string& extra, const char* caps);
  ~PooledSink();
  PooledSink(const PooledSink&) = delete;
  PooledSink& operator=(const PooledSink&) = delete;

  // A buffer from the pool (the acquire must return GST_FLOW_OK).
  GstBuffer* Acquire();
  // Stops and frees the sink now; the pool stays until destruction.
  void TeardownHarness();

  GstHarness* h = nullptr;
  GstBufferPool* pool = nullptr;
  guint size = 0;
  guint max = 0;
};

// Records the lines GStreamer debug category `category` logs while it exists,
// with the category's threshold set to `threshold` meanwhile. The default log
// function (stderr) is removed meanwhile, to keep the output quiet; both are
// restored on destruction. One LogWatch at a time.
class LogWatch {
 public:
  LogWatch(const char* category, GstDebugLevel threshold);
  ~LogWatch();
  LogWatch(const LogWatch&) = delete;
  LogWatch& operator=(const LogWatch&) = delete;

  // How many lines logged at exactly `level` so far contain `text`. Any thread.
  int Count(GstDebugLevel level, const char* text) const;
  // Polls until Count(level, text) >= n. Not a timed assertion: a line that never
  // comes is caught by the test runner's timeout.
  void WaitFor(GstDebugLevel level, const char* text, int n = 1) const;

 private:
  static void Record(GstDebugCategory* cat, GstDebugLevel level, const gchar* file,
                     const gchar* function, gint line, GObject* object, GstDebugMessage* message,
                     gpointer self);
  std::string category_;
  mutable std::mutex mutex_;
  std::vector<std::pair<GstDebugLevel, std::string>> lines_;  // guarded by mutex_
};

}  // namespace gsttest
