// gilstat exporter --listen [ADDR:]PORT (--pid PID ... | --match REGEX)
//                  [--max-threads N] [--no-command-label] [--method M]
//
// A Prometheus exporter: keeps every target attached and measured, and
// serves GET /metrics (text format 0.0.4, or OpenMetrics when the scraper's
// Accept header asks for it) and a `/` page saying what it watches.  The
// targets: src/exporter/targets.hpp; the series: src/report/prometheus.hpp
// and src/exporter/groups.hpp; the server: src/exporter/http.hpp.
// SIGTERM / SIGINT detach from every target and exit 0.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <ctime>
#include <iostream>
#include <memory>
#include <regex>
#include <sstream>

#include "cli/attach_session.hpp"
#include "cli/commands.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "exporter/http.hpp"
#include "exporter/targets.hpp"
#include "gilstat/version.hpp"

namespace gilstat::cli {
namespace {

struct ExporterOptions {
  std::string listen;
  std::vector<int> pids;
  std::string match;
  int max_threads = 20;
  bool no_command_label = false;
  std::string method;
};

struct ListenAddress {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
};

// "PORT", "ADDR:PORT" or "[IPv6]:PORT".
ListenAddress parse_listen(const std::string& text) {
  ListenAddress a;
  std::string port = text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find("]:");
    if (close == std::string::npos)
      throw Error(fmt::format("--listen '{}': expected [ADDRESS]:PORT", text),
                  "e.g. --listen [::1]:9464", kExitUsage);
    a.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else if (const size_t colon = text.rfind(':'); colon != std::string::npos) {
    a.host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != port.npos ||
      std::stoul(port) > 65535)
    throw Error(fmt::format("--listen '{}': the port must be a number from 0 to 65535", text),
                "e.g. --listen 9464 or --listen 0.0.0.0:9464", kExitUsage);
  a.port = static_cast<uint16_t>(std::stoul(port));
  return a;
}

exporter::WatchOptions watch_options(const ExporterOptions& opts) {
  if (opts.pids.empty() && opts.match.empty())
    throw Error("nothing to watch", "give --pid PID (repeatable) and/or --match REGEX", kExitUsage);
  if (opts.max_threads < 0)
    throw Error("--max-threads must be 0 or more", "e.g. --max-threads 20", kExitUsage);
  exporter::WatchOptions w;
  w.pids = opts.pids;
  for (int pid : w.pids)
    if (pid <= 0) throw Error(fmt::format("--pid {}: not a process id", pid), {}, kExitUsage);
  if (!opts.match.empty()) {
    try {
      w.match.emplace(opts.match, std::regex::extended | std::regex::nosubs);
    } catch (const std::regex_error& e) {
      throw Error(
          fmt::format("--match '{}' is not a valid regular expression: {}", opts.match, e.what()),
          "the syntax is POSIX extended (egrep), e.g. --match 'gunicorn|celery'", kExitUsage);
    }
    w.match_text = opts.match;
  }
  w.max_groups = static_cast<size_t>(opts.max_threads);
  w.command_label = !opts.no_command_label;
  w.method = parse_attach_method(opts.method);
  return w;
}

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string front_page(const ExporterOptions& opts, const exporter::TargetRegistry& registry) {
  std::string page = fmt::format("gilstat {} exporter\n\nmetrics: /metrics\nwatching:", kVersion);
  for (int pid : opts.pids) page += fmt::format(" --pid {}", pid);
  if (!opts.match.empty()) page += fmt::format(" --match '{}'", opts.match);
  page += "\n\n     PID  COMMAND  [STATE]\n";
  for (const std::string& line : registry.describe()) page += line + "\n";
  return page;
}

int run_exporter(const ExporterOptions& opts) {
  const ListenAddress address = parse_listen(opts.listen);
  exporter::WatchOptions watch = watch_options(opts);
  install_stop_signals();
  exporter::HttpServer server(address.host, address.port);
  exporter::TargetRegistry registry(std::move(watch));
  std::cerr << fmt::format("gilstat: exporter listening on http://{}{}{}:{}/metrics\n",
                           address.host.find(':') != std::string::npos ? "[" : "", address.host,
                           address.host.find(':') != std::string::npos ? "]" : "", server.port())
            << std::flush;
  exporter::SelfStats self;
  const auto handle = [&](const exporter::HttpRequest& request) {
    exporter::HttpResponse response;
    if (request.path == "/metrics") {
      const uint64_t t0 = monotonic_ns();
      const double cpu0 = thread_cpu_s();
      const auto format = exporter::wants_openmetrics(request.accept)
                              ? report::ExpositionFormat::kOpenMetrics
                              : report::ExpositionFormat::kPrometheus;
      std::ostringstream body;
      registry.render(format, body, self);
      response.content_type = report::content_type(format);
      response.body = body.str();
      ++self.scrapes;
      self.last_scrape_s = static_cast<double>(monotonic_ns() - t0) / 1e9;
      self.last_scrape_cpu_s = thread_cpu_s() - cpu0;
    } else if (request.path == "/") {
      response.body = front_page(opts, registry);
    } else {
      response.status = 404;
      response.body = "not found: try /metrics\n";
    }
    return response;
  };
  // Every ~5 ms: the heartbeat of each target, its rings drained, scrapes answered.
  while (!stop_requested()) {
    server.poll_once(5, handle);
    registry.tick();
  }
  registry.detach_all();
  std::cerr << "gilstat: exporter stopped; every target detached\n";
  return kExitOk;
}

}  // namespace

void add_exporter_command(CLI::App& app, Action& action) {
  auto opts = std::make_shared<ExporterOptions>();
  CLI::App* cmd =
      app.add_subcommand("exporter", "Serve live GIL metrics of running processes to Prometheus");
  cmd->add_option("-l,--listen", opts->listen,
                  "[ADDRESS:]PORT to serve /metrics on (address default 127.0.0.1)")
      ->required();
  cmd->add_option("-p,--pid", opts->pids, "A CPython process to watch (repeatable)");
  cmd->add_option("--match", opts->match,
                  "Also watch every CPython process whose command line matches this regular "
                  "expression (rescanned every 2 s)");
  cmd->add_option("--max-threads", opts->max_threads,
                  "Thread groups with their own series per target (default 20; the rest: "
                  "group=\"other\")");
  cmd->add_flag("--no-command-label", opts->no_command_label,
                "Leave the command label out (command lines can hold secrets)");
  add_method_option(*cmd, opts->method);
  cmd->callback([opts, &action] { action = [opts] { return run_exporter(*opts); }; });
}

}  // namespace gilstat::cli
