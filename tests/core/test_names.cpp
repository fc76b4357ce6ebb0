// What may be at a ring name (POSIX, /dev/shm on Linux): FIFOs, symbolic links and
// directories are refused at once as "not a ring" (never waited on, never removed);
// a segment the caller may not read is never replaced and the error names its
// owner; a segment owned by another user is refused unless a foreign owner is
// allowed; a segment whose size is not a multiple of 8 is refused. Every call that
// could hang runs in a forked child with a watchdog, so a regression fails instead
// of stalling the suite. Tests that need a second user run as root (CI) and skip
// with a message otherwise.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "shm/byte_ring_buffer.hpp"
#include "shm/layout.hpp"
#include "shm/process.hpp"
#include "shm/shared_memory.hpp"
#include "shm/shm_channel.hpp"
#include "test_util.hpp"
#include "vectors.hpp"

namespace {

using namespace shm;

constexpr uint32_t kCap = 1024;
constexpr uid_t kOtherUid = 65534;  // "nobody" on Debian; any uid that is not ours works
constexpr int64_t kWaitNs = 30'000'000'000;

std::string Path(const std::string& name) { return "/dev/shm/" + name; }

// "uid N (name)" as the library words it, with the name from this system's user database.
std::string OwnerOf(uid_t uid) {
  std::string text = "uid " + std::to_string(uid);
  if (const struct passwd* pw = getpwuid(uid)) text += std::string(" (") + pw->pw_name + ")";
  return text;
}

// A valid v1 ring image (header + data area) made by the library itself.
std::vector<uint8_t> RingBytes(uint32_t pid, bool closed) {
  std::vector<uint8_t> img(layout::kHeaderSize + kCap, 0);
  EXPECT_EQ(ByteRingBuffer::Initialize(img.data(), img.size(), kCap, 0, 42, 0, pid), "");
  if (closed) {
    const uint32_t flags = layout::kProducerClosed;
    std::memcpy(img.data() + layout::kProducerFlagsOffset, &flags, 4);
  }
  return img;
}

// Runs `body` in a forked child that a watchdog kills after 30 s; "" when it
// returned 0, else what it printed is in the test log and the exit code is named.
std::string InChild(const std::function<int()>& body) {
  const pid_t pid = shmtest::ForkChild([&] {
    alarm(30);
    return body();
  });
  if (pid < 0) return "fork failed";
  const int rc = shmtest::WaitChild(pid, std::chrono::seconds(60));
  if (rc == 0) return "";
  if (rc == 128 + SIGALRM || rc == -1) return "the child hung (watchdog fired)";
  return "the child failed with exit code " + std::to_string(rc);
}

// In a child: prints the failed check and returns 1.
#define CHILD_CHECK(cond, what)                                                \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, (what).c_str()); \
      return 1;                                                                \
    }                                                                          \
  } while (0)

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class NamesTest : public ::testing::Test {
 protected:
  std::string Name() {
    names_.push_back(shmtest::UniqueName("names"));
    return names_.back();
  }
  void TearDown() override {
    for (const std::string& n : names_) {
      const std::string p = Path(n);
      struct stat st;
      if (lstat(p.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        rmdir(p.c_str());
      } else {
        unlink(p.c_str());
      }
    }
    for (const std::string& f : files_) unlink(f.c_str());
  }
  // Writes `bytes` to /dev/shm/<name> with `mode`, owned by `uid` (root only for
  // another uid). Plain open(2): that is what any user can do in /dev/shm.
  void Plant(const std::string& name, const std::vector<uint8_t>& bytes, mode_t mode,
             uid_t uid = geteuid()) {
    const int fd = open(Path(name).c_str(), O_RDWR | O_CREAT | O_EXCL, mode);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    ASSERT_EQ(fchmod(fd, mode), 0);
    if (uid != geteuid()) {
      ASSERT_EQ(fchown(fd, uid, uid), 0) << std::strerror(errno);
    }
    close(fd);
  }
  static std::vector<uint8_t> Contents(const std::string& path) {
    std::vector<uint8_t> out;
    if (FILE* f = std::fopen(path.c_str(), "rb")) {
      uint8_t buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
      std::fclose(f);
    }
    return out;
  }
  std::vector<std::string> names_;
  std::vector<std::string> files_;
};

// Every opener refuses `name` at once with `expected` in its error, and nothing
// removes it. Run in a child: a blocking open would trip the watchdog.
int RefusedEverywhere(const std::string& name, const std::string& expected) {
  ShmProducer producer(name, kCap);
  CHILD_CHECK(!producer.IsValid(), std::string("producer accepted it"));
  CHILD_CHECK(Contains(producer.error(), expected), "producer: " + producer.error());
  ShmConsumer now(name);
  CHILD_CHECK(!now.IsValid(), std::string("consumer accepted it"));
  CHILD_CHECK(Contains(now.error(), expected), "consumer: " + now.error());
  ShmConsumer waiting(name, kWaitNs);
  CHILD_CHECK(waiting.open_status() == Status::kInvalid,
              std::string("a waiting consumer got ") + StatusName(waiting.open_status()) +
                  " instead of an immediate refusal: " + waiting.error());
  SharedMemory mem(name, 0, false);
  CHILD_CHECK(!mem.valid() && mem.error() == Error::kOpenFailed && !mem.missing(),
              "SharedMemory: " + mem.error_message());
  CHILD_CHECK(Contains(mem.error_message(), expected), "SharedMemory: " + mem.error_message());
  uint8_t hdr[layout::kHeaderSize];
  std::string err;
  CHILD_CHECK(SharedMemory::PeekHeader(name, hdr, sizeof hdr, &err) == -1,
              std::string("PeekHeader read it"));
  CHILD_CHECK(Contains(err, expected), "PeekHeader: " + err);
  uint64_t size;
  double age;
  CHILD_CHECK(!SharedMemory::Stat(name, &size, &age), std::string("Stat accepted it"));
  return 0;
}

TEST_F(NamesTest, FifoIsRefusedAtOnceNotWaitedOn) {
  const std::string name = Name();
  ASSERT_EQ(mkfifo(Path(name).c_str(), 0600), 0) << std::strerror(errno);
  EXPECT_EQ(InChild([&] { return RefusedEverywhere(name, Path(name) + " is a FIFO, not a ring"); }),
            "");
  struct stat st;
  ASSERT_EQ(lstat(Path(name).c_str(), &st), 0) << "the FIFO was removed";
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

TEST_F(NamesTest, SymbolicLinkIsRefusedAndItsTargetUntouched) {
  const std::string name = Name();
  // The target holds a valid ring: following the link would attach to it.
  const std::string target = "/tmp/" + name + ".target";
  files_.push_back(target);
  {
    const std::vector<uint8_t> ring = RingBytes(CurrentPid(), false);
    FILE* f = std::fopen(target.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(ring.data(), 1, ring.size(), f), ring.size());
    std::fclose(f);
  }
  const std::vector<uint8_t> before = Contents(target);
  ASSERT_EQ(symlink(target.c_str(), Path(name).c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(InChild([&] {
              return RefusedEverywhere(name, Path(name) + " is a symbolic link, not a ring");
            }),
            "");
  struct stat st;
  ASSERT_EQ(lstat(Path(name).c_str(), &st), 0) << "the link was removed";
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(Contents(target), before) << "the link's target was written";
}

TEST_F(NamesTest, DirectoryIsRefusedAtOnce) {
  const std::string name = Name();
  ASSERT_EQ(mkdir(Path(name).c_str(), 0700), 0) << std::strerror(errno);
  EXPECT_EQ(
      InChild([&] { return RefusedEverywhere(name, Path(name) + " is a directory, not a ring"); }),
      "");
  struct stat st;
  ASSERT_EQ(lstat(Path(name).c_str(), &st), 0) << "the directory was removed";
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

// Creators always size a segment kHeaderSize + capacity; one whose size is not a multiple
// of 8 is refused by every opener, and a producer does not remove it even when
// its header says CLOSED (stale).
TEST_F(NamesTest, SizeNotAMultipleOf8IsRefused) {
  const std::string name = Name();
  std::vector<uint8_t> bytes = RingBytes(0, true);
  bytes.resize(bytes.size() + 4);
  Plant(name, bytes, 0600);
  EXPECT_EQ(
      InChild([&] {
        ShmProducer producer(name, kCap);
        CHILD_CHECK(!producer.IsValid(), std::string("producer replaced it"));
        CHILD_CHECK(Contains(producer.error(), "segment size " +
                                                   std::to_string(layout::kHeaderSize + kCap + 4) +
                                                   " is not a multiple of 8"),
                    producer.error());
        ShmConsumer consumer(name, kWaitNs);
        CHILD_CHECK(consumer.open_status() == Status::kInvalid, consumer.error());
        CHILD_CHECK(Contains(consumer.error(), "segment size " +
                                                   std::to_string(layout::kHeaderSize + kCap + 4) +
                                                   " is not a multiple of 8"),
                    consumer.error());
        return 0;
      }),
      "");
  EXPECT_EQ(Contents(Path(name)), bytes);
}

// ---- other users (root only: it needs a second uid) ---------------------------------

class OtherUserTest : public NamesTest {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      GTEST_SKIP() << "needs root to create segments owned by another uid (CI runs as root)";
    }
  }
};

// Drops this process (a forked child) to another uid, like an unprivileged user.
bool BecomeOtherUser() {
  return setresgid(kOtherUid, kOtherUid, kOtherUid) == 0 &&
         setresuid(kOtherUid, kOtherUid, kOtherUid) == 0;
}

// Keeps uid 0 but drops the capabilities that bypass file permissions: the child
// can no longer open another user's 0600 file, yet CAP_FOWNER still lets it unlink
// that file from the sticky /dev/shm. The original failure: such a producer
// removed a live ring it could not read.
bool DropReadOverride() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &header, data) != 0) return false;
  const uint32_t drop = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH);
  data[0].effective &= ~drop;
  data[0].permitted &= ~drop;
  data[0].inheritable &= ~drop;
  return syscall(SYS_capset, &header, data) == 0;
}

