// C++ driver of the shared behaviour suite: plays one actor of one scenario.
//
// Usage: behaviour_actor --table SCENARIOS.json --scenario NAME --actor ACTOR --ring RING
//
// Reads the actor's steps from the scenario table, performs them with the core's public
// API only (core/include/shm), and reports what it observed as JSON lines on stdout, the
// same control channel as tests/behaviour/actor.py:
//   {"signal": NAME}                                   a step "signal"
//   {"step": I, "rep": K, "op": OP, "status": S, ...}  the outcome of step I, repetition K
//   {"progress": TEXT}                                 a note while a step is still running
//   {"done": true}                                     every step ran, objects destroyed
//   {"fatal": TEXT}                                    a table this driver cannot use
// stdin carries {"signal": NAME} lines from the harness. Every call into the core sits in
// one small adapter method (CppAdapter), so a renamed API is a one-line change.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mini_json.hpp"
#include "shm/layout.hpp"
#include "shm/shm_channel.hpp"
#include "shm/status.hpp"

namespace {

using mini_json::Quote;
using mini_json::Value;

// ---- payloads (the same generator as actor.py and the harness) ----------------------

std::vector<uint8_t> Payload(uint32_t len, uint32_t seed) {
  std::vector<uint8_t> out(len);
  for (uint32_t i = 0; i < len; ++i)
    out[i] = static_cast<uint8_t>((i * 31u + seed * 17u + 5u) % 251u);
  return out;
}

std::string Fnv1a64(const uint8_t* data, size_t len) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (size_t i = 0; i < len; ++i) h = (h ^ data[i]) * 0x100000001B3ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// ---- outcomes ----------------------------------------------------------------------

// A status plus extra report fields (each value already JSON-encoded).
struct Outcome {
  std::string status;
  std::vector<std::pair<std::string, std::string>> extra;
  Outcome& Add(const std::string& key, const std::string& json) {
    extra.emplace_back(key, json);
    return *this;
  }
};

// The neutral name of each core status (the table's vocabulary).
std::string Neutral(shm::Status s) {
  switch (s) {
    case shm::Status::kOk:
      return "ok";
    case shm::Status::kEmpty:
      return "empty";
    case shm::Status::kFull:
      return "full";
    case shm::Status::kClosed:
      return "closed";
    case shm::Status::kTooLarge:
      return "too_large";
    case shm::Status::kBufferTooSmall:
      return "buffer_too_small";
    case shm::Status::kCorrupt:
      return "corrupt";
    case shm::Status::kTimeout:
      return "timeout";
    case shm::Status::kInterrupted:
      return "interrupted";
    case shm::Status::kPeerDead:
      return "peer_dead";
    case shm::Status::kReplaced:
      return "replaced";
    case shm::Status::kInvalid:
      return "invalid";
  }
  return "unknown";
}

Outcome Unsupported(const std::string& why) {
  return Outcome{"unsupported", {}}.Add("message", Quote(why));
}

// null = no limit; a number of seconds otherwise.
int64_t TimeoutNs(const Value& v) {
  if (v.is_null()) return shm::kForever;
  return static_cast<int64_t>(v.num() * 1e9);
}

// ---- the adapter: one method per operation -------------------------------------------

class CppAdapter {
 public:
  explicit CppAdapter(std::string ring) : ring_(std::move(ring)) {}

  Outcome ProducerOpen(uint32_t capacity, uint32_t start_index, bool live, uint32_t max_receivers) {
    shm::ProducerOptions o;
    o.capacity = capacity;
    o.start_index = start_index;
    o.live = live;
    o.max_receivers = max_receivers;
    auto p = std::make_unique<shm::ShmProducer>(ring_, o);
    if (!p->IsValid()) {
      // The core reports a refused name only in error(): "in use by live producer pid N".
      const std::string why = p->error();
      std::string status = "error";
      if (why.find("live producer") != std::string::npos) status = "refused_live_producer";
      if (why.find("not a shmring ring") != std::string::npos) status = "incompatible";
      return Outcome{status, {}}.Add("message", Quote(why));
    }
    producer_ = std::move(p);
    return {"ok", {}};
  }

  // mode: "lossless" (default) or "live"; start_at: "oldest" (default), "newest",
  // "newest_if_live" (ConsumerOptions::start_at).
  Outcome ConsumerOpen(int64_t timeout_ns, const std::string& mode, const std::string& start_at) {
    shm::ConsumerOptions o;
    o.open_timeout_ns = timeout_ns;
    if (mode == "live") {
      o.mode = shm::layout::kModeLive;
    } else if (mode != "lossless") {
      return Unsupported("unknown receiver mode " + mode);
    }
    if (start_at == "newest") {
      o.start_at = shm::StartAt::kNewest;
    } else if (start_at == "newest_if_live") {
      o.start_at = shm::StartAt::kNewestIfLive;
    } else if (start_at != "oldest") {
      return Unsupported("start_at " + start_at);
    }
    return FinishOpen(std::make_unique<shm::ShmConsumer>(ring_, o));
  }

