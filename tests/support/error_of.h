// The message of the exception a piece of code under test throws: error tests compare messages,
// which users read, so each test states the exact text it expects.
#pragma once

#include <exception>
#include <string>

namespace offload::testing {

// What `f()` throws (any std::exception), or "" when it throws nothing.
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace offload::testing
