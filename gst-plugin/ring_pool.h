// The ring-backed buffer pool shmringsink offers upstream (propose_allocation):
// every buffer acquired from it is a reservation in the sink's ring with room for
// the profile-1 message header before the body, so upstream writes the frame
// straight into shared memory and the sink's render only writes the header and
// publishes (no copy).
//
// Lifetime: each buffer's one GstMemory owns its reservation and a reference to
// the producer (so the mapping outlives the sink when upstream keeps buffers).
// Freed before it was published (dropped by QoS, flushed, the pool shut down, a
// caps change), the reservation is taken back when it is the newest one (the next
// buffer gets its place: ShmProducer::Retract), else it becomes a PAD record that
// every reader skips. Taking it back matters in a ring of few frames (the default,
// sized from the caps): a flushing seek gives up the buffer in flight and the first
// one after it, and as two PAD records they took the room a zero-copy receiver needs
// while its sink keeps the frame before them and waits for the next one, which
// could then never be written (tests/gst/test_zero_copy_pipelines.py,
// test_flushing_seek_with_the_pool_active).
// Published, its bytes stay the producer's until the memory is freed (a buffer
// kept upstream is never overwritten under it).
//
// When the ring has no room the pool waits only while a receiver is attached and
// the sink waits for space; otherwise (no receiver, wait-for-space=false, the
// ring taken up by buffers in flight) it hands out a system-memory buffer, which
// the sink copies or drops as it does for any other buffer.
#pragma once

#include <gst/gst.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "shm/shm_channel.hpp"

namespace shmring {

// How many frames an automatically sized ring holds (PROTOCOL.md records
// included), and the bounds of that size. Four: one being written, one being
// read, the one a video sink keeps (its last sample) and one of slack. Three were
// too few: shmringsrc copies a frame out once the ring memory held downstream
// would pass half the ring, and with the frame a sink keeps that is two frames,
// more than half of a ring where three fit just below a power of two (1280x720
// BGR: 8 MiB), so every frame was copied (DESIGN.md "Ring size from the caps").
constexpr uint32_t kAutoFrames = 4;
constexpr uint64_t kAutoMinCapacity = 1u << 20;    // 1 MiB
constexpr uint64_t kAutoMaxCapacity = 1ull << 30;  // 1 GiB

constexpr uint32_t kAutoFallbackCapacity = 32u << 20;  // caps without a frame size

// Bytes of ring a buffer of `size` bytes takes as one message record.
uint64_t RecordBytesFor(uint64_t size);

// The capacity of a ring sized from `caps` (the sink's capacity=0): kAutoFrames
// records of a raw video frame plus a caps record's worth, rounded up to a power of
// two within [kAutoMinCapacity, kAutoMaxCapacity]; kAutoFallbackCapacity for caps
// without a known frame size. Any thread.
uint32_t AutoCapacity(GstCaps* caps);

// A new pool for buffers of `size` bytes in `producer`'s ring (which must be
// SetConcurrent(true)). `wait_for_space` is asked on every acquire that finds the
// ring full. Caller owns the returned reference.
GstBufferPool* RingPoolNew(std::shared_ptr<shm::ShmProducer> producer, GstCaps* caps, guint size,
                           std::function<bool()> wait_for_space);

// How many buffers of `size` bytes may be in flight at once in a ring of `capacity`
// bytes, leaving room for one more record (the pool's max_buffers); 0 when not even
// one fits.
guint RingPoolMaxBuffers(uint32_t capacity, guint size);

// If `buffer` is one unpublished ring buffer of `producer` that can be published
// in place (its one memory untouched in layout, nothing published after it was
// reserved), calls encode(payload) to write the message header in the kHeaderSize
// bytes before the body, publishes the record and returns true. Else returns
// false and the caller copies the buffer: a ring buffer that cannot go in place
// because something was sent after it was reserved has its record turned into a
// PAD record then (its bytes stay valid until it is freed). Streaming thread;
// never blocks.
// `allowed` false (the message needs header extensions, for which the pool leaves
// no room): never in place; a ring buffer's record is given up as above.
bool RingPoolPublishInPlace(GstBuffer* buffer, shm::ShmProducer* producer,
                            const std::function<void(uint8_t* payload)>& encode,
                            bool allowed = true);

// Whether `buffer`'s memory lives in a ring (for tests and debug logs). Any thread.
bool RingPoolIsRingBuffer(GstBuffer* buffer);

}  // namespace shmring
