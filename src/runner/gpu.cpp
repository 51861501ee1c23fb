#include "offload/runner/gpu.h"

#include <algorithm>
#include <map>
#include <regex>

#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/text.h"

namespace offload::runner {
namespace fs = std::filesystem;

namespace {

std::string trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

// <root>/<absolute path>
fs::path under(const fs::path& root, const fs::path& path) {
  return root / path.relative_path();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t j = text.find('\n', i);
    if (j == std::string::npos) j = text.size();
    if (auto line = trim(text.substr(i, j - i)); !line.empty()) out.push_back(line);
    i = j + 1;
  }
  return out;
}

// /dev/nvidia0, /dev/nvidia1, ...: one node per GPU (nvidiactl, nvidia-uvm and nvidia-modeset
// are the driver's own).
std::vector<std::string> gpu_device_nodes(const fs::path& root) {
  static const std::regex kGpuNode("nvidia[0-9]+");
  std::vector<std::pair<int, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(under(root, "/dev"), ec)) {
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, kGpuNode)) found.emplace_back(std::stoi(name.substr(6)), name);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (const auto& [index, name] : found) out.push_back("/dev/" + name);
  return out;
}

// CDI specs (JSON or YAML) that describe NVIDIA GPUs, as `nvidia-ctk cdi generate` writes them.
std::vector<fs::path> nvidia_cdi_specs(const fs::path& root) {
  std::vector<fs::path> out;
  for (const char* dir : {"/etc/cdi", "/var/run/cdi"}) {
    std::error_code ec;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(under(root, dir), ec)) {
      const auto ext = entry.path().extension();
      if (ext == ".json" || ext == ".yaml" || ext == ".yml") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
      std::string text;
      if (!read_file(file, text) && text.find("nvidia.com/gpu") != std::string::npos)
        out.push_back(fs::path(dir) / file.filename());
    }
  }
  return out;
}

// The driver's own record of each GPU: /proc/driver/nvidia/gpus/<bus id>/information holds
// "Model:   NVIDIA A100-SXM4-40GB". The fallback when nvidia-smi is not installed.
std::vector<std::string> proc_models(const fs::path& root) {
  std::vector<fs::path> dirs;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(under(root, "/proc/driver/nvidia/gpus"), ec))
    dirs.push_back(entry.path());
  std::sort(dirs.begin(), dirs.end());
  std::vector<std::string> out;
  for (const auto& dir : dirs) {
    std::string text;
    if (read_file(dir / "information", text)) continue;
    for (const auto& line : lines_of(text))
      if (line.rfind("Model:", 0) == 0) out.push_back(trim(line.substr(6)));
  }
  return out;
}

}  // namespace

std::string describe_gpu_models(const std::vector<std::string>& models) {
  // Counted in the order they first appear: "2 x NVIDIA A100, NVIDIA T4".
  std::vector<std::string> order;
  std::map<std::string, int> count;
  for (const auto& m : models)
    if (count[m]++ == 0) order.push_back(m);
  std::vector<std::string> parts;
  for (const auto& m : order)
    parts.push_back(count[m] > 1 ? std::to_string(count[m]) + " x " + m : m);
  return join(parts, ", ");
}

std::string GpuInventory::describe_models() const { return describe_gpu_models(models); }

GpuInventory detect_gpus(const GpuProbe& probe_in) {
  GpuProbe probe = probe_in;
  if (!probe.find_program) {
    if (probe.root == "/") {
      probe.find_program = [](const std::string& name) { return offload::find_program(name); };
    } else {
      // A tree that stands for another machine keeps its programs in its own bin directories.
      probe.find_program = [root = probe.root](const std::string& name)
          -> std::optional<fs::path> {
        for (const char* dir : {"/usr/local/bin", "/usr/bin"}) {
          fs::path p = under(root, dir) / name;
          std::error_code ec;
          if (fs::is_regular_file(p, ec) &&
              (fs::status(p, ec).permissions() & fs::perms::owner_exec) != fs::perms::none)
            return p;
        }
        return std::nullopt;
      };
    }
  }
  if (!probe.query_names)
    probe.query_names = [find = probe.find_program]() -> std::optional<std::string> {
      auto smi = find("nvidia-smi");
      if (!smi) return std::nullopt;
      auto r = run_command({smi->string(), "--query-gpu=name", "--format=csv,noheader"},
                           std::chrono::seconds(20));
      if (!r.ok()) return std::nullopt;
      return r.output;
    };

  GpuInventory gpus;
  gpus.devices = gpu_device_nodes(probe.root);
  gpus.cdi_specs = nvidia_cdi_specs(probe.root);
  if (!gpus.devices.empty()) {
    if (auto names = probe.query_names()) gpus.models = lines_of(*names);
    if (gpus.models.empty()) gpus.models = proc_models(probe.root);
    if (gpus.models.empty()) gpus.models.assign(gpus.devices.size(), "NVIDIA GPU");
  }
  if (auto hook = probe.find_program("nvidia-container-runtime-hook")) gpus.hook = *hook;
  if (auto runtime = probe.find_program("nvidia-container-runtime")) gpus.runtime = *runtime;

  if (gpus.devices.empty() && gpus.cdi_specs.empty())
    gpus.problem = "it has no NVIDIA GPU (no /dev/nvidia<N> device nodes)";
  else if (gpus.devices.empty())
    gpus.problem = "it has CDI specs for NVIDIA GPUs (" + gpus.cdi_specs.front().string() +
                   ") but no /dev/nvidia<N> device nodes: the NVIDIA driver is not loaded";
  else if (gpus.hook.empty())
    gpus.problem = "it has " + gpus.describe_models() +
                   " but not the NVIDIA Container Toolkit (no nvidia-container-runtime-hook on "
                   "PATH), which dockerd needs for --gpus; the operator installs "
                   "nvidia-container-toolkit";
  return gpus;
}

}  // namespace offload::runner
