// The exporter's HTTP/1.1 server: GET and HEAD only, one response per
// connection (Connection: close), a few connections at once, each with a
// size limit on the request head and a deadline.  Everything a client sends
// is hostile input: parse_request refuses what it does not understand.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace gilstat::exporter {

// A request head larger than this is refused (431) and the connection closed.
inline constexpr size_t kMaxRequestBytes = 8192;
// A client has this long to send its request and read the response.
inline constexpr int kConnectionTimeoutMs = 5000;
inline constexpr size_t kMaxConnections = 16;

struct HttpRequest {
  std::string method;
  std::string path;  // the target without its query
  std::string accept;
};

enum class ParseStatus {
  kIncomplete,  // no blank line yet (and within kMaxRequestBytes)
  kComplete,
  kBad,       // 400
  kTooLarge,  // 431
};

// Parses a request head (request line, header lines, blank line) at the start
// of `data`; a body is neither expected nor read.
ParseStatus parse_request(std::string_view data, HttpRequest* out);

// True when an Accept header prefers OpenMetrics (application/openmetrics-text
// with a non-zero q).
bool wants_openmetrics(std::string_view accept);

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// The response's bytes: status line, headers (Content-Length, Connection:
// close) and, unless head_only, the body.
std::string serialize(const HttpResponse& response, bool head_only);

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  // Binds and listens on address:port (an IPv4 or IPv6 literal, or
  // "localhost").  Throws gilstat::Error when it cannot.
  HttpServer(const std::string& address, uint16_t port);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The port bound (the one asked for, or the kernel's choice for 0).
  uint16_t port() const { return port_; }
  // Waits up to timeout_ms for activity, accepts, reads, answers complete
  // requests with `handler` and writes what the sockets take.
  void poll_once(int timeout_ms, const Handler& handler);

 private:
  struct Connection {
    int fd = -1;
    std::string in;
    std::string out;
    size_t written = 0;
    bool responding = false;
    uint64_t deadline_ns = 0;
  };
  void accept_all();
  void read_from(Connection& c, const Handler& handler);
  void write_to(Connection& c);

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::vector<Connection> connections_;
};

}  // namespace gilstat::exporter
