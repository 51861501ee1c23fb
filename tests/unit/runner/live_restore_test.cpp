// What a runner started with --live-restore needs to bring a session back: the snapshot kept in
// the session's record, a Session rebuilt from it, and RunnerService's detach/restore pair.
// No engines here: fake ones record what is saved and whether they were destroyed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "offload/common/clock.h"
#include "offload/common/token.h"
#include "offload/runner/lifecycle.h"
#include "offload/runner/runner_service.h"
#include "offload/runner/session.h"
#include "offload/runner/session_snapshot.h"
#include "error_of.h"

using namespace offload;
using namespace offload::runner;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using json = nlohmann::json;

namespace {

const std::string kId = "0123456789abcdef0123456789abcdef";
const std::string kMountDir = "00112233445566ff";
const std::string kMountFile = "aabbccddeeff0011";

SessionSnapshot sample() {
  SessionSnapshot s;
  s.id = kId;
  s.token_sha256 = sha256_hex("the-session-token");
  s.account = "alice";
  s.client_label = "alice@laptop";
  s.limits.idle_timeout = 90s;
  s.limits.idle_warning = 10s;
  s.limits.client_ttl = 3min;
  s.limits.max_duration = 2h;
  s.allow.devices = true;
  s.allow.capabilities = {"SYS_PTRACE", "NET_ADMIN"};
  s.created_unix_ms = 1780000000000;
  s.mounts = {{kMountDir, std::nullopt}, {kMountFile, "app.conf"}};
  return s;
}

using offload::testing::error_of;

class FakeEngine final : public SessionEngine {
 public:
  std::filesystem::path api_socket() const override { return "/nonexistent/docker.sock"; }
  boost::asio::ip::address published_address() const override {
    return boost::asio::ip::make_address("127.0.0.1");
  }
  void watch(PortsCallback, RunningCallback) override { ++watched; }
  void describe(v1::SessionInfo&) override {}
  bool alive() override { return true; }
  std::vector<v1::Container> list_containers(bool) override { return {}; }
  std::vector<v1::Image> list_images() override { return {}; }
  std::vector<std::string> destroy(const std::string&) override {
    *destroyed = true;
    return {};
  }
  void save_state(const std::string& state) override { saved->push_back(state); }

  std::shared_ptr<bool> destroyed = std::make_shared<bool>(false);
  std::shared_ptr<std::vector<std::string>> saved = std::make_shared<std::vector<std::string>>();
  int watched = 0;
};

class NoBackend final : public SessionBackend {
 public:
  std::unique_ptr<SessionEngine> create(const std::string&) override {
    throw std::runtime_error("not in this test");
  }
};

// What the backend hands over for one adopted engine (initializer lists cannot move).
std::vector<AdoptedEngine> adopted(const std::string& state, std::unique_ptr<SessionEngine> e) {
  std::vector<AdoptedEngine> v;
  v.push_back({kId, state, std::move(e)});
  return v;
}

}  // namespace

// --- the snapshot ---

TEST(SessionSnapshot, RoundTripsEveryField) {
  const auto s = sample();
  EXPECT_EQ(parse_session_snapshot(snapshot_json(s), kId), s);
  // What is kept never holds the token itself.
  EXPECT_EQ(snapshot_json(s).find("the-session-token"), std::string::npos);
}

// A GPU session keeps its GPUs across a runner restart; a record from before GPU sessions had
// none.
TEST(SessionSnapshot, KeepsTheGpuAndReadsOlderRecordsWithout) {
  auto s = sample();
  s.allow.gpu = true;
  EXPECT_TRUE(parse_session_snapshot(snapshot_json(s), kId).allow.gpu);
  json older = json::parse(snapshot_json(s));
  older["allow"].erase("gpu");
  EXPECT_FALSE(parse_session_snapshot(older.dump(), kId).allow.gpu);
  older["allow"]["gpu"] = "yes";
  EXPECT_THAT(error_of([&] { parse_session_snapshot(older.dump(), kId); }), HasSubstr("wrong type"));
}

