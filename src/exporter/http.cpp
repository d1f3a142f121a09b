#include "exporter/http.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "common/clock.hpp"
#include "common/error.hpp"

namespace gilstat::exporter {
namespace {

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

HttpResponse error_response(int status) {
  return {status, "text/plain; charset=utf-8", fmt::format("{} {}\n", status, reason(status))};
}

}  // namespace

ParseStatus parse_request(std::string_view data, HttpRequest* out) {
  const size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos)
    return data.size() >= kMaxRequestBytes ? ParseStatus::kTooLarge : ParseStatus::kIncomplete;
  if (end + 4 > kMaxRequestBytes) return ParseStatus::kTooLarge;
  std::string_view head = data.substr(0, end);
  // Request line: METHOD SP TARGET SP HTTP/1.x
  const size_t line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == 0 || sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != line.npos)
    return ParseStatus::kBad;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!std::all_of(method.begin(), method.end(), is_token_char)) return ParseStatus::kBad;
  if (target.empty() || target.front() != '/') return ParseStatus::kBad;
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return ParseStatus::kBad;
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return ParseStatus::kBad;
  out->method = std::string(method);
  out->path = std::string(target.substr(0, target.find('?')));
  out->accept.clear();
  // Header lines: NAME ":" VALUE; no obsolete line folding.
  std::string_view rest = line_end == std::string_view::npos ? "" : head.substr(line_end + 2);
  while (!rest.empty()) {
    const size_t eol = rest.find("\r\n");
    const std::string_view header = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? "" : rest.substr(eol + 2);
    const size_t colon = header.find(':');
    if (colon == 0 || colon == std::string_view::npos) return ParseStatus::kBad;
    const std::string_view name = header.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), is_token_char)) return ParseStatus::kBad;
    const std::string_view value = trim(header.substr(colon + 1));
    for (char c : value)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
        return ParseStatus::kBad;
    if (lower(name) == "accept") {
      if (!out->accept.empty()) out->accept += ",";
      out->accept += std::string(value);
    }
  }
  return ParseStatus::kComplete;
}

bool wants_openmetrics(std::string_view accept) {
  const std::string a = lower(accept);
  size_t pos = 0;
  while (pos <= a.size()) {
    size_t comma = a.find(',', pos);
    if (comma == std::string::npos) comma = a.size();
    const std::string_view range = std::string_view(a).substr(pos, comma - pos);
    pos = comma + 1;
    const std::string_view type = trim(range.substr(0, range.find(';')));
    if (type != "application/openmetrics-text") continue;
    // q=0 means "not acceptable".
    const size_t q = range.find("q=");
    if (q != std::string_view::npos) {
      const std::string_view qv = trim(range.substr(q + 2));
      if (!qv.empty() && qv.find_first_not_of("0.") == std::string_view::npos) continue;
    }
    return true;
  }
  return false;
}

std::string serialize(const HttpResponse& r, bool head_only) {
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
      r.status, reason(r.status), r.content_type, r.body.size());
  if (!head_only) out += r.body;
  return out;
}

HttpServer::HttpServer(const std::string& address, uint16_t port) {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const std::string host = address == "localhost" ? "127.0.0.1" : address;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    length = sizeof(*v4);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    length = sizeof(*v6);
  } else {
    throw Error(fmt::format("--listen: '{}' is not an IP address", address),
                "e.g. --listen 9464, --listen 0.0.0.0:9464 or --listen [::1]:9464", kExitUsage);
  }
  listen_fd_ = socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) throw Error(fmt::format("socket: {}", std::strerror(errno)));
  const int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&storage), length) != 0 ||
      listen(listen_fd_, 16) != 0) {
    const int e = errno;
    close(listen_fd_);
    throw Error(fmt::format("cannot listen on {}:{}: {}", address, port, std::strerror(e)),
                e == EADDRINUSE ? "another program uses that port; pick another with --listen"
                                : "check the address");
  }
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&storage), &length);
  port_ = ntohs(storage.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
}

HttpServer::~HttpServer() {
  for (Connection& c : connections_) close(c.fd);
  if (listen_fd_ >= 0) close(listen_fd_);
}

void HttpServer::accept_all() {
  for (;;) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    if (connections_.size() >= kMaxConnections) {
      close(fd);  // the scraper retries; a flood does not grow our state
      continue;
    }
    connections_.push_back(
        {fd, {}, {}, 0, false, monotonic_ns() + kConnectionTimeoutMs * 1'000'000ull});
  }
}

void HttpServer::read_from(Connection& c, const Handler& handler) {
  char buffer[4096];
  bool eof = false;
  // Never more than the limit kept: a client streaming bytes gets 431.
  while (c.in.size() <= kMaxRequestBytes) {
    const ssize_t n = read(c.fd, buffer, sizeof(buffer));
    if (n <= 0) {
      eof = n == 0;
      break;  // EAGAIN or an error: decided below or at the deadline
    }
    c.in.append(buffer, static_cast<size_t>(n));
  }
  HttpRequest request;
  const ParseStatus status = parse_request(c.in, &request);
  if (status == ParseStatus::kIncomplete) {
    if (eof) c.deadline_ns = 0;  // gone before sending a whole request
    return;
  }
  HttpResponse response;
  if (status == ParseStatus::kBad) {
    response = error_response(400);
  } else if (status == ParseStatus::kTooLarge) {
    response = error_response(431);
  } else if (request.method != "GET" && request.method != "HEAD") {
    response = error_response(405);
  } else {
    response = handler(request);
  }
  c.out = serialize(response, status == ParseStatus::kComplete && request.method == "HEAD");
  c.responding = true;
}

void HttpServer::write_to(Connection& c) {
  while (c.written < c.out.size()) {
    const ssize_t n = send(c.fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      c.deadline_ns = 0;  // the client went away
      return;
    }
    c.written += static_cast<size_t>(n);
  }
  c.deadline_ns = 0;  // done: closed below
}

void HttpServer::poll_once(int timeout_ms, const Handler& handler) {
  std::vector<pollfd> fds;
  fds.push_back({listen_fd_, POLLIN, 0});
  for (const Connection& c : connections_)
    fds.push_back({c.fd, static_cast<short>(c.responding ? POLLOUT : POLLIN), 0});
  if (poll(fds.data(), fds.size(), timeout_ms) > 0) {
    for (size_t i = 0; i < connections_.size(); ++i) {
      Connection& c = connections_[i];
      const short revents = fds[i + 1].revents;
      if (!revents) continue;
      if (!c.responding && (revents & (POLLIN | POLLHUP | POLLERR))) read_from(c, handler);
      if (c.responding && c.deadline_ns) write_to(c);
    }
    if (fds[0].revents & POLLIN) accept_all();
  }
  // Finished, failed and timed-out connections are closed.
  const uint64_t now = monotonic_ns();
  std::erase_if(connections_, [&](const Connection& c) {
    if (c.deadline_ns > now) return false;
    close(c.fd);
    return true;
  });
}

}  // namespace gilstat::exporter
