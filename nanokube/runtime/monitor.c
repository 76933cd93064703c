/* nk-monitor: the long-lived half of a container's shim (see shim.py).
 *
 * shim.py does the one-off work of starting a container (namespaces, root filesystem,
 * cgroups, capabilities) and then execs this program in the same process, which inherits
 * the container as its child together with the container's output pipes. From then on
 * this is what stays resident for the container's whole life, so it is small C: its
 * memory is paid once per running container (CPython alone costs ~4 MB).
 *
 * It copies the container's stdout/stderr into the log in the CRI format the kubelet and
 * containerd write ("<RFC3339Nano> <stream> <F|P> <text>"; lines over 16 KiB are split into
 * P(artial) pieces as containerd does), rotates the log by size, serves attach.sock for
 * interactive containers (frames of type byte, 4-byte big-endian length, payload: 0 stdin,
 * 1 stdout, 2 stderr, 4 resize JSON, 255 end of input), and when the container exits
 * writes exit.json (exit code, signal, whether the memory cgroup's OOM killer struck).
 *
 *   nk-monitor DIR PID OUT_FD ERR_FD MASTER_FD STDIN_FD LISTEN_FD STDIN_ONCE LOG LOG_MAX_BYTES
 *              LOG_MAX_FILES OOM_BEFORE [OOM_FILE...]        (absent descriptors are -1)
 *   nk-monitor --pause     pid 1 of a pod's shared pid namespace: reap orphans, nothing else
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE (16 * 1024) /* containerd's maximum log line before it splits with "P" */
#define MAX_CLIENTS 32
#define MAX_FRAME (1 << 20)

struct stream {
    int fd;
    const char *name;
    char partial[MAX_LINE];
    size_t plen;
};

struct client {
    int fd;
    unsigned char *buf;
    size_t len;
};

static const char *dir, *log_path;
static int log_fd = -1;
static long long log_size, log_max_bytes;
static int log_max_files;
static int stdin_fd = -1, master_fd = -1, listen_fd = -1, stdin_once;
static struct client clients[MAX_CLIENTS];
static int nclients;

static void stamp(char *out, size_t n) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%09ldZ", ts.tv_nsec);
}

static void write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return; /* a full or broken disk: the container goes on, as with containerd */
        }
        c += w;
        n -= (size_t)w;
    }
}

static void open_log(void) {
    log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    struct stat st;
    log_size = (log_fd >= 0 && fstat(log_fd, &st) == 0) ? st.st_size : 0;
}

/* containerLogMaxSize / MaxFiles: the log becomes LOG.1, older ones shift up, the oldest
 * beyond LOG_MAX_FILES goes, and a new file starts (as the kubelet rotates CRI logs). */
static void rotate(void) {
    char from[4096], to[4096];
    close(log_fd);
    for (int i = log_max_files - 1; i >= 1; i--) {
        snprintf(from, sizeof from, "%s.%d", log_path, i);
        if (access(from, F_OK) != 0) continue;
        if (i + 1 >= log_max_files) {
            unlink(from);
        } else {
            snprintf(to, sizeof to, "%s.%d", log_path, i + 1);
            rename(from, to);
        }
    }
    snprintf(to, sizeof to, "%s.1", log_path);
    rename(log_path, to);
    open_log();
}

/* One CRI log line; the file rotates first if the line would take it past the limit. */
static void log_line(const char *stream, char tag, const char *text, size_t n) {
    if (tag == 'F')
        while (n > 0 && text[n - 1] == '\r') n--;
    char head[80];
    stamp(head, sizeof head);
    size_t h = strlen(head);
    h += (size_t)snprintf(head + h, sizeof head - h, " %s %c ", stream, tag);
    long long len = (long long)(h + n + 1);
    if (log_size > 0 && log_size + len > log_max_bytes) rotate();
    if (log_fd < 0) return;
    struct iovec iov[3] = {{head, h}, {(void *)text, n}, {"\n", 1}};
    ssize_t w = writev(log_fd, iov, 3);
    if (w >= 0 && w < len) { /* short: write what is left byte-exact */
        size_t done = (size_t)w;
        for (int i = 0; i < 3; i++) {
            if (done >= iov[i].iov_len) {
                done -= iov[i].iov_len;
                continue;
            }
            write_all(log_fd, (char *)iov[i].iov_base + done, iov[i].iov_len - done);
            done = 0;
        }
    }
    log_size += len;
}