  Outcome ReceiverSlot() {
    if (!consumer_) return Unsupported("the step needs a consumer this actor has not opened");
    return Outcome{"ok", {}}.Add("value", std::to_string(consumer_->slot()));
  }

  Outcome Skipped() {
    if (!consumer_) return Unsupported("the step needs a consumer this actor has not opened");
    return Outcome{"ok", {}}.Add("value", std::to_string(consumer_->skipped()));
  }

  Outcome FinishOpen(std::unique_ptr<shm::ShmConsumer> c) {
    if (!c->IsValid()) {
      const std::string why = c->error();
      std::string status = Neutral(c->open_status());
      // kInvalid covers a refused role and a refused segment; only error() tells them
      // apart: "already has a consumer (pid N)" / "is not usable: <field> ...".
      if (c->open_status() == shm::Status::kInvalid) {
        if (why.find("already has a consumer") != std::string::npos) status = "refused_busy";
        if (why.find(" receivers (pids ") != std::string::npos) status = "refused_busy";
        if (why.find("is not usable") != std::string::npos) status = "incompatible";
      }
      return Outcome{status, {}}.Add("message", Quote(why));
    }
    consumer_ = std::move(c);
    return {"ok", {}};
  }

  // Opens with no timeout through an external interrupter (the ring is never created);
  // InterruptOpen() from another thread ends the wait.
  Outcome ConsumerOpenInterruptible() {
    shm::ConsumerOptions o;
    o.open_timeout_ns = shm::kForever;
    o.interrupter = &open_interrupter_;
    return FinishOpen(std::make_unique<shm::ShmConsumer>(ring_, o));
  }

  Outcome InterruptOpen() {
    open_interrupter_.Interrupt();
    return {"ok", {}};
  }

  Outcome Write(const std::vector<uint8_t>& data, int64_t timeout_ns, bool sync = true) {
    if (!producer_) return Unsupported("the step needs a producer this actor has not opened");
    const shm::Status s =
        producer_->WriteFor(data.data(), static_cast<uint32_t>(data.size()), timeout_ns, sync);
    return {Neutral(s), {}};
  }

  Outcome Read(int64_t timeout_ns) {
    if (!consumer_) return Unsupported("the step needs a consumer this actor has not opened");
    std::vector<uint8_t> buf(consumer_->capacity());
    const shm::ReadResult r =
        consumer_->ReadFor(buf.data(), static_cast<uint32_t>(buf.size()), timeout_ns);
    Outcome out{Neutral(r.status), {}};
    if (r.status == shm::Status::kOk) {
      out.Add("len", std::to_string(r.len)).Add("fnv", Quote(Fnv1a64(buf.data(), r.len)));
    }
    return out;
  }

  Outcome EndStream() {  // C++ Close() <-> Python end_stream()
    if (!producer_) return Unsupported("the step needs a producer this actor has not opened");
    producer_->Close();
    return {"ok", {}};
  }

  Outcome ProducerClose() {  // destructor <-> Python close()
    if (!producer_) return Unsupported("the step needs a producer this actor has not opened");
    producer_.reset();
    return {"ok", {}};
  }

  Outcome ConsumerClose() {
    if (!consumer_) return Unsupported("the step needs a consumer this actor has not opened");
    consumer_.reset();
    return {"ok", {}};
  }

  Outcome Interrupt(const std::string& side) {
    if (side == "consumer" && consumer_) {
      consumer_->Interrupt();
    } else if (side == "producer" && producer_) {
      producer_->Interrupt();
    } else {
      return Unsupported("no " + side + " to interrupt");
    }
    return {"ok", {}};
  }

  Outcome ClearInterrupt(const std::string& side) {
    if (side == "consumer" && consumer_) {
      consumer_->ClearInterrupt();
    } else if (side == "producer" && producer_) {
      producer_->ClearInterrupt();
    } else {
      return Unsupported("no " + side + " to clear");
    }
    return {"ok", {}};
  }

  // Whether the side's WAITING bit is set in the header (asleep or about to be).
  bool IsWaiting(const std::string& side) {
    if (side == "consumer") {
      return consumer_ && (consumer_->ring()->ConsumerFlags() & shm::layout::kConsumerWaiting);
    }
    return producer_ && (producer_->ring()->ProducerFlags() & shm::layout::kProducerWaiting);
  }

  Outcome CountDropped(uint64_t n) {
    if (!producer_) return Unsupported("the step needs a producer this actor has not opened");
    producer_->CountDropped(n);
    return {"ok", {}};
  }

