#include <gtest/gtest.h>

#include "offload/cli/cli.h"

using offload::cli::Invocation;
using offload::cli::preprocess_argv;
using Args = std::vector<std::string>;

namespace {
const std::filesystem::path kDefault = "/home/u/.docker";
}

TEST(Argv, DockerInvocationDropsTheOffloadWord) {
  Invocation inv = preprocess_argv({"docker-offload", "offload", "status", "--format", "json"}, kDefault);
  EXPECT_FALSE(inv.metadata);
  EXPECT_EQ(inv.docker_config, kDefault);
  EXPECT_EQ(inv.args, (Args{"status", "--format", "json"}));
}

TEST(Argv, SkipsEveryGlobalFlagWithItsValue) {
  Invocation inv = preprocess_argv(
      {"docker-offload", "--config", "/cfg", "-c", "ctx", "-H", "unix:///a.sock", "-l", "debug",
       "-D", "--tls", "--tlsverify", "--tlscacert", "ca.pem", "--tlscert", "cert.pem",
       "--tlskey", "key.pem", "--context", "other", "--host", "tcp://h:1", "--log-level", "info",
       "--debug", "offload", "ps", "-a"},
      kDefault);
  EXPECT_EQ(inv.docker_config, "/cfg");
  EXPECT_EQ(inv.args, (Args{"ps", "-a"}));
}

TEST(Argv, AcceptsInlineAndAttachedValues) {
  Invocation inv = preprocess_argv(
      {"docker-offload", "--config=/other", "--context=x", "-cfoo", "-Hunix:///s", "--tlsverify=false",
       "offload", "images"},
      kDefault);
  EXPECT_EQ(inv.docker_config, "/other");
  EXPECT_EQ(inv.args, (Args{"images"}));
}

TEST(Argv, DirectInvocationHasNoOffloadWord) {
  EXPECT_EQ(preprocess_argv({"docker-offload", "status", "-w"}, kDefault).args,
            (Args{"status", "-w"}));
  EXPECT_EQ(preprocess_argv({"docker-offload", "--help"}, kDefault).args, (Args{"--help"}));
  EXPECT_EQ(preprocess_argv({"docker-offload"}, kDefault).args, Args{});
  EXPECT_EQ(preprocess_argv({"docker-offload", "--config", "/c", "stop", "-f"}, kDefault).args,
            (Args{"stop", "-f"}));
}

TEST(Argv, OnlyTheFirstOffloadWordIsTheCommandName) {
  EXPECT_EQ(preprocess_argv({"docker-offload", "offload", "offload"}, kDefault).args,
            (Args{"offload"}));
  EXPECT_EQ(preprocess_argv({"docker-offload", "status", "offload"}, kDefault).args,
            (Args{"status", "offload"}));
}

TEST(Argv, MetadataIsOnlyTheFirstArgument) {
  EXPECT_TRUE(preprocess_argv({"docker-offload", "docker-cli-plugin-metadata"}, kDefault).metadata);
  EXPECT_FALSE(
      preprocess_argv({"docker-offload", "offload", "docker-cli-plugin-metadata"}, kDefault).metadata);
}

TEST(Metadata, ExactJson) {
  EXPECT_EQ(offload::cli::plugin_metadata_json(),
            "{\"SchemaVersion\":\"0.1.0\",\"Vendor\":\"docker-offload project\",\"Version\":\"" OFFLOAD_VERSION
            "\",\"ShortDescription\":\"Run containers and builds on an ephemeral remote engine\","
            "\"URL\":\"https://github.com/docker-offload/docker-offload\"}");
}

TEST(Argv, DockerHelpOffloadAsksForHelp) {
  EXPECT_EQ(preprocess_argv({"docker-offload", "help", "offload"}, kDefault).args, (Args{"--help"}));
  EXPECT_EQ(preprocess_argv({"docker-offload", "--config", "/c", "help", "offload", "status"}, kDefault).args,
            (Args{"status", "--help"}));
}