static void copy_lines(struct stream *s, const char *data, size_t n) {
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t seg = nl ? (size_t)(nl - data) : n;
        size_t room = MAX_LINE - s->plen;
        if (seg > room || (seg == room && !nl)) { /* the line is too long: out goes a partial piece */
            memcpy(s->partial + s->plen, data, room);
            log_line(s->name, 'P', s->partial, MAX_LINE);
            s->plen = 0;
            data += room;
            n -= room;
            continue;
        }
        memcpy(s->partial + s->plen, data, seg);
        s->plen += seg;
        if (!nl) return;
        log_line(s->name, 'F', s->partial, s->plen);
        s->plen = 0;
        data += seg + 1;
        n -= seg + 1;
    }
}

static void end_input(void) {
    if (master_fd < 0 && stdin_fd >= 0) { /* a pipe: the container sees the end of its input */
        close(stdin_fd);
        stdin_fd = -1;
    }
}

static void drop_client(int i) {
    close(clients[i].fd);
    free(clients[i].buf);
    clients[i] = clients[--nclients];
    if (stdin_once) end_input(); /* stdinOnce: input ends with the first attach session */
}

static void send_all(int i, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(clients[i].fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            drop_client(i);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void broadcast(int type, const char *data, size_t n) {
    unsigned char head[5] = {(unsigned char)type, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
                             (unsigned char)(n >> 8), (unsigned char)n};
    for (int i = nclients - 1; i >= 0; i--) {
        int fd = clients[i].fd;
        send_all(i, head, 5);
        if (i < nclients && clients[i].fd == fd) send_all(i, (const unsigned char *)data, n);
    }
}

static long json_int(const char *json, size_t n, const char *key) {
    char *s = strndup(json, n), *p = s ? strstr(s, key) : NULL;
    long v = -1;
    if (p && (p = strchr(p + strlen(key), ':'))) v = strtol(p + 1, NULL, 10);
    free(s);
    return v;
}

static void frame(int type, const unsigned char *p, size_t n) {
    if (type == 0 && stdin_fd >= 0) {
        const char *c = (const char *)p;
        while (n > 0) {
            ssize_t w = write(stdin_fd, c, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break; /* the container no longer reads its input */
            c += w;
            n -= (size_t)w;
        }
    } else if (type == 4 && master_fd >= 0) {
        long h = json_int((const char *)p, n, "\"Height\""), w = json_int((const char *)p, n, "\"Width\"");
        if (h >= 0 && w >= 0) {
            struct winsize ws = {.ws_row = (unsigned short)h, .ws_col = (unsigned short)w};
            ioctl(master_fd, TIOCSWINSZ, &ws);
        }
    } else if (type == 255) {
        end_input();
    }
}

static void client_input(int i) {
    struct client *c = &clients[i];
    unsigned char tmp[65536];
    ssize_t r = recv(c->fd, tmp, sizeof tmp, 0);
    if (r <= 0) {
        if (r < 0 && errno == EINTR) return;
        drop_client(i);
        return;
    }
    unsigned char *nb = realloc(c->buf, c->len + (size_t)r);
    if (!nb) {
        drop_client(i);
        return;
    }
    c->buf = nb;
    memcpy(c->buf + c->len, tmp, (size_t)r);
    c->len += (size_t)r;
    size_t off = 0;
    while (c->len - off >= 5) {
        unsigned char *f = c->buf + off;
        size_t n = ((size_t)f[1] << 24) | ((size_t)f[2] << 16) | ((size_t)f[3] << 8) | f[4];
        if (n > MAX_FRAME) {
            drop_client(i);
            return;
        }
        if (c->len - off < 5 + n) break;
        frame(f[0], f + 5, n);
        off += 5 + n;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
}

static void close_attach(void) {
    while (nclients > 0) {
        close(clients[nclients - 1].fd);
        free(clients[--nclients].buf);
    }
    if (listen_fd >= 0) {
        char path[4096];
        close(listen_fd);
        snprintf(path, sizeof path, "%s/attach.sock", dir);
        unlink(path);
    }
}

static int oom_killed(char **files, int n, long long before) {
    int oom = 0;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(files[i], "re");
        if (!f) continue;
        char key[64];
        long long v;
        while (fscanf(f, "%63s %lld", key, &v) == 2)
            if (strcmp(key, "oom_kill") == 0 && v > before) oom = 1;
        fclose(f);
    }
    return oom;
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static __attribute__((noreturn)) void pause_forever(void) {
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3 && null >= 0; fd++) dup2(null, fd);
    if (null > 2) close(null);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigaction(SIGCHLD, &sa, NULL);
    on_child(0);
    for (;;) pause();
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--pause") == 0) pause_forever();
    if (argc < 13) {
        fprintf(stderr, "usage: nk-monitor DIR PID OUT_FD ERR_FD MASTER_FD STDIN_FD LISTEN_FD STDIN_ONCE LOG "
                        "LOG_MAX_BYTES LOG_MAX_FILES OOM_BEFORE [OOM_FILE...] | --pause\n");
        return 2;
    }
    dir = argv[1];
    pid_t pid = (pid_t)atoi(argv[2]);
    static struct stream streams[3];
    int nstreams = 0;
    int out = atoi(argv[3]), err = atoi(argv[4]);
    master_fd = atoi(argv[5]);
    stdin_fd = atoi(argv[6]);
    listen_fd = atoi(argv[7]);
    stdin_once = atoi(argv[8]);
    log_path = argv[9];
    log_max_bytes = atoll(argv[10]);
    log_max_files = atoi(argv[11]);
    long long oom_before = atoll(argv[12]);
    if (out >= 0) streams[nstreams++] = (struct stream){.fd = out, .name = "stdout"};
    if (err >= 0) streams[nstreams++] = (struct stream){.fd = err, .name = "stderr"};
    if (master_fd >= 0) streams[nstreams++] = (struct stream){.fd = master_fd, .name = "stdout"};
    signal(SIGPIPE, SIG_IGN);
    /* the signals meant for the container are not the monitor's (stop() signals the container) */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    open_log();

    static char buf[65536];
    int open_streams = nstreams;
    while (open_streams > 0) {
        struct pollfd pfd[3 + 1 + MAX_CLIENTS];
        int np = 0;
        for (int i = 0; i < nstreams; i++) pfd[np++] = (struct pollfd){.fd = streams[i].fd, .events = POLLIN};
        int lidx = -1;
        if (listen_fd >= 0) {
            lidx = np;
            pfd[np++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        }
        int cidx = np;
        for (int i = 0; i < nclients; i++) pfd[np++] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
        if (poll(pfd, (nfds_t)np, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < nstreams; i++) {
            struct stream *s = &streams[i];
            if (s->fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t r = read(s->fd, buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) { /* EOF, or EIO: the last holder of the pty's other side is gone */
                if (s->plen) log_line(s->name, 'F', s->partial, s->plen);
                s->plen = 0;
                close(s->fd);
                s->fd = -1;
                open_streams--;
                continue;
            }
            broadcast(strcmp(s->name, "stdout") == 0 ? 1 : 2, buf, (size_t)r);
            copy_lines(s, buf, (size_t)r);
        }
        /* clients in the order they were polled; drop_client moves the last into a freed slot */
        int polled = np - cidx;
        int fds[MAX_CLIENTS];
        for (int i = 0; i < polled; i++) fds[i] = (pfd[cidx + i].revents & (POLLIN | POLLHUP | POLLERR)) ? pfd[cidx + i].fd : -1;
        for (int i = 0; i < polled; i++) {
            if (fds[i] < 0) continue;
            for (int j = 0; j < nclients; j++)
                if (clients[j].fd == fds[i]) {
                    client_input(j);
                    break;
                }
        }
        if (lidx >= 0 && (pfd[lidx].revents & POLLIN)) {
            int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0 && nclients < MAX_CLIENTS)
                clients[nclients++] = (struct client){.fd = c};
            else if (c >= 0)
                close(c);
        }
    }
    close_attach();
    if (stdin_fd >= 0 && stdin_fd != master_fd) close(stdin_fd);

    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    char finished[64], path[4096], tmp[4096], json[256];
    stamp(finished, sizeof finished);
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int code = sig ? 128 + sig : WEXITSTATUS(status);
    int oom = oom_killed(argv + 13, argc - 13, oom_before);
    int n = sig ? snprintf(json, sizeof json, "{\"finishedAt\": \"%s\", \"signal\": %d, \"exitCode\": %d, \"oomKilled\": %s}",
                           finished, sig, code, oom ? "true" : "false")
                : snprintf(json, sizeof json, "{\"finishedAt\": \"%s\", \"exitCode\": %d, \"oomKilled\": %s}", finished,
                           code, oom ? "true" : "false");
    snprintf(tmp, sizeof tmp, "%s/exit.tmp", dir);
    snprintf(path, sizeof path, "%s/exit.json", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return 1;
    write_all(fd, json, (size_t)n);
    close(fd);
    return rename(tmp, path) == 0 ? 0 : 1;
}
