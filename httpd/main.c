/*
 * baton-httpd: a multithreaded HTTP/1.1 static file server and reverse proxy
 * on one kqueue (libbaton).  The command line follows nginx's habits; see
 * docs/httpd.md and `baton-httpd -h`.
 */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#ifndef HTTPD_DEFAULT_DOCROOT
#define HTTPD_DEFAULT_DOCROOT "www"
#endif

struct http_config http_cfg = {
        .addr = "127.0.0.1",
        .port = "8080",
        .docroot = HTTPD_DEFAULT_DOCROOT,
        .max_conns = 100000,
        .idle_timeout_ms = 60000,
        .header_timeout_ms = 30000,
        .upstream_timeout_ms = 30000,
        .drain_timeout_ms = 30000,
        .max_header_bytes = 8192,
        .max_headers = 100,
};
int http_kq = -1;
int http_rootfd = -1;

int http_serve(const struct addrinfo *ai, const char *shown_addr); /* server.c */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: baton-httpd [options]\n"
	        "  -p PORT                  port (default 8080; 0: any free port)\n"
	        "  -b ADDR                  address to listen on (default 127.0.0.1; 0.0.0.0, ::)\n"
	        "  -r DOCROOT               directory to serve (default %s)\n"
	        "  -t THREADS               worker threads on the one kqueue (default: CPUs)\n"
	        "  --access-log FILE|off    access log (default off)\n"
	        "  --log-format common|combined   (default combined)\n"
	        "  --error-log FILE         error log (default stderr)\n"
	        "  --proxy PREFIX=HOST:PORT pass requests under PREFIX to HOST:PORT (repeatable)\n"
	        "  --reuseport              one SO_REUSEPORT listening socket per thread\n"
	        "  --listing                list directories without index.html\n"
	        "  --follow-symlinks        follow symbolic links out of the docroot\n"
	        "  --max-conns N            connections at once; more get 503 (default 100000)\n"
	        "  --idle-timeout SEC       close idle connections (default 60)\n"
	        "  --header-timeout SEC     a request head must arrive within (default 30)\n"
	        "  --upstream-timeout SEC   proxy: upstream silence before 504 (default 30)\n"
	        "  --drain-timeout SEC      on SIGTERM, wait this long for responses (default 30)\n"
	        "  --max-header-bytes N     request head limit, else 431 (default 8192)\n"
	        "  --max-headers N          header fields limit, else 431 (default 100)\n"
	        "  -h                       this help\n"
	        "SIGTERM/SIGINT: stop accepting, finish responses, exit 0.  SIGHUP: reopen logs.\n",
	        HTTPD_DEFAULT_DOCROOT);
}