TEST_F(OtherUserTest, UnreadableRingOfAnotherUserIsNeverReplaced) {
  const std::string name = Name();
  const std::vector<uint8_t> ring = RingBytes(CurrentPid(), false);  // a live producer
  Plant(name, ring, 0600, kOtherUid);
  EXPECT_EQ(InChild([&] {
              CHILD_CHECK(DropReadOverride(), std::string("capset failed"));
              ShmProducer producer(name, kCap);
              CHILD_CHECK(!producer.IsValid(), std::string("the producer took the name"));
              const std::string& e = producer.error();
              CHILD_CHECK(Contains(e, "permission denied: " + Path(name) + " is owned by " +
                                          OwnerOf(kOtherUid)),
                          e);
              CHILD_CHECK(!Contains(e, "stale"), e);
              return 0;
            }),
            "");
  EXPECT_EQ(Contents(Path(name)), ring) << "the other user's ring was replaced or changed";
}

TEST_F(OtherUserTest, UnprivilegedProducerAndConsumerSayWhoOwnsIt) {
  const std::string name = Name();
  const std::vector<uint8_t> ring = RingBytes(CurrentPid(), false);
  Plant(name, ring, 0600);  // root's
  EXPECT_EQ(InChild([&] {
              CHILD_CHECK(BecomeOtherUser(), std::string("setresuid failed"));
              const std::string expected = "permission denied: " + Path(name) + " is owned by " +
                                           OwnerOf(0) + " with mode 0600";
              ShmProducer producer(name, kCap);
              CHILD_CHECK(!producer.IsValid(), std::string("producer"));
              CHILD_CHECK(Contains(producer.error(), expected), producer.error());
              ShmConsumer consumer(name, kWaitNs);
              CHILD_CHECK(consumer.open_status() == Status::kInvalid,
                          std::string("consumer: ") + StatusName(consumer.open_status()) + " " +
                              consumer.error());
              CHILD_CHECK(Contains(consumer.error(), expected), consumer.error());
              return 0;
            }),
            "");
  EXPECT_EQ(Contents(Path(name)), ring);
}