TEST(SessionSnapshot, RefusesWhatCouldRestoreTheWrongSessionOrEscapeItsMounts) {
  const json good = json::parse(snapshot_json(sample()));
  auto with = [&](const std::function<void(json&)>& change) {
    json doc = good;
    change(doc);
    return doc.dump();
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[]", "not a JSON object"},
      {"{\"version\":1", "not a JSON object"},
      {with([](json& d) { d["version"] = 2; }), "unknown version"},
      {with([](json& d) { d["id"] = "ffffffffffffffffffffffffffffffff"; }), "not the session's own"},
      {with([](json& d) { d.erase("token_sha256"); }), "no \"token_sha256\""},
      {with([](json& d) { d["token_sha256"] = "the-session-token"; }), "not a SHA-256"},
      {with([](json& d) { d["account"] = ""; }), "no account"},
      {with([](json& d) { d["created_unix_ms"] = -5; }), "out of range"},
      {with([](json& d) { d["limits"]["idle_timeout_ms"] = -1; }), "out of range"},
      {with([](json& d) { d["limits"]["max_duration_ms"] = "8h"; }), "wrong type"},
      {with([](json& d) { d["allow"]["privileged"] = 1; }), "wrong type"},
      {with([](json& d) { d["allow"]["capabilities"] = {"sys admin"}; }), "not a capability"},
      {with([](json& d) { d["mounts"]["../../etc/xxxxxx"] = nullptr; }), "not a mount id"},
      {with([](json& d) { d["mounts"][kMountFile] = "../shadow"; }), "names no valid file"},
      {with([](json& d) { d["mounts"][kMountFile] = ".."; }), "names no valid file"},
      {with([](json& d) { d["mounts"][kMountFile] = 7; }), "names no valid file"},
  };
  for (const auto& [text, expected] : cases)
    EXPECT_THAT(error_of([&] { parse_session_snapshot(text, kId); }), HasSubstr(expected))
        << text;
}

// --- the lifecycle of a restored session ---

TEST(SessionLifecycle, ARestoredSessionKeepsItsMaximumDurationAndStartsIdleAndLeaseAfresh) {
  const auto t0 = SessionLifecycle::time_point{} + 1000h;
  LifecycleLimits limits;  // 5m idle, 10m TTL, 8h max
  SessionLifecycle restored(limits, t0, 7h);
  auto v = restored.view(t0);
  EXPECT_EQ(v.max_deadline, t0 + 1h);
  EXPECT_EQ(v.idle_deadline, t0 + 5min);
  EXPECT_EQ(v.lease_deadline, t0 + 10min);

  // Past its maximum before the restart: it ends at the first look, for that reason.
  SessionLifecycle overdue(limits, t0, 9h);
  auto tick = overdue.advance(t0);
  EXPECT_TRUE(tick.ended);
  EXPECT_EQ(overdue.view(t0).ended, EndReason::max_duration);
  EXPECT_EQ(overdue.view(t0).reason_text, "reached the maximum session duration of 8h");
}

// --- a session rebuilt from its snapshot ---

TEST(RestoredSession, KeepsItsTokenOwnerLimitsCreationTimeAndMountModes) {
  ManualClock clock;
  const auto s = sample();
  Session session(s, clock, {});
  EXPECT_EQ(session.id(), kId);
  EXPECT_TRUE(session.token_matches("the-session-token"));
  EXPECT_FALSE(session.token_matches("the-session-tokeN"));
  EXPECT_FALSE(session.token_matches(""));
  EXPECT_EQ(session.token(), "");  // nothing to hand out again
  EXPECT_EQ(session.account(), "alice");
  EXPECT_EQ(session.client_label(), "alice@laptop");
  EXPECT_EQ(session.allowances(), s.allow);
  EXPECT_EQ(session.created_unix_ms(), s.created_unix_ms);
  EXPECT_EQ(session.lifecycle().limits(), s.limits);
  EXPECT_TRUE(session.syncs().is_mount_source(kMountDir));
  EXPECT_TRUE(session.syncs().is_mount_source(std::filesystem::path(kMountFile) / "app.conf"));
  // A mount keeps its mode across the restart: the directory cannot become a file's home.
  EXPECT_THAT(session.syncs().claim(kMountDir, true, "x"), HasSubstr("cannot now hold"));
  EXPECT_EQ(session.snapshot(), s);
}