static long number(const char *s, const char *what, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min || v > max) {
		fprintf(stderr, "baton-httpd: bad %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

static void add_route(const char *arg)
{
	const char *eq = strchr(arg, '='), *colon = strrchr(arg, ':');
	if (!eq || eq == arg || arg[0] != '/' || !colon || colon < eq || !colon[1]) {
		fprintf(stderr, "baton-httpd: --proxy wants PREFIX=HOST:PORT, got %s\n", arg);
		exit(2);
	}
	struct http_proxy_route *r =
	        realloc(http_cfg.routes, (size_t)(http_cfg.nroutes + 1) * sizeof(*r));
	if (!r)
		exit(1);
	http_cfg.routes = r;
	r = &r[http_cfg.nroutes++];
	memset(r, 0, sizeof(*r));
	r->prefix = strndup(arg, (size_t)(eq - arg));
	r->prefix_len = (size_t)(eq - arg);
	r->host = strndup(eq + 1, (size_t)(colon - eq - 1));
	r->port = strdup(colon + 1);
	snprintf(r->hostport, sizeof(r->hostport), "%s:%s", r->host, r->port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	int err = getaddrinfo(r->host, r->port, &hints, &r->addr);
	if (err) {
		fprintf(stderr, "baton-httpd: --proxy %s: %s\n", arg, gai_strerror(err));
		exit(2);
	}
}

enum {
	OPT_ACCESS_LOG = 256,
	OPT_LOG_FORMAT,
	OPT_ERROR_LOG,
	OPT_PROXY,
	OPT_REUSEPORT,
	OPT_LISTING,
	OPT_FOLLOW,
	OPT_MAX_CONNS,
	OPT_IDLE,
	OPT_HEADER_TIMEOUT,
	OPT_UPSTREAM_TIMEOUT,
	OPT_DRAIN,
	OPT_MAX_HEADER_BYTES,
	OPT_MAX_HEADERS,
};

static const struct option longopts[] = {
        {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"error-log", required_argument, NULL, OPT_ERROR_LOG},
        {"proxy", required_argument, NULL, OPT_PROXY},
        {"reuseport", no_argument, NULL, OPT_REUSEPORT},
        {"listing", no_argument, NULL, OPT_LISTING},
        {"follow-symlinks", no_argument, NULL, OPT_FOLLOW},
        {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
        {"idle-timeout", required_argument, NULL, OPT_IDLE},
        {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
        {"upstream-timeout", required_argument, NULL, OPT_UPSTREAM_TIMEOUT},
        {"drain-timeout", required_argument, NULL, OPT_DRAIN},
        {"max-header-bytes", required_argument, NULL, OPT_MAX_HEADER_BYTES},
        {"max-headers", required_argument, NULL, OPT_MAX_HEADERS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
};

/* The long options; false for an unknown one. */
static bool long_option(int opt)
{
	switch (opt) {
	case OPT_ACCESS_LOG:
		http_cfg.access_log = strcmp(optarg, "off") ? optarg : NULL;
		break;
	case OPT_LOG_FORMAT:
		if (strcmp(optarg, "common") && strcmp(optarg, "combined")) {
			fprintf(stderr, "baton-httpd: --log-format common|combined\n");
			exit(2);
		}
		http_cfg.combined = !strcmp(optarg, "combined");
		break;
	case OPT_ERROR_LOG:
		http_cfg.error_log = optarg;
		break;
	case OPT_PROXY:
		add_route(optarg);
		break;
	case OPT_REUSEPORT:
		http_cfg.reuseport = true;
		break;
	case OPT_LISTING:
		http_cfg.listing = true;
		break;
	case OPT_FOLLOW:
		http_cfg.follow_symlinks = true;
		break;
	case OPT_MAX_CONNS:
		http_cfg.max_conns = (int)number(optarg, "--max-conns", 1, 10000000);
		break;
	case OPT_IDLE:
		http_cfg.idle_timeout_ms = 1000 * (int)number(optarg, "--idle-timeout", 1, 86400);
		break;
	case OPT_HEADER_TIMEOUT:
		http_cfg.header_timeout_ms =
		        1000 * (int)number(optarg, "--header-timeout", 1, 86400);
		break;
	case OPT_UPSTREAM_TIMEOUT:
		http_cfg.upstream_timeout_ms =
		        1000 * (int)number(optarg, "--upstream-timeout", 1, 86400);
		break;
	case OPT_DRAIN:
		http_cfg.drain_timeout_ms = 1000 * (int)number(optarg, "--drain-timeout", 0, 86400);
		break;
	case OPT_MAX_HEADER_BYTES:
		http_cfg.max_header_bytes =
		        (size_t)number(optarg, "--max-header-bytes", 256, 1 << 20);
		break;
	case OPT_MAX_HEADERS:
		http_cfg.max_headers = (int)number(optarg, "--max-headers", 1, 10000);
		break;
	default:
		return false;
	}
	return true;
}

static void parse_args(int argc, char **argv)
{
	int opt;
	http_cfg.combined = true;
	while ((opt = getopt_long(argc, argv, "p:b:r:t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			http_cfg.port = optarg;
			number(optarg, "port", 0, 65535);
			break;
		case 'b':
			http_cfg.addr = optarg;
			break;
		case 'r':
			http_cfg.docroot = optarg;
			break;
		case 't':
			http_cfg.threads = (int)number(optarg, "thread count", 1, 1024);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			if (!long_option(opt)) {
				usage(stderr);
				exit(2);
			}
		}
	}
	if (optind < argc) {
		fprintf(stderr, "baton-httpd: unexpected argument %s\n", argv[optind]);
		usage(stderr);
		exit(2);
	}
	if (!http_cfg.threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		http_cfg.threads = n > 0 ? (int)n : 1;
	}
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	http_rootfd = open(http_cfg.docroot, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (http_rootfd < 0) {
		fprintf(stderr, "baton-httpd: docroot %s: %s\n", http_cfg.docroot, strerror(errno));
		return 1;
	}
	int err = http_log_open();
	if (err) {
		fprintf(stderr, "baton-httpd: log: %s\n", strerror(-err));
		return 1;
	}
	/* As many descriptors as allowed: each connection is one (two proxied). */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	http_conn_registry_init(rl.rlim_cur > 1 << 22 ? 1 << 22 : (int)rl.rlim_cur);
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV},
	                *ai;
	int gerr = getaddrinfo(http_cfg.addr, http_cfg.port, &hints, &ai);
	if (gerr) {
		fprintf(stderr, "baton-httpd: -b %s -p %s: %s\n", http_cfg.addr, http_cfg.port,
		        gai_strerror(gerr));
		return 2;
	}
	int rc = http_serve(ai, http_cfg.addr);
	freeaddrinfo(ai);
	return rc;
}
