#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "offload/daemon/sync_manager.h"
#include "offload/sync/replica.h"
#include "temp_dir.h"

namespace offload::daemon {
namespace {

TEST(UnsyncablePaths, PseudoFilesystemsAndTheRootAreRefused) {
  EXPECT_NE(unsyncable_reason("/"), "");
  EXPECT_NE(unsyncable_reason("/proc").find("proc"), std::string::npos);
  EXPECT_NE(unsyncable_reason("/proc/self"), "");
  EXPECT_NE(unsyncable_reason("/sys").find("sysfs"), std::string::npos);
  EXPECT_NE(unsyncable_reason("/dev"), "");
  if (std::filesystem::exists("/sys/fs/cgroup")) {
    EXPECT_NE(unsyncable_reason("/sys/fs/cgroup"), "");
  }
}

TEST(UnsyncablePaths, OrdinaryDirectoriesAreFine) {
  EXPECT_EQ(unsyncable_reason(std::filesystem::temp_directory_path()), "");
  EXPECT_EQ(unsyncable_reason(std::filesystem::current_path()), "");
  EXPECT_EQ(unsyncable_reason("/devices-of-a-project"), "");  // only /dev itself and below
}

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class NoSession final : public SessionAccess {
 public:
  std::shared_ptr<RunnerClient> runner() const override { return nullptr; }
  std::string unavailable_message() const override { return "no session in this test"; }
  void post_notice(std::string) override {}
  void connection_opened() override {}
  void connection_closed() override {}
};

// A transport that takes `delay` to send each message: a slow link during a long first sync.
class SlowTransport final : public sync::Transport {
 public:
  SlowTransport(std::unique_ptr<sync::Transport> inner, std::chrono::milliseconds delay)
      : inner_(std::move(inner)), delay_(delay) {}
  Offer try_send(v1::SyncMessage& m) override {
    std::this_thread::sleep_for(delay_);
    return inner_->try_send(m);
  }
  int send_fd() override { return inner_->send_fd(); }
  sync::Inbox& inbox() override { return inner_->inbox(); }
  void cancel() override { inner_->cancel(); }

 private:
  std::unique_ptr<sync::Transport> inner_;
  std::chrono::milliseconds delay_;
};

class SyncManagerWaits : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(local_);
    manager_ = std::make_unique<SyncManager>(session_, std::vector<std::string>{});
    manager_->set_mount_timing(20ms, 100ms, 50ms);
  }
  void TearDown() override {
    manager_.reset();  // stops the mounts (and waits for the pool)
    stop_replica_ = true;
    if (replica_.joinable()) replica_.join();
  }

  // Asks for a create binding `source`; the answer comes on the manager's pool.
  std::future<BindSync::Prepared> ask(const fs::path& source) {
    auto answer = std::make_shared<std::promise<BindSync::Prepared>>();
    std::string body =
        R"({"Image":"x","HostConfig":{"Binds":[")" + source.string() + R"(:/src"]}})";
    manager_->prepare_create(body, [answer](BindSync::Prepared p) { answer->set_value(p); });
    return answer->get_future();
  }
  // The outcome of a create binding `local_`, or nullopt if it did not come within `limit`.
  std::optional<BindSync::Prepared> create(std::chrono::milliseconds limit = 10s) {
    auto f = ask(local_);
    if (f.wait_for(limit) != std::future_status::ready) return std::nullopt;
    return f.get();
  }

  NoSession session_;
  test::TempDir dir_{"offload-syncmgr"};
  fs::path local_ = dir_ / "project";
  std::unique_ptr<SyncManager> manager_;
  std::atomic<bool> stop_replica_{false};
  std::thread replica_;
};

TEST_F(SyncManagerWaits, ACreateWhoseMountNeverConnectsFailsWith503) {
  // The runner never answers: connect does not return until the test lets it.
  auto let_go = std::make_shared<std::promise<void>>();
  auto let_go_future = let_go->get_future().share();
  std::atomic<int> connects{0};
  manager_->set_connect([&connects, let_go_future](std::string& why) {
    ++connects;
    let_go_future.wait_for(30s);  // bounded: a broken test must not hang
    why = "the test let go";
    return std::unique_ptr<sync::Transport>();
  });
  manager_->set_stall_timeout(300ms);
  auto started = std::chrono::steady_clock::now();
  auto answer = create();
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(connects.load(), 1);
  let_go->set_value();  // lets the mount's thread go before the manager stops it
  ASSERT_TRUE(answer) << "the create is still waiting after 10 s";
  EXPECT_GE(took, 300ms);
  EXPECT_FALSE(answer->ok);
  EXPECT_EQ(answer->status, 503);
  EXPECT_NE(answer->message.find("bind mount " + local_.string() + " is not synchronised yet"),
            std::string::npos)
      << answer->message;
  EXPECT_NE(answer->message.find("connecting"), std::string::npos) << answer->message;
  EXPECT_NE(answer->message.find("docker offload status"), std::string::npos) << answer->message;
}