  Outcome Dropped(const std::string& side) {
    if (side == "producer" && producer_) {
      return Outcome{"ok", {}}.Add("value", std::to_string(producer_->Dropped()));
    }
    if (side == "consumer" && consumer_) {  // ShmConsumer has no Dropped(): its ring's
      return Outcome{"ok", {}}.Add("value", std::to_string(consumer_->ring()->Dropped()));
    }
    return Unsupported("no " + side + " to ask");
  }

  Outcome ConsumerAttached() {
    if (!producer_) return Unsupported("the step needs a producer this actor has not opened");
    return Outcome{"ok", {}}.Add("value", producer_->ConsumerAttached() ? "true" : "false");
  }

  Outcome SetLive(bool live) {
    if (!producer_) return Unsupported("the step needs a producer this actor has not opened");
    producer_->SetLive(live);
    return Outcome{"ok", {}};
  }

  // The LIVE bit as this actor's endpoint sees it (its consumer if it has one).
  Outcome ProducerLive() {
    bool live = false;
    if (consumer_) {
      live = consumer_->ring()->ProducerLive();
    } else if (producer_) {
      live = producer_->live();
    } else {
      return Unsupported("the step needs a producer or consumer this actor has not opened");
    }
    return Outcome{"ok", {}}.Add("value", live ? "true" : "false");
  }

  Outcome HeadIndex() {
    if (!producer_) return Unsupported("the step needs a producer this actor has not opened");
    return Outcome{"ok", {}}.Add("value", std::to_string(producer_->ring()->LoadHead()));
  }

  void CloseAll() {
    consumer_.reset();
    producer_.reset();
  }

 private:
  std::string ring_;
  std::unique_ptr<shm::ShmProducer> producer_;
  shm::Interrupter open_interrupter_;  // outlives consumer_ (declared before it)
  std::unique_ptr<shm::ShmConsumer> consumer_;
};

// ---- the step interpreter (mirrors actor.py) -----------------------------------------

class Actor {
 public:
  explicit Actor(CppAdapter* adapter) : a_(adapter) {}

  void Emit(const std::string& json_object) {
    std::lock_guard<std::mutex> lock(out_mutex_);
    std::cout << json_object << "\n" << std::flush;
  }

  void Run(const Value& steps) {
    for (size_t i = 0; i < steps.items.size(); ++i) {
      const Value& step = steps.items[i];
      const std::string& op = step.at("op").str();
      if (op == "signal") {
        Emit("{\"signal\": " + Quote(step.at("name").str()) + "}");
        continue;
      }
      if (op == "await") {
        Await(step.at("name").str());
        continue;
      }
      const int repeat = step.has("repeat") ? static_cast<int>(step.at("repeat").num()) : 1;
      for (int rep = 0; rep < repeat; ++rep) {
        const Outcome o = Perform(step, rep);
        std::string line = "{\"step\": " + std::to_string(i) + ", \"rep\": " + std::to_string(rep) +
                           ", \"op\": " + Quote(op) + ", \"status\": " + Quote(o.status);
        for (const auto& kv : o.extra) line += ", " + Quote(kv.first) + ": " + kv.second;
        Emit(line + "}");
      }
    }
    a_->CloseAll();
    Emit("{\"done\": true}");
  }

 private:
  void Await(const std::string& name) {
    std::string line;
    while (signals_.count(name) == 0) {
      if (!std::getline(std::cin, line)) {
        throw std::runtime_error("control channel closed while awaiting signal '" + name + "'");
      }
      const Value msg = mini_json::Parse(line);
      if (msg.has("signal")) signals_.insert(msg.at("signal").str());
    }
  }

