// The runner's NVIDIA GPUs: what `docker offload start --gpu` sessions get. Detected once at
// start-up from the device nodes (/dev/nvidia<N>), the NVIDIA CDI specs (/etc/cdi,
// /var/run/cdi), nvidia-smi or the driver's /proc files (the model names), and the NVIDIA
// Container Toolkit, without which dockerd cannot hand a GPU to a container: dockerd (20.10
// and later) registers its "nvidia" device driver for `--gpus` only when
// nvidia-container-runtime-hook is on its PATH.
//
// Everything is read under a root directory and through injected functions, so tests describe a
// machine with a fake tree instead of a GPU.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace offload::runner {

struct GpuProbe {
  // Device nodes, CDI spec directories and /proc are read under this root.
  std::filesystem::path root = "/";
  // `nvidia-smi --query-gpu=name --format=csv,noheader`: its output, or nullopt when nvidia-smi
  // is not installed or fails. Default: runs it when it is on PATH.
  std::function<std::optional<std::string>()> query_names;
  // The absolute path of a program of the NVIDIA Container Toolkit, or nullopt. Default: PATH.
  std::function<std::optional<std::filesystem::path>(const std::string& name)> find_program;
};

struct GpuInventory {
  std::vector<std::string> devices;           // "/dev/nvidia0", ... (as seen on the host)
  std::vector<std::filesystem::path> cdi_specs;  // CDI spec files of kind nvidia.com/gpu
  std::vector<std::string> models;            // one per GPU, e.g. "NVIDIA A100-SXM4-40GB"
  std::filesystem::path hook;                 // nvidia-container-runtime-hook; empty: none
  std::filesystem::path runtime;              // nvidia-container-runtime; empty: none
  // Why sessions cannot have a GPU here ("" when they can): one line for the user.
  std::string problem;

  bool usable() const { return problem.empty(); }
  // "NVIDIA A100-SXM4-40GB" or "2 x NVIDIA A100-SXM4-40GB, NVIDIA T4"; "" when none is known.
  std::string describe_models() const;
};

GpuInventory detect_gpus(const GpuProbe& probe = {});

// The same wording for a list of model names (as Hello and SessionInfo carry them).
std::string describe_gpu_models(const std::vector<std::string>& models);

}  // namespace offload::runner
