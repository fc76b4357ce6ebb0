// shmring_peer: the C++ side of the cross-language tests (tests/python/).
//
//   shmring_peer produce NAME --count N --seed S --max-size M [--min-size m]
//                [--capacity C] [--start-index I] [--wait-consumer-ms T]
//   shmring_peer consume NAME --count N [--timeout-ms T] [--no-eos]
//   shmring_peer consume-loop NAME --loops N [--timeout-ms T]
//   shmring_peer await-end NAME [--timeout-ms T]
//   shmring_peer produce-frames NAME --count N --width W --height H --format F
//                [--capacity C] [--caps-change-at K] [--wait-consumer-ms T]
//
// Message format (produce / consume), for message number `seq` (0, 1, 2, ...) of
// `n` bytes, n chosen uniformly in [min-size, max-size] by std::mt19937_64(seed):
//   bytes 0..7   seq, u64 little-endian
//   bytes 8..11  n, u32 little-endian
//   bytes 12..15 CRC-32 (zlib's: reflected 0xEDB88320, init and final xor ~0) of bytes 16..n
//   bytes 16..n  filler: pool[(seq * 7919) % 4096 ...], pool = a fixed xorshift64* byte
//                stream (only the CRC is checked, so any filler verifies)
// A message shorter than 16 bytes is the first n bytes of that 16-byte prefix (with
// the CRC of the empty body, 0). The consumer knows seq from the order and checks
// every byte it can: prefix fields, then the CRC. It exits 0 after N messages (and,
// unless --no-eos, the end of stream), non-zero on any mismatch or error.
//
// consume-frames: a receiver of a profile-1 ring (a fan-out test's C++ receiver):
// prints "frame PTS CRC" (PTS in ns, CRC-32 of the buffer's bytes in hex) per
// BUFFER until EOS, then "consumed-frames N"; exits non-zero on an error or when the
// stream ends without EOS. --mode live|lossless|auto (default lossless).
//
// consume-loop (scripts/crashloop.sh): N times, attaches to a new generation of NAME
// (waiting up to T ms for it), verifies its messages from seq 0 on as consume does
// and reads until the producer is reported dead (kPeerDead); prints one line per
// loop, "loop I: generation G: M messages verified, producer dead", and exits 0
// after N loops, non-zero at the first message that does not verify, a timeout or
// any other status (end of stream, replaced, corrupt).
//
// await-end: attaches to NAME (waiting up to T ms for it), prints "attached", then
// sleeps in one PeekFor of T ms (no message expected) and prints what ended it and
// what ended its sleeps: "status S owner_wakes W owner_deaths D longest_timeout_ns L"
// (S a StatusName, W, D and L wait::GetCounters()); exits 0 unless it could not attach.
//
// Frames (produce-frames): a profile-1 ring as shmringsink writes it: CAPS
// "video/x-raw, format=(string)F, width=(int)W, height=(int)H, framerate=(fraction)30/1",
// then N BUFFERs (frame i: pts = i * 33333333, dts none, duration 33333333,
// offset i, offset_end i + 1, flags 0x40 on frame 0 else 0; byte j of the frame
// = (i * 7 + j) & 0xff), then EOS. With --caps-change-at K, frames from K on use
// width W/2 (new CAPS before frame K).
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#ifndef _WIN32
#include <unistd.h>  // pause (mode hold)
#endif

#include "shm/framing.hpp"
#include "shm/layout.hpp"
#include "shm/shm_channel.hpp"
#include "shm/wait.hpp"