  // Runs `call` (a blocking call with no timeout) in a thread, waits until that side's
  // WAITING bit is set, interrupts from this thread and joins.
  Outcome BlockedThenInterrupted(const std::string& side, const std::function<Outcome()>& call) {
    Outcome result;
    std::atomic<bool> finished{false};
    std::thread t([&] {
      result = call();
      finished.store(true, std::memory_order_release);
    });
    // A synchronisation aid, not a timed assertion: the harness watchdog bounds a hang.
    while (!finished.load(std::memory_order_acquire) && !a_->IsWaiting(side)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (finished.load(std::memory_order_acquire)) {
      t.join();
      return Outcome{"returned_before_sleeping", {}}.Add(
          "message", Quote("the blocking call returned " + result.status + " before it slept"));
    }
    a_->Interrupt(side);
    Emit("{\"progress\": " + Quote(side + " Interrupt() returned") + "}");
    t.join();
    return result.Add("interrupt_returned", "true");
  }

  // Opens with no timeout in a thread (nobody creates the ring) and interrupts the
  // open from this thread.
  Outcome OpenThenInterrupted() {
    Outcome result;
    std::thread t([&] { result = a_->ConsumerOpenInterruptible(); });
    a_->InterruptOpen();
    Emit("{\"progress\": \"open interrupt returned\"}");
    t.join();
    return result.Add("interrupt_returned", "true");
  }

  Outcome Perform(const Value& step, int rep) {
    const std::string& op = step.at("op").str();
    const uint32_t seed = static_cast<uint32_t>(step.has("seed") ? step.at("seed").num() : 0) +
                          static_cast<uint32_t>(rep);
    const Value null_value;
    const Value& timeout = step.has("timeout") ? step.at("timeout") : null_value;
    auto timeout_or_zero = [&] { return step.has("timeout") ? TimeoutNs(timeout) : 0; };
    if (op == "producer_open") {
      const uint32_t start =
          step.has("start_index") ? static_cast<uint32_t>(step.at("start_index").num()) : 0;
      const bool live = step.has("live") && step.at("live").boolean;
      const uint32_t receivers =
          step.has("max_receivers") ? static_cast<uint32_t>(step.at("max_receivers").num()) : 1;
      return a_->ProducerOpen(static_cast<uint32_t>(step.at("capacity").num()), start, live,
                              receivers);
    }
    if (op == "consumer_open") {
      return a_->ConsumerOpen(
          timeout_or_zero(), step.has("mode") ? step.at("mode").str() : std::string("lossless"),
          step.has("start_at") ? step.at("start_at").str() : std::string("oldest"));
    }
    if (op == "receiver_slot") return a_->ReceiverSlot();
    if (op == "skipped") return a_->Skipped();
    if (op == "write") {
      // sync_every N: the message is a sync point when seed % N == 0 (default: all).
      const uint32_t every =
          step.has("sync_every") ? static_cast<uint32_t>(step.at("sync_every").num()) : 1;
      return a_->Write(Payload(static_cast<uint32_t>(step.at("len").num()), seed),
                       timeout_or_zero(), seed % every == 0);
    }
    if (op == "read") return a_->Read(timeout_or_zero());
    if (op == "end_stream") return a_->EndStream();
    if (op == "producer_close") return a_->ProducerClose();
    if (op == "consumer_close") return a_->ConsumerClose();
    if (op == "interrupt") return a_->Interrupt(step.at("side").str());
    if (op == "clear_interrupt") return a_->ClearInterrupt(step.at("side").str());
    if (op == "head_index") return a_->HeadIndex();
    if (op == "set_live") return a_->SetLive(step.at("live").boolean);
    if (op == "producer_live") return a_->ProducerLive();
    if (op == "count_dropped") return a_->CountDropped(static_cast<uint64_t>(step.at("n").num()));
    if (op == "dropped") return a_->Dropped(step.at("side").str());
    if (op == "consumer_attached") return a_->ConsumerAttached();
    if (op == "interrupt_blocked_open") return OpenThenInterrupted();
    if (op == "interrupt_blocked_read") {
      return BlockedThenInterrupted("consumer", [this] { return a_->Read(shm::kForever); });
    }
    if (op == "interrupt_blocked_write") {
      const std::vector<uint8_t> data = Payload(static_cast<uint32_t>(step.at("len").num()), seed);
      return BlockedThenInterrupted("producer",
                                    [this, &data] { return a_->Write(data, shm::kForever); });
    }
    return Unsupported("unknown operation '" + op + "'");
  }

  CppAdapter* a_;
  std::set<std::string> signals_;
  std::mutex out_mutex_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string table_path, scenario, actor_name, ring;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    if (key == "--table")
      table_path = argv[i + 1];
    else if (key == "--scenario")
      scenario = argv[i + 1];
    else if (key == "--actor")
      actor_name = argv[i + 1];
    else if (key == "--ring")
      ring = argv[i + 1];
  }
  if (table_path.empty() || scenario.empty() || actor_name.empty() || ring.empty()) {
    std::cerr << "usage: behaviour_actor --table T --scenario S --actor A --ring R\n";
    return 2;
  }
  CppAdapter adapter(ring);
  Actor actor(&adapter);
  try {
    std::ifstream in(table_path);
    if (!in) throw std::runtime_error("cannot read " + table_path);
    std::stringstream text;
    text << in.rdbuf();
    const Value table = mini_json::Parse(text.str());
    for (const Value& sc : table.at("scenarios").items) {
      if (sc.at("name").str() != scenario) continue;
      const Value& actors = sc.at("actors");
      if (!actors.has(actor_name)) break;
      actor.Run(actors.at(actor_name).at("steps"));
      return 0;
    }
    actor.Emit("{\"fatal\": " +
               Quote("no actor '" + actor_name + "' in scenario '" + scenario + "'") + "}");
    return 2;
  } catch (const std::exception& e) {
    actor.Emit("{\"fatal\": " + Quote(e.what()) + "}");
    return 2;
  }
}
