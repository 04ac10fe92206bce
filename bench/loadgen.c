// Short-connection load for the churn benchmark: a paced client and a one-process server, both
// counting the payload bytes they moved, so ctacct's per-pid figures can be checked against them.
// Built by bench/run.ts into bench/out/loadgen; only ever pointed at namespaces the bench made.
//
//   loadgen server PORT REQ RESP
//       accept forever; per connection read REQ bytes, write RESP bytes, close (the server closes
//       first, like HTTP with `Connection: close`, so TIME_WAIT sits on the server side).
//       SIGTERM/SIGINT: print {"conns":…,"bytes_in":…,"bytes_out":…} and exit.
//   loadgen client DST PORT RATE SECONDS REQ RESP MAXCONC SRC[,SRC…]
//       open RATE connections/s for SECONDS (paced every millisecond, at most MAXCONC in flight,
//       source addresses round-robin), send REQ bytes, read to EOF; then print a JSON summary.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { MAXFD = 65536 };
struct conn {
	uint32_t in;   // bytes read
	uint32_t out;  // bytes written
	uint8_t state; // 0 free, 1 connecting / reading request, 2 writing, 3 reading response
};
static struct conn *conns;
static char buf[65536];
static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void raise_nofile(void)
{
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
		r.rlim_cur = r.rlim_max < MAXFD ? r.rlim_max : MAXFD;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

static int server(int port, uint32_t req, uint32_t resp)
{
	unsigned long long nconns = 0, bin = 0, bout = 0;
	int one = 1, ep, ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct epoll_event ev, evs[256];
	struct sigaction sact = { .sa_handler = on_signal };

	sigaction(SIGTERM, &sact, NULL);
	sigaction(SIGINT, &sact, NULL);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4096) < 0) {
		perror("listen");
		return 1;
	}
	memset(buf, 'r', sizeof buf);
	ep = epoll_create1(0);
	ev.events = EPOLLIN;
	ev.data.fd = ls;
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	printf("{\"ready\":true,\"pid\":%d}\n", getpid());
	fflush(stdout);
	while (!stop) {
		int n = epoll_wait(ep, evs, 256, 100);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == ls) {
				int c;
				while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					if (c >= MAXFD) {
						close(c);
						continue;
					}
					nconns++;
					conns[c] = (struct conn){ .state = 1 };
					ev.events = EPOLLIN;
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			struct conn *k = &conns[fd];
			if (k->state == 1) {
				ssize_t r;
				while (k->in < req && (r = read(fd, buf, sizeof buf)) > 0) {
					k->in += (uint32_t)r;
					bin += (unsigned long long)r;
				}
				if (k->in >= req) k->state = 2;
				else if (r == 0 || (r < 0 && errno != EAGAIN)) goto done;
			}
			if (k->state == 2) {
				while (k->out < resp) {
					ssize_t w = write(fd, buf, resp - k->out > sizeof buf ? sizeof buf : resp - k->out);
					if (w <= 0) break;
					k->out += (uint32_t)w;
					bout += (unsigned long long)w;
				}
				if (k->out < resp) {
					if (errno == EAGAIN) {
						ev.events = EPOLLOUT;
						ev.data.fd = fd;
						epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
						continue;
					}
				}
				goto done;
			}
			continue;
		done:
			k->state = 0;
			close(fd);
		}
	}
	printf("{\"conns\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu}\n", nconns, bin, bout);
	return 0;
}

static int client(const char *dst, int port, double rate, double secs, uint32_t req, uint32_t resp, int maxconc, char *srcs)
{
	struct sockaddr_in da = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct sockaddr_in src[64];
	int nsrc = 0, ep = epoll_create1(0), inflight = 0, one = 1;
	unsigned long long started = 0, completed = 0, failed = 0, deferred = 0, bsent = 0, brecv = 0, short_resp = 0;
	struct epoll_event ev, evs[512];
	double t0, tend, tstop;

	inet_pton(AF_INET, dst, &da.sin_addr);
	for (char *s = strtok(srcs, ","); s && nsrc < 64; s = strtok(NULL, ",")) {
		src[nsrc] = (struct sockaddr_in){ .sin_family = AF_INET };
		inet_pton(AF_INET, s, &src[nsrc].sin_addr);
		nsrc++;
	}
	memset(buf, 'q', sizeof buf);
	t0 = now_s();
	tend = t0 + secs;
	tstop = tend + 3.0;
	for (;;) {
		double t = now_s();
		if (t < tend) {
			unsigned long long due = (unsigned long long)((t - t0) * rate);
			while (started + deferred < due) {
				if (inflight >= maxconc) {
					deferred++;
					continue;
				}
				int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
				if (fd < 0 || fd >= MAXFD) {
					if (fd >= 0) close(fd);
					failed++;
					started++;
					continue;
				}
				setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
				if (nsrc) bind(fd, (struct sockaddr *)&src[started % (unsigned)nsrc], sizeof src[0]);
				started++;
				if (connect(fd, (struct sockaddr *)&da, sizeof da) < 0 && errno != EINPROGRESS) {
					failed++;
					close(fd);
					continue;
				}
				conns[fd] = (struct conn){ .state = 1 };
				ev.events = EPOLLOUT;
				ev.data.fd = fd;
				epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				inflight++;
			}
		} else if (inflight == 0 || t > tstop) {
			break;
		}
		int n = epoll_wait(ep, evs, 512, 1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			struct conn *k = &conns[fd];
			if (k->state == 1) {
				int err = 0;
				socklen_t len = sizeof err;
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
				if (err) {
					failed++;
					goto done;
				}
				ssize_t w = write(fd, buf, req);
				if (w != (ssize_t)req) {
					failed++;
					goto done;
				}
				bsent += req;
				k->state = 3;
				ev.events = EPOLLIN;
				ev.data.fd = fd;
				epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
				continue;
			}
			ssize_t r;
			while ((r = read(fd, buf, sizeof buf)) > 0) {
				k->in += (uint32_t)r;
				brecv += (unsigned long long)r;
			}
			if (r < 0 && errno == EAGAIN) continue;
			if (r < 0) failed++;
			else {
				completed++;
				if (k->in < resp) short_resp++;
			}
		done:
			k->state = 0;
			close(fd);
			inflight--;
		}
	}
	double el = now_s() - t0;
	printf("{\"started\":%llu,\"completed\":%llu,\"failed\":%llu,\"deferred\":%llu,\"short_responses\":%llu,"
	       "\"unfinished\":%d,\"bytes_sent\":%llu,\"bytes_recv\":%llu,\"seconds\":%.3f,\"target_rate\":%.0f,"
	       "\"rate\":%.1f}\n",
	       started, completed, failed, deferred, short_resp, inflight, bsent, brecv, el, rate,
	       (double)completed / (secs < el ? secs : el));
	return 0;
}

int main(int argc, char **argv)
{
	raise_nofile();
	conns = calloc(MAXFD, sizeof *conns);
	signal(SIGPIPE, SIG_IGN);
	if (argc == 5 && !strcmp(argv[1], "server"))
		return server(atoi(argv[2]), (uint32_t)atoi(argv[3]), (uint32_t)atoi(argv[4]));
	if (argc == 10 && !strcmp(argv[1], "client"))
		return client(argv[2], atoi(argv[3]), atof(argv[4]), atof(argv[5]), (uint32_t)atoi(argv[6]),
			      (uint32_t)atoi(argv[7]), atoi(argv[8]), argv[9]);
	fprintf(stderr, "usage: loadgen server PORT REQ RESP | client DST PORT RATE SECONDS REQ RESP MAXCONC SRC[,SRC…]\n");
	return 2;
}