TEST(RestoredSession, ANewMountIsRecordedBeforeItIsUsed) {
  ManualClock clock;
  Session session(kId, "tok-tok-tok-tok-tok", "bob", "bob@laptop", {}, clock, {});
  auto engine = std::make_unique<FakeEngine>();
  auto saved = engine->saved;
  session.attach_engine(std::move(engine));
  session.persist();
  ASSERT_EQ(saved->size(), 1u);
  EXPECT_TRUE(parse_session_snapshot(saved->back(), kId).mounts.empty());

  EXPECT_EQ(session.syncs().claim(kMountFile, true, "app.conf"), "");
  ASSERT_EQ(saved->size(), 2u);
  auto kept = parse_session_snapshot(saved->back(), kId);
  EXPECT_EQ(kept.mounts.at(kMountFile), "app.conf");
  EXPECT_EQ(kept.token_sha256, sha256_hex("tok-tok-tok-tok-tok"));
  // Claiming it again in the same mode changes nothing and writes nothing.
  EXPECT_EQ(session.syncs().claim(kMountFile, true, "app.conf"), "");
  EXPECT_EQ(saved->size(), 2u);
}

// --- RunnerService: detach on stop, restore on start ---

TEST(LiveRestore, DetachLeavesEnginesRunningWithTheirStateAndRestoreBringsTheSessionsBack) {
  boost::asio::io_context io;
  NoBackend backend;
  ManualClock clock;
  RunnerOptions options;
  options.clock = &clock;
  auto first = std::make_unique<RunnerService>(io, backend, options);

  auto engine = std::make_unique<FakeEngine>();
  auto destroyed = engine->destroyed;
  auto saved = engine->saved;
  ASSERT_EQ(first->restore(adopted(snapshot_json(sample()), std::move(engine))), 1u);
  ASSERT_EQ(first->session_count(), 1u);
  auto session = first->find_session(kId);
  ASSERT_TRUE(session);
  EXPECT_TRUE(session->token_matches("the-session-token"));

  EXPECT_EQ(first->detach_all(), 1u);
  EXPECT_EQ(first->session_count(), 0u);
  EXPECT_FALSE(*destroyed);
  ASSERT_FALSE(saved->empty());
  EXPECT_EQ(parse_session_snapshot(saved->back(), kId), sample());
  session.reset();
  first.reset();

  // The next runner process restores from what was saved.
  auto again = std::make_unique<FakeEngine>();
  RunnerService second(io, backend, options);
  ASSERT_EQ(second.restore(adopted(saved->back(), std::move(again))), 1u);
  EXPECT_TRUE(second.find_session(kId)->token_matches("the-session-token"));
}

TEST(LiveRestore, AnEngineWhoseSessionCannotBeRestoredIsDestroyed) {
  boost::asio::io_context io;
  NoBackend backend;
  RunnerService service(io, backend, {});
  auto engine = std::make_unique<FakeEngine>();
  auto destroyed = engine->destroyed;
  json doc = json::parse(snapshot_json(sample()));
  doc["id"] = "ffffffffffffffffffffffffffffffff";  // another session's record
  EXPECT_EQ(service.restore(adopted(doc.dump(), std::move(engine))), 0u);
  EXPECT_EQ(service.session_count(), 0u);
  EXPECT_TRUE(*destroyed);
}

TEST(LiveRestore, ASessionPastItsMaximumDurationEndsRightAfterItIsRestored) {
  boost::asio::io_context io;
  NoBackend backend;
  ManualClock clock;
  RunnerOptions options;
  options.clock = &clock;
  auto service = std::make_unique<RunnerService>(io, backend, options);
  auto s = sample();
  s.created_unix_ms = unix_now_ms() - 3 * 3600 * 1000;  // 3h ago, maximum 2h
  auto engine = std::make_unique<FakeEngine>();
  auto destroyed = engine->destroyed;
  ASSERT_EQ(service->restore(adopted(snapshot_json(s), std::move(engine))), 1u);
  service->advance_lifecycles();
  EXPECT_EQ(service->session_count(), 0u);
  service.reset();  // joins the blocking pool, where the teardown runs
  EXPECT_TRUE(*destroyed);
}