// A world-writable ring squatted by another user: root's consumer does not attach
// and root's producer does not take it over, unless asked to.
TEST_F(OtherUserTest, ForeignOwnerRefusedUnlessAllowed) {
  const std::string name = Name();
  const std::vector<uint8_t> ring = RingBytes(CurrentPid(), false);
  Plant(name, ring, 0666, kOtherUid);
  const std::string expected = Path(name) + " is owned by " + OwnerOf(kOtherUid);
  ShmConsumer consumer(name);
  EXPECT_FALSE(consumer.IsValid());
  EXPECT_NE(consumer.error().find(expected), std::string::npos) << consumer.error();
  SharedMemory mem(name, 0, false);
  EXPECT_FALSE(mem.valid());
  EXPECT_EQ(mem.error(), Error::kOpenFailed);
  EXPECT_NE(mem.error_message().find(expected), std::string::npos) << mem.error_message();
  SharedMemory::Options allow;
  allow.allow_foreign_owner = true;
  SharedMemory allowed(name, 0, false, allow);
  EXPECT_TRUE(allowed.valid()) << allowed.error_message();
  EXPECT_GE(allowed.fd(), 0);
  EXPECT_EQ(Contents(Path(name)), ring) << "a refused opener wrote to it";
}

TEST_F(OtherUserTest, StaleRingOfAnotherUserReplacedOnlyWhenAllowed) {
  const std::string name = Name();
  const std::vector<uint8_t> ring = RingBytes(CurrentPid(), true);  // CLOSED: stale
  Plant(name, ring, 0666, kOtherUid);
  {
    ShmProducer refused(name, kCap);
    EXPECT_FALSE(refused.IsValid());
    EXPECT_NE(refused.error().find(Path(name) + " is owned by " + OwnerOf(kOtherUid)),
              std::string::npos)
        << refused.error();
    EXPECT_EQ(Contents(Path(name)), ring);
  }
  ProducerOptions o;
  o.capacity = kCap;
  o.allow_foreign_owner = true;
  ShmProducer allowed(name, o);
  ASSERT_TRUE(allowed.IsValid()) << allowed.error();
  struct stat st;
  ASSERT_EQ(stat(Path(name).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, geteuid()) << "the replacement is ours";
}

}  // namespace
