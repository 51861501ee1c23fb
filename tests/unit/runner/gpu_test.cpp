// GPU detection on fake device trees: what a machine with NVIDIA GPUs, one without, and one
// with GPUs but without the NVIDIA Container Toolkit look like to the runner.
#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <set>

#include "offload/runner/gpu.h"
#include "temp_dir.h"

using namespace offload::runner;
using offload::test::TempDir;
namespace fs = std::filesystem;

namespace {

void put(const fs::path& file, const std::string& text = "") {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << text;
}

// A probe of `root` that finds the toolkit programs in `programs` and gets `smi` from nvidia-smi.
GpuProbe probe_of(const fs::path& root, std::set<std::string> programs,
                  std::optional<std::string> smi = std::nullopt) {
  GpuProbe probe;
  probe.root = root;
  probe.query_names = [smi] { return smi; };
  probe.find_program = [programs](const std::string& name) -> std::optional<fs::path> {
    if (!programs.count(name)) return std::nullopt;
    return fs::path("/usr/bin") / name;
  };
  return probe;
}

const std::set<std::string> kToolkit = {"nvidia-container-runtime-hook",
                                        "nvidia-container-runtime"};

}  // namespace

TEST(Gpu, NoneOnAMachineWithoutNvidiaDevices) {
  TempDir root;
  put(root.path() / "dev" / "null");
  put(root.path() / "dev" / "nvidiactl");  // the driver's control node is no GPU
  auto gpus = detect_gpus(probe_of(root.path(), kToolkit, "NVIDIA A100-SXM4-40GB\n"));
  EXPECT_FALSE(gpus.usable());
  EXPECT_TRUE(gpus.devices.empty());
  EXPECT_TRUE(gpus.models.empty());
  EXPECT_EQ(gpus.problem, "it has no NVIDIA GPU (no /dev/nvidia<N> device nodes)");
}

TEST(Gpu, DevicesNamedByNvidiaSmi) {
  TempDir root;
  for (const char* node : {"nvidia1", "nvidia0", "nvidia10", "nvidiactl", "nvidia-uvm",
                           "nvidia-modeset"})
    put(root.path() / "dev" / node);
  auto gpus = detect_gpus(probe_of(root.path(), kToolkit,
                                   "NVIDIA A100-SXM4-40GB\nNVIDIA A100-SXM4-40GB\n  Tesla T4 \n"));
  EXPECT_TRUE(gpus.usable()) << gpus.problem;
  EXPECT_EQ(gpus.devices, (std::vector<std::string>{"/dev/nvidia0", "/dev/nvidia1",
                                                    "/dev/nvidia10"}));
  EXPECT_EQ(gpus.models, (std::vector<std::string>{"NVIDIA A100-SXM4-40GB",
                                                   "NVIDIA A100-SXM4-40GB", "Tesla T4"}));
  EXPECT_EQ(gpus.describe_models(), "2 x NVIDIA A100-SXM4-40GB, Tesla T4");
  EXPECT_EQ(gpus.hook, "/usr/bin/nvidia-container-runtime-hook");
  EXPECT_EQ(gpus.runtime, "/usr/bin/nvidia-container-runtime");
}

TEST(Gpu, ModelsFromTheDriverWithoutNvidiaSmi) {
  TempDir root;
  put(root.path() / "dev" / "nvidia0");
  put(root.path() / "proc/driver/nvidia/gpus/0000:3b:00.0/information",
      "Model: \t\t NVIDIA L4\nIRQ:   \t\t 150\nGPU UUID: \t GPU-0f0e\n");
  auto gpus = detect_gpus(probe_of(root.path(), {"nvidia-container-runtime-hook"}));
  EXPECT_TRUE(gpus.usable()) << gpus.problem;
  EXPECT_EQ(gpus.models, std::vector<std::string>{"NVIDIA L4"});
  EXPECT_TRUE(gpus.runtime.empty());  // the hook alone serves --gpus

  // Neither nvidia-smi nor the driver's files: still a GPU, by its device node.
  TempDir bare;
  put(bare.path() / "dev" / "nvidia0");
  EXPECT_EQ(detect_gpus(probe_of(bare.path(), kToolkit)).models,
            std::vector<std::string>{"NVIDIA GPU"});
}

TEST(Gpu, WithoutTheToolkitSessionsCannotHaveThem) {
  TempDir root;
  put(root.path() / "dev" / "nvidia0");
  auto gpus = detect_gpus(probe_of(root.path(), {"nvidia-container-runtime"}, "NVIDIA T4\n"));
  EXPECT_FALSE(gpus.usable());
  EXPECT_EQ(gpus.models, std::vector<std::string>{"NVIDIA T4"});
  EXPECT_EQ(gpus.problem,
            "it has NVIDIA T4 but not the NVIDIA Container Toolkit (no "
            "nvidia-container-runtime-hook on PATH), which dockerd needs for --gpus; the "
            "operator installs nvidia-container-toolkit");
}

TEST(Gpu, CdiSpecsAreFoundAndWithoutDevicesNameTheDriver) {
  TempDir root;
  put(root.path() / "etc/cdi/nvidia.yaml", "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n");
  put(root.path() / "etc/cdi/other.json", R"({"kind": "vendor.com/fpga"})");
  put(root.path() / "var/run/cdi/nvidia.json", R"({"kind": "nvidia.com/gpu"})");
  put(root.path() / "etc/cdi/README", "nvidia.com/gpu");  // not a spec file
  auto gpus = detect_gpus(probe_of(root.path(), kToolkit));
  EXPECT_EQ(gpus.cdi_specs, (std::vector<fs::path>{"/etc/cdi/nvidia.yaml",
                                                   "/var/run/cdi/nvidia.json"}));
  EXPECT_FALSE(gpus.usable());
  EXPECT_EQ(gpus.problem,
            "it has CDI specs for NVIDIA GPUs (/etc/cdi/nvidia.yaml) but no /dev/nvidia<N> device "
            "nodes: the NVIDIA driver is not loaded");
}

TEST(Gpu, AFakeRootKeepsItsProgramsInItsOwnBinDirectories) {
  // What `offload-runner serve --gpu-probe-root DIR` uses: nvidia-smi and the toolkit of the tree.
  TempDir root;
  put(root.path() / "dev" / "nvidia0");
  put(root.path() / "usr/bin/nvidia-smi", "#!/bin/sh\necho 'NVIDIA H100 80GB HBM3'\n");
  put(root.path() / "usr/bin/nvidia-container-runtime-hook", "#!/bin/sh\n");
  put(root.path() / "usr/local/bin/nvidia-container-runtime");  // not executable: not found
  for (const char* p : {"usr/bin/nvidia-smi", "usr/bin/nvidia-container-runtime-hook"})
    fs::permissions(root.path() / p, fs::perms::owner_all);
  GpuProbe probe;
  probe.root = root.path();
  auto gpus = detect_gpus(probe);
  EXPECT_TRUE(gpus.usable()) << gpus.problem;
  EXPECT_EQ(gpus.models, std::vector<std::string>{"NVIDIA H100 80GB HBM3"});
  EXPECT_EQ(gpus.hook, root.path() / "usr/bin/nvidia-container-runtime-hook");
  EXPECT_TRUE(gpus.runtime.empty());
}

TEST(Gpu, DescribeCountsInFirstSeenOrder) {
  EXPECT_EQ(describe_gpu_models({}), "");
  EXPECT_EQ(describe_gpu_models({"T4", "A100", "T4"}), "2 x T4, A100");
}