namespace {

uint32_t g_crc[8][256];

void InitCrc() {
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    g_crc[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i) {
    for (int s = 1; s < 8; ++s)
      g_crc[s][i] = (g_crc[s - 1][i] >> 8) ^ g_crc[0][g_crc[s - 1][i] & 0xff];
  }
}

// CRC-32 as zlib computes it (slicing by 8; little-endian host).
uint32_t Crc32(const uint8_t* p, size_t n) {
  uint32_t c = ~0u;
  while (n >= 8) {
    uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + 4, 4);
    a ^= c;
    c = g_crc[7][a & 0xff] ^ g_crc[6][(a >> 8) & 0xff] ^ g_crc[5][(a >> 16) & 0xff] ^
        g_crc[4][a >> 24] ^ g_crc[3][b & 0xff] ^ g_crc[2][(b >> 8) & 0xff] ^
        g_crc[1][(b >> 16) & 0xff] ^ g_crc[0][b >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = g_crc[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return ~c;
}

std::vector<uint8_t> Pool(size_t size) {
  std::vector<uint8_t> pool(size);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < size; ++i) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    pool[i] = static_cast<uint8_t>((x * 0x2545F4914F6CDD1Dull) >> 56);
  }
  return pool;
}

void Prefix(uint64_t seq, uint32_t n, uint32_t crc, uint8_t out[16]) {
  std::memcpy(out, &seq, 8);
  std::memcpy(out + 8, &n, 4);
  std::memcpy(out + 12, &crc, 4);
}

struct Args {
  std::string mode, name, format = "GRAY8";
  uint64_t count = 0, seed = 1, loops = 1;
  uint32_t max_size = 1024, min_size = 0, capacity = 1u << 20, start_index = 0;
  uint32_t width = 64, height = 48;
  int64_t timeout_ms = 10000, wait_consumer_ms = 0, caps_change_at = -1;
  bool eos = true;
  std::string receiver_mode = "lossless";
};

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "shmring_peer: %s\nusage: shmring_peer produce NAME --count N --seed S --max-size M "
               "[--min-size m] [--capacity C] [--start-index I] [--wait-consumer-ms T]\n"
               "       shmring_peer consume NAME --count N [--timeout-ms T] [--no-eos]\n"
               "       shmring_peer consume-loop NAME --loops N [--timeout-ms T]\n"
               "       shmring_peer await-end NAME [--timeout-ms T]\n"
               "       shmring_peer hold NAME [--capacity C] [--count R]  (R receiver slots; "
               "prints 'holding', then waits to be killed)\n"
               "       shmring_peer produce-frames NAME --count N --width W --height H --format F "
               "[--capacity C] [--caps-change-at K] [--wait-consumer-ms T]\n",
               why);
  std::exit(2);
}

Args Parse(int argc, char** argv) {
  if (argc < 3) Usage("missing mode or name");
  Args a;
  a.mode = argv[1];
  a.name = argv[2];
  for (int i = 3; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--no-eos") {
      a.eos = false;
      continue;
    }
    if (i + 1 >= argc) Usage(("missing value for " + k).c_str());
    const char* v = argv[++i];
    const uint64_t u = std::strtoull(v, nullptr, 0);
    if (k == "--count")
      a.count = u;
    else if (k == "--seed")
      a.seed = u;
    else if (k == "--loops")
      a.loops = u;
    else if (k == "--max-size")
      a.max_size = static_cast<uint32_t>(u);
    else if (k == "--min-size")
      a.min_size = static_cast<uint32_t>(u);
    else if (k == "--capacity")
      a.capacity = static_cast<uint32_t>(u);
    else if (k == "--start-index")
      a.start_index = static_cast<uint32_t>(u);
    else if (k == "--timeout-ms")
      a.timeout_ms = static_cast<int64_t>(u);
    else if (k == "--wait-consumer-ms")
      a.wait_consumer_ms = static_cast<int64_t>(u);
    else if (k == "--caps-change-at")
      a.caps_change_at = static_cast<int64_t>(u);
    else if (k == "--width")
      a.width = static_cast<uint32_t>(u);
    else if (k == "--height")
      a.height = static_cast<uint32_t>(u);
    else if (k == "--mode")
      a.receiver_mode = v;
    else if (k == "--format")
      a.format = v;
    else
      Usage(("unknown option " + k).c_str());
  }
  return a;
}

