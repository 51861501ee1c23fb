// BindSync's callbacks as awaitable operations, for the coroutines of a client connection.
//
// The synchroniser calls back on a thread of its own; these resume the coroutine on its own
// executor (the connection's strand) and keep that executor's io_context from running out of
// work while the synchroniser holds the callback.
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>
#include <string>
#include <utility>

#include "offload/daemon/bind_sync.h"

namespace offload::daemon {

namespace bind_sync_detail {

// A std::function-compatible completion that posts `handler` to its own executor.
template <class Handler>
auto resume_on_own_executor(Handler handler) {
  namespace asio = boost::asio;
  auto ex = asio::prefer(asio::get_associated_executor(handler),
                         asio::execution::outstanding_work.tracked);
  // Shared: std::function wants a copyable callable and the handler is move-only.
  auto boxed = std::make_shared<Handler>(std::move(handler));
  return [boxed = std::move(boxed), ex](auto... args) {
    asio::post(ex, [boxed, ... args = std::move(args)]() mutable {
      std::move(*boxed)(std::move(args)...);
    });
  };
}

}  // namespace bind_sync_detail

inline boost::asio::awaitable<BindSync::Prepared> async_prepare_create(BindSync& sync,
                                                                       std::string body) {
  namespace asio = boost::asio;
  return asio::async_initiate<decltype(asio::use_awaitable), void(BindSync::Prepared)>(
      [&sync](auto handler, std::string body) {
        sync.prepare_create(std::move(body),
                            bind_sync_detail::resume_on_own_executor(std::move(handler)));
      },
      asio::use_awaitable, std::move(body));
}

inline boost::asio::awaitable<void> async_flush(BindSync& sync) {
  namespace asio = boost::asio;
  return asio::async_initiate<decltype(asio::use_awaitable), void()>(
      [&sync](auto handler) {
        sync.flush(bind_sync_detail::resume_on_own_executor(std::move(handler)));
      },
      asio::use_awaitable);
}

}  // namespace offload::daemon