TEST_F(SyncManagerWaits, FourStuckCreatesDoNotBlockTheNextOne) {
  // The pool has four threads: four creates on a runner that never answers took them all.
  auto peers = std::make_shared<std::vector<std::unique_ptr<sync::Transport>>>();
  auto mu = std::make_shared<std::mutex>();
  manager_->set_connect([peers, mu](std::string&) -> std::unique_ptr<sync::Transport> {
    auto [client, server] = sync::make_transport_pair();
    std::lock_guard lock(*mu);
    peers->push_back(std::move(server));  // held open, never answered
    return std::move(client);
  });
  manager_->set_stall_timeout(300ms);
  std::vector<std::future<BindSync::Prepared>> stuck;
  for (int i = 0; i < 4; ++i) {
    fs::path source = local_ / ("stuck" + std::to_string(i));
    fs::create_directories(source);
    stuck.push_back(ask(source));
  }
  // A create without bind mounts needs a thread of the pool too.
  auto plain = std::make_shared<std::promise<BindSync::Prepared>>();
  manager_->prepare_create(R"({"Image":"x"})",
                           [plain](BindSync::Prepared p) { plain->set_value(p); });
  auto f = plain->get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << "every create of the session is stuck";
  EXPECT_TRUE(f.get().ok);
  for (auto& s : stuck) {
    ASSERT_EQ(s.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(s.get().status, 503);
  }
}

TEST_F(SyncManagerWaits, AFirstSyncThatKeepsMovingIsWaitedForBeyondTheStallTimeout) {
  // 40 files over a link that takes 25 ms a message: about a second, four times the stall
  // timeout, with progress all along.
  for (int i = 0; i < 40; ++i) std::ofstream(local_ / ("f" + std::to_string(i))) << i;
  auto [client, server] = sync::make_transport_pair();
  auto server_end = std::shared_ptr<sync::Transport>(std::move(server));
  fs::create_directories(dir_ / "runner-sync");
  sync::ReplicaOptions ro;
  ro.sync_root = dir_ / "runner-sync";
  ro.settle = 20ms;
  ro.max_delay = 100ms;
  replica_ = std::thread([this, server_end, ro] {
    sync::serve_replica(*server_end, ro, stop_replica_);
  });
  auto holder = std::make_shared<std::unique_ptr<sync::Transport>>(
      std::make_unique<SlowTransport>(std::move(client), 25ms));
  manager_->set_connect([holder](std::string& why) -> std::unique_ptr<sync::Transport> {
    if (!*holder) why = "one connection in this test";
    return std::move(*holder);
  });
  manager_->set_stall_timeout(250ms);
  auto started = std::chrono::steady_clock::now();
  auto answer = create(30s);
  ASSERT_TRUE(answer);
  EXPECT_GE(std::chrono::steady_clock::now() - started, 750ms);  // the test means something
  EXPECT_TRUE(answer->ok) << answer->message;
  EXPECT_TRUE(answer->rewritten);
  auto replica = dir_ / "runner-sync" / sync::MountSync::id_for(fs::canonical(local_));
  EXPECT_NE(answer->body.find(replica.string() + ":/src"), std::string::npos) << answer->body;
  EXPECT_TRUE(fs::exists(replica / "f39"));
}

}  // namespace
}  // namespace offload::daemon

namespace offload::daemon {
namespace {

// A bind of the Docker socket (the usual paths, the context's own socket) is the Docker API:
// never synchronised, sent to the runner as /var/run/docker.sock, which gives its gated socket.
TEST(SyncManagerDockerSocket, DockerSocketBindsAreSentAsTheDockerSocketAndNotSynchronised) {
  NoSession session;
  SyncManager manager(session, {});
  manager.set_context_socket("/home/me/.docker/offload/docker.sock");
  std::promise<BindSync::Prepared> answer;
  manager.prepare_create(
      R"({"Image":"x","HostConfig":{"Binds":["/var/run/docker.sock:/var/run/docker.sock",)"
      R"("/home/me/.docker/offload//docker.sock:/ctx.sock:ro"],)"
      R"("Mounts":[{"Type":"bind","Source":"/run/docker.sock","Target":"/d"}]}})",
      [&answer](BindSync::Prepared p) { answer.set_value(p); });
  auto future = answer.get_future();
  ASSERT_EQ(future.wait_for(10s), std::future_status::ready);
  auto prepared = future.get();
  ASSERT_TRUE(prepared.ok) << prepared.message;
  ASSERT_TRUE(prepared.rewritten);
  auto doc = nlohmann::json::parse(prepared.body);
  EXPECT_EQ(doc["HostConfig"]["Binds"],
            nlohmann::json({"/var/run/docker.sock:/var/run/docker.sock",
                            "/var/run/docker.sock:/ctx.sock:ro"}));
  EXPECT_EQ(doc["HostConfig"]["Mounts"][0]["Source"], "/var/run/docker.sock");
  EXPECT_TRUE(manager.status().empty()) << "nothing is synchronised";
  EXPECT_TRUE(manager.path_mappings().empty());
}

}  // namespace
}  // namespace offload::daemon