bool WaitConsumer(shm::ShmProducer& p, int64_t ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!p.ConsumerAttached()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

std::unique_ptr<shm::ShmProducer> MakeProducer(const Args& a, uint32_t profile) {
  shm::ProducerOptions o;
  o.capacity = a.capacity;
  o.profile = profile;
  o.start_index = a.start_index;
  auto p = std::make_unique<shm::ShmProducer>(a.name, o);
  if (!p->IsValid()) {
    std::fprintf(stderr, "shmring_peer: cannot create ring %s: %s\n", a.name.c_str(),
                 p->error().c_str());
    std::exit(1);
  }
  if (a.wait_consumer_ms > 0 && !WaitConsumer(*p, a.wait_consumer_ms)) {
    std::fprintf(stderr, "shmring_peer: no consumer attached within %" PRId64 " ms\n",
                 a.wait_consumer_ms);
    std::exit(1);
  }
  return p;
}

#ifndef _WIN32
// Creates the ring (max_receivers = --count, default 1) and holds it, idle, until
// killed: the producer whose death a consumer must notice.
int Hold(const Args& a) {
  shm::ProducerOptions o;
  o.capacity = a.capacity;
  o.max_receivers = a.count >= 1 && a.count <= shm::layout::kMaxReceiversLimit
                        ? static_cast<uint32_t>(a.count)
                        : 1;
  shm::ShmProducer p(a.name, o);
  if (!p.IsValid()) {
    std::fprintf(stderr, "shmring_peer: cannot create ring %s: %s\n", a.name.c_str(),
                 p.error().c_str());
    return 1;
  }
  std::printf("holding\n");
  std::fflush(stdout);
  for (;;) pause();
}
#endif

int Produce(const Args& a) {
  if (a.min_size > a.max_size) Usage("--min-size above --max-size");
  auto p = MakeProducer(a, shm::layout::kProfileOpaque);
  const std::vector<uint8_t> pool = Pool(size_t{a.max_size} + 4096);
  std::mt19937_64 rng(a.seed);
  std::uniform_int_distribution<uint32_t> size(a.min_size, a.max_size);
  uint64_t bytes = 0;
  for (uint64_t seq = 0; seq < a.count; ++seq) {
    const uint32_t n = size(rng);
    uint8_t* out = nullptr;
    const shm::Status s = p->Reserve(n, &out, shm::kForever);
    if (s != shm::Status::kOk) {
      std::fprintf(stderr, "shmring_peer: reserve of message %" PRIu64 " (%u bytes): %s\n", seq, n,
                   shm::StatusName(s));
      return 1;
    }
    uint32_t crc = 0;
    if (n > 16) {
      const uint8_t* body = pool.data() + (seq * 7919) % 4096;
      std::memcpy(out + 16, body, n - 16);
      crc = Crc32(out + 16, n - 16);
    }
    uint8_t prefix[16];
    Prefix(seq, n, crc, prefix);
    std::memcpy(out, prefix, n < 16 ? n : 16);
    p->Commit(n);
    bytes += n;
  }
  p->Close();
  std::printf("produced %" PRIu64 " messages, %" PRIu64 " bytes\n", a.count, bytes);
  return 0;
}

// Whether consumer `c` attached; if not, says why on stderr (its error and status).
bool Attached(const shm::ShmConsumer& c) {
  if (c.IsValid()) return true;
  std::fprintf(stderr, "shmring_peer: cannot attach to %s: %s (%s)\n", c.name().c_str(),
               c.error().c_str(), shm::StatusName(c.open_status()));
  return false;
}

int Consume(const Args& a) {
  shm::ShmConsumer c(a.name, a.timeout_ms * 1000000);
  if (!Attached(c)) return 1;
  const int64_t timeout_ns = a.timeout_ms * 1000000;
  uint64_t bytes = 0;
  for (uint64_t seq = 0; seq < a.count; ++seq) {
    shm::MessageView v;
    const shm::Status s = c.PeekFor(&v, timeout_ns);
    if (s != shm::Status::kOk) {
      std::fprintf(stderr, "shmring_peer: message %" PRIu64 ": %s %s\n", seq, shm::StatusName(s),
                   c.ring() ? c.ring()->error().c_str() : "");
      return 1;
    }
    const uint32_t crc = v.len > 16 ? Crc32(v.data + 16, v.len - 16) : 0;
    uint8_t prefix[16];
    Prefix(seq, v.len, crc, prefix);
    const uint32_t k = v.len < 16 ? v.len : 16;
    if (std::memcmp(v.data, prefix, k) != 0) {
      uint64_t got_seq = 0;
      std::memcpy(&got_seq, v.data, v.len < 8 ? v.len : 8);
      std::fprintf(stderr,
                   "shmring_peer: message %" PRIu64
                   " (%u bytes) does not verify (seq field %" PRIu64 ", crc of body 0x%08x)\n",
                   seq, v.len, got_seq, crc);
      return 1;
    }
    bytes += v.len;
    c.Release();
  }
  if (a.eos) {
    std::vector<uint8_t> extra(c.capacity());
    const shm::ReadResult r = c.ReadFor(extra.data(), c.capacity(), timeout_ns);
    if (r.status != shm::Status::kClosed) {
      std::fprintf(stderr,
                   "shmring_peer: after %" PRIu64 " messages expected end of stream, got %s\n",
                   a.count, shm::StatusName(r.status));
      return 1;
    }
  }
  std::printf("consumed %" PRIu64 " messages, %" PRIu64 " bytes\n", a.count, bytes);
  return 0;
}

int AwaitEnd(const Args& a) {
  shm::ShmConsumer c(a.name, a.timeout_ms * 1000000);
  if (!Attached(c)) return 1;
  shm::wait::ResetCounters();
  std::printf("attached\n");
  std::fflush(stdout);
  shm::MessageView v;
  const shm::Status s = c.PeekFor(&v, a.timeout_ms * 1000000);
  const shm::wait::Counters n = shm::wait::GetCounters();
  std::printf("status %s owner_wakes %" PRIu64 " owner_deaths %" PRIu64
              " longest_timeout_ns %" PRId64 "\n",
              shm::StatusName(s), n.owner_wakes, n.owner_deaths, n.longest_timeout_ns);
  return 0;
}

int ConsumeFrames(const Args& a) {
  shm::ConsumerOptions o;
  o.open_timeout_ns = a.timeout_ms * 1000000;
  o.mode = a.receiver_mode == "live"   ? shm::layout::kModeLive
           : a.receiver_mode == "auto" ? shm::kModeAuto
                                       : shm::layout::kModeLossless;
  shm::ShmConsumer c(a.name, o);
  if (!Attached(c)) return 1;
  std::printf("slot %u\n", c.slot());
  std::fflush(stdout);
  uint64_t frames = 0;
  for (;;) {
    shm::MessageView v;
    const shm::Status s = c.PeekFor(&v, a.timeout_ms * 1000000);
    if (s != shm::Status::kOk) {
      std::fprintf(stderr, "shmring_peer: after %" PRIu64 " frames: %s (no EOS record)\n", frames,
                   shm::StatusName(s));
      return 1;
    }
    shm::framing::Header h;
    const uint8_t* body = nullptr;
    uint32_t body_len = 0;
    const char* why = nullptr;
    if (!shm::framing::DecodeMessage(v.data, v.len, &h, &body, &body_len, &why)) {
      std::fprintf(stderr, "shmring_peer: corrupt message: %s\n", why);
      return 1;
    }
    if (h.kind == shm::framing::Kind::kEos) break;
    if (h.kind == shm::framing::Kind::kBuffer) {
      std::printf("frame %" PRIu64 " %08x\n", h.pts, Crc32(body, body_len));
      ++frames;
    }
    c.Release();
  }
  std::printf("consumed-frames %" PRIu64 "\n", frames);
  return 0;
}

// Whether message `seq` verifies (prefix fields, then the CRC of the body); else says why.
bool Verify(const shm::MessageView& v, uint64_t seq) {
  const uint32_t crc = v.len > 16 ? Crc32(v.data + 16, v.len - 16) : 0;
  uint8_t prefix[16];
  Prefix(seq, v.len, crc, prefix);
  if (std::memcmp(v.data, prefix, v.len < 16 ? v.len : 16) == 0) return true;
  uint64_t got_seq = 0;
  std::memcpy(&got_seq, v.data, v.len < 8 ? v.len : 8);
  std::fprintf(stderr,
               "shmring_peer: message %" PRIu64 " (%u bytes) does not verify (seq field %" PRIu64
               ", crc of body 0x%08x)\n",
               seq, v.len, got_seq, crc);
  return false;
}

int ConsumeLoop(const Args& a) {
  const int64_t timeout_ns = a.timeout_ms * 1000000;
  uint64_t dead_generation = 0;
  bool have_dead = false;
  for (uint64_t loop = 0; loop < a.loops; ++loop) {
    // The dead producer's segment stays under the name until the next producer
    // replaces it: wait for a generation we have not seen die.
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(a.timeout_ms);
    std::unique_ptr<shm::ShmConsumer> c;
    for (;;) {
      c = std::make_unique<shm::ShmConsumer>(a.name, timeout_ns);
      if (!c->IsValid()) {
        std::fprintf(stderr, "shmring_peer: loop %" PRIu64 ": cannot attach to %s: %s (%s)\n", loop,
                     a.name.c_str(), c->error().c_str(), shm::StatusName(c->open_status()));
        return 1;
      }
      if (!have_dead || c->generation() != dead_generation) break;
      c.reset();
      if (std::chrono::steady_clock::now() >= end) {
        std::fprintf(stderr,
                     "shmring_peer: loop %" PRIu64 ": no new producer within %" PRId64 " ms\n",
                     loop, a.timeout_ms);
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    uint64_t seq = 0;
    for (;; ++seq) {
      shm::MessageView v;
      const shm::Status s = c->PeekFor(&v, timeout_ns);
      if (s == shm::Status::kPeerDead) break;
      if (s != shm::Status::kOk) {
        std::fprintf(stderr, "shmring_peer: loop %" PRIu64 ": message %" PRIu64 ": %s %s\n", loop,
                     seq, shm::StatusName(s), c->ring() ? c->ring()->error().c_str() : "");
        return 1;
      }
      if (!Verify(v, seq)) return 1;
      c->Release();
    }
    dead_generation = c->generation();
    have_dead = true;
    std::printf("loop %" PRIu64 ": generation %" PRIu64 ": %" PRIu64
                " messages verified, producer dead\n",
                loop, dead_generation, seq);
    std::fflush(stdout);
  }
  return 0;
}

// Bytes of one frame as GstVideoInfo lays it out (rows 4-aligned).
uint32_t FrameSize(const std::string& f, uint32_t w, uint32_t h) {
  auto ru4 = [](uint32_t v) { return (v + 3) & ~3u; };
  auto ru2 = [](uint32_t v) { return (v + 1) & ~1u; };
  if (f == "GRAY8") return ru4(w) * h;
  if (f == "GRAY16_LE") return ru4(w * 2) * h;
  if (f == "RGB" || f == "BGR") return ru4(w * 3) * h;
  if (f == "RGBx" || f == "BGRx" || f == "xRGB" || f == "RGBA" || f == "BGRA" || f == "ARGB")
    return w * 4 * h;
  if (f == "I420") return ru4(w) * ru2(h) + 2 * ru4(ru2(w) / 2) * (ru2(h) / 2);
  if (f == "NV12") return ru4(w) * ru2(h) + ru4(w) * (ru2(h) / 2);
  Usage(("unsupported --format " + f).c_str());
}

bool WriteMessage(shm::ShmProducer& p, const shm::framing::Header& h, const uint8_t* body,
                  uint32_t len) {
  uint8_t* out = nullptr;
  const uint32_t total = shm::framing::kHeaderSize + len;
  const shm::Status s = p.Reserve(total, &out, shm::kForever);
  if (s != shm::Status::kOk) {
    std::fprintf(stderr, "shmring_peer: reserve of %u bytes: %s\n", total, shm::StatusName(s));
    return false;
  }
  shm::framing::EncodeHeader(h, out);
  if (len) std::memcpy(out + shm::framing::kHeaderSize, body, len);
  p.Commit(total);
  return true;
}

int ProduceFrames(const Args& a) {
  auto p = MakeProducer(a, shm::layout::kProfileGstFraming);
  uint32_t width = 0;
  std::vector<uint8_t> frame;
  for (uint64_t i = 0; i < a.count; ++i) {
    const uint32_t w = (a.caps_change_at >= 0 && static_cast<int64_t>(i) >= a.caps_change_at)
                           ? a.width / 2
                           : a.width;
    if (w != width) {
      width = w;
      const std::string caps = "video/x-raw, format=(string)" + a.format + ", width=(int)" +
                               std::to_string(w) + ", height=(int)" + std::to_string(a.height) +
                               ", framerate=(fraction)30/1";
      shm::framing::Header h;
      h.kind = shm::framing::Kind::kCaps;
      h.send_time_ns = shm::framing::MonotonicNowNs();
      if (!WriteMessage(*p, h, reinterpret_cast<const uint8_t*>(caps.data()),
                        static_cast<uint32_t>(caps.size())))
        return 1;
      frame.resize(FrameSize(a.format, w, a.height));
    }
    for (size_t j = 0; j < frame.size(); ++j) frame[j] = static_cast<uint8_t>(i * 7 + j);
    shm::framing::Header h;
    h.kind = shm::framing::Kind::kBuffer;
    h.flags = i == 0 ? 0x40 : 0;
    h.pts = i * 33333333ull;
    h.duration = 33333333ull;
    h.offset = i;
    h.offset_end = i + 1;
    h.send_time_ns = shm::framing::MonotonicNowNs();
    if (!WriteMessage(*p, h, frame.data(), static_cast<uint32_t>(frame.size()))) return 1;
  }
  shm::framing::Header eos;
  eos.kind = shm::framing::Kind::kEos;
  if (!WriteMessage(*p, eos, nullptr, 0)) return 1;
  p->Close();
  std::printf("produced %" PRIu64 " frames\n", a.count);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  InitCrc();
  const Args a = Parse(argc, argv);
  if (a.mode == "produce") return Produce(a);
#ifndef _WIN32
  if (a.mode == "hold") return Hold(a);
#endif
  if (a.mode == "consume") return Consume(a);
  if (a.mode == "consume-loop") return ConsumeLoop(a);
  if (a.mode == "await-end") return AwaitEnd(a);
  if (a.mode == "consume-frames") return ConsumeFrames(a);
  if (a.mode == "produce-frames") return ProduceFrames(a);
  Usage(("unknown mode " + a.mode).c_str());
}
