#include "offload/common/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace offload {
namespace fs = std::filesystem;

namespace {
std::error_code last_error() { return {errno, std::generic_category()}; }

}  // namespace

std::error_code write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

std::error_code write_file_atomic(const fs::path& path, std::string_view data, fs::perms mode) {
  fs::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  std::string tmpl = (dir / ("." + path.filename().string() + ".tmp-XXXXXX")).string();
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) return last_error();
  std::error_code ec = write_all(fd, data);
  if (!ec && ::fchmod(fd, static_cast<mode_t>(mode)) != 0) ec = last_error();
  if (!ec && ::fsync(fd) != 0) ec = last_error();
  if (::close(fd) != 0 && !ec) ec = last_error();
  if (!ec && ::rename(tmpl.c_str(), path.c_str()) != 0) ec = last_error();
  if (ec) {
    ::unlink(tmpl.c_str());
    return ec;
  }
  // The rename is durable only once the directory entry is.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

std::error_code read_file(const fs::path& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return last_error();
  out.clear();
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      auto ec = last_error();
      ::close(fd);
      return ec;
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return {};
}

std::error_code ensure_private_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return ec;
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return last_error();
  if (!S_ISDIR(st.st_mode)) return std::make_error_code(std::errc::not_a_directory);
  if (st.st_uid != ::geteuid()) return std::make_error_code(std::errc::permission_denied);
  if ((st.st_mode & 07777) != 0700 && ::chmod(dir.c_str(), 0700) != 0) return last_error();
  return {};
}

std::string display_path(const fs::path& path) {
  const char* home = std::getenv("HOME");
  std::string p = path.string();
  if (home && *home) {
    std::string h = home;
    if (p.rfind(h + "/", 0) == 0) return "~" + p.substr(h.size());
  }
  return p;
}

}  // namespace offload
